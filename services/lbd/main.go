// Command lbd is the LB daemon: it applies the load-balancing part of the
// appliance config (IPVS virtual servers and the nftables table for marks,
// FullNAT and SNAT all-in-one) as one apply-with-rollback, re-applies on
// SIGHUP (a rejected config leaves the running state as it was), drains
// removed members, and stops on SIGTERM/SIGINT. It leaves the kernel state
// in place when it stops, so traffic keeps flowing across daemon restarts.
//
// ip_vs must be loaded before lbd starts (init does this); otherwise
// github.com/moby/ipvs tries to run modprobe itself.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/fulcrum-lb/fulcrum/lbcore/nat"
	"github.com/sirupsen/logrus"
)

func main() {
	path := flag.String("config", "/etc/fulcrum/config.yaml", "appliance config file")
	drain := flag.Duration("drain-timeout", 5*time.Minute, "how long a removed member may finish its connections (0: delete at once)")
	level := flag.String("log-level", "info", "log level (debug, info, warn, error)")
	flag.Parse()

	logger := logrus.New()
	if l, err := logrus.ParseLevel(*level); err == nil {
		logger.SetLevel(l)
	}
	log := logger.WithField("daemon", "lbd")

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	h, err := ipvs.Open("")
	if err != nil {
		log.WithError(err).Fatal("cannot reach IPVS")
	}
	defer h.Close()
	rec := ipvs.NewReconciler(h, log, ipvs.Options{DrainTimeout: *drain})
	a := &lbapply.Applier{IPVS: rec, NAT: nat.NewManager(-1, log), Log: log}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()
	go rec.RunDrainer(ctx, 2*time.Second)

	if err := lbapply.Run(ctx, *path, config.Load, a, reload); err != nil {
		log.WithError(err).Fatal("initial config not applied")
	}
	log.Info("stopping; IPVS and nftables state left in place")
}
