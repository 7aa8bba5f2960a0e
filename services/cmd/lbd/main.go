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
// ip_vs must be loaded before lbd starts (init does this); otherwise
// github.com/moby/ipvs tries to run modprobe itself.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/health"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/addrs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/filter"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nat"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nldump"
	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/fulcrum-lb/fulcrum/services/lbd"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func main() {
	drain := flag.Duration("drain-timeout", 5*time.Minute, "how long a removed member may finish its connections (0: delete at once)")
	statusSock := flag.String("status-socket", "/run/fulcrum/lbd.sock", "unix socket serving GET /status as JSON (\"\" for none)")
	daemon.Main("lbd", func(ctx context.Context, path string, log *logrus.Entry) error {
		return run(ctx, path, log, *drain, *statusSock)
	})
}

func run(ctx context.Context, path string, log *logrus.Entry, drain time.Duration, statusSock string) error {
	h, err := ipvs.Open("")
	if err != nil {
		return fmt.Errorf("cannot reach IPVS: %w", err)
	}
	defer h.Close()
	rec := ipvs.NewReconciler(h, log, ipvs.Options{DrainTimeout: drain})
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("cannot open rtnetlink: %w", err)
	}
	defer nl.Close()
	a := &lbapply.Applier{Addrs: addrs.NewOwner(nl, log), NAT: nat.NewManager(-1, log), Filter: filter.NewManager(-1, log), IPVS: rec,
		ResolveIface: func(mac string) (string, error) { return nicByMAC(nl, mac) }, Log: log}
	ctrl := lbapply.NewController(a, nil, log)
	ctrl.Ready = func() { daemon.Ready(ctx) }
	ctrl.Restore = func(cfg *config.Config) engine.Overrides {
		ovPath := lbd.OverridesPath(path)
		ov, dropped, err := lbd.LoadOverrides(ovPath, cfg)
		if err != nil {
			log.WithError(err).Error("operator overrides not restored; every member starts enabled")
		}
		if len(dropped) > 0 {
			log.WithField("members", dropped).Warn("saved overrides name members the config no longer has; dropped")
		}
		if len(ov.Disabled) > 0 {
			log.WithField("disabled", len(ov.Disabled)).Infof("operator overrides restored from %s", ovPath)
		}
		return ov
	}
	sched := health.NewScheduler(health.Options{Log: log, OnTransition: ctrl.OnTransition})
	ctrl.SetHealth(sched)
	go sched.Run(ctx)
	reader, err := ipvs.Open("") // the local API's own handle, for reads
	if err != nil {
		return fmt.Errorf("cannot reach IPVS: %w", err)
	}
	defer reader.Close()
	reload := make(chan struct{}, 1)
	api := lbd.New(path, ctrl, reader, log)
	if statusSock != "" {
		go serveStatus(ctx, log, statusSock, api.Handler())
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()
	go rec.RunDrainer(ctx, 2*time.Second)

	if err := ctrl.Run(ctx, path, config.Load, reload); err != nil {
		return fmt.Errorf("initial config not applied: %w", err)
	}
	log.Info("stopping; IPVS and nftables state left in place")
	return nil
}

// serveStatus serves lbd's local API on its unix socket (mode 0600).
func serveStatus(ctx context.Context, log logrus.FieldLogger, path string, h http.Handler) {
	if err := daemon.ServeSocket(ctx, path, h, log); err != nil {
		log.WithError(err).Warn("status socket not served")
	}
}

// nicByMAC names the NIC with the given MAC (the management NIC, for the
// input filter).
func nicByMAC(nl *netlink.Handle, mac string) (string, error) {
	links, err := nldump.Retry(nl.LinkList)
	if err != nil {
		return "", fmt.Errorf("listing links: %w", err)
	}
	for _, l := range links {
		if strings.EqualFold(l.Attrs().HardwareAddr.String(), mac) {
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("no NIC with MAC %s", mac)
}
