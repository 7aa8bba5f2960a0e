// Command lbd is the LB daemon: it applies the load-balancing part of the
// appliance config (its addresses — FullNAT local addresses always, VIPs and
// SNAT addresses on a standalone node —, IPVS virtual servers and the
// nftables table for marks, FullNAT and SNAT all-in-one, the default-deny
// input filter per NIC group) as one
// apply-with-rollback, runs the health checks of every pool that names a
// monitor and re-applies IPVS when members go down or come back,
// re-applies on SIGHUP (a rejected config leaves the running state as it
// was), drains removed members, serves its status as JSON on a unix socket,
// and stops on SIGTERM/SIGINT. It leaves the kernel state in place when it
// stops, so traffic keeps flowing across daemon restarts; a restarted lbd
// adopts the IPVS table it finds and changes it only once its health checks
// have results (lbapply's adopt.go).
//
// The wiring is services/lbd (Run).
//
// ip_vs must be loaded before lbd starts (init does this); otherwise
// github.com/moby/ipvs tries to run modprobe itself.
package main

import (
	"context"
	"flag"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/fulcrum-lb/fulcrum/services/lbd"
	"github.com/sirupsen/logrus"
)

func main() {
	var o lbd.Options
	flag.DurationVar(&o.DrainTimeout, "drain-timeout", 5*time.Minute, "how long a removed member may finish its connections (0: delete at once)")
	flag.StringVar(&o.Socket, "status-socket", "/run/fulcrum/lbd.sock", "unix socket serving GET /status as JSON (\"\" for none)")
	daemon.Main("lbd", func(ctx context.Context, path string, log *logrus.Entry) error {
		o.ConfigPath = path
		return lbd.Run(ctx, o, log)
	})
}
