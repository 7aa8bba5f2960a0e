// Command vrrpd is the appliance's VRRP daemon: it loads the appliance
// config, runs the vrrp section's instances on the Failover bond (init
// starts it only once lbd has applied its config: After lbd in
// services/manifest), and on
// SIGTERM/SIGINT resigns (priority-0 advert, virtual addresses removed) and
// exits. The logic lives in lbcore/vrrp/node; api.go serves state,
// switchover and resume on the local API for lbctl and mgmtd.
package main

import (
	"context"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/node"
	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/sirupsen/logrus"
)

func main() { daemon.Main("vrrpd", run) }

func run(ctx context.Context, path string, log *logrus.Entry) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if !cfg.VRRP.Enabled() {
		log.Info("no vrrp instances configured: standalone node, nothing to do")
		go serveAPI(ctx, newAPI(nil), log)
		<-ctx.Done()
		return nil
	}
	n, err := node.New(node.Options{Config: cfg.VRRP, Interfaces: cfg.VRRPInterfaces(), Log: log})
	if err != nil {
		return err
	}
	a := newAPI(n)
	go serveAPI(ctx, a, log)
	events, unsubscribe := n.Subscribe(16)
	defer unsubscribe()
	go func() {
		for ev := range events {
			a.count(ev)
			log.WithFields(logrus.Fields{"instance": ev.Instance, "vrid": ev.VRID, "from": ev.From, "to": ev.To}).Info("state: " + ev.Reason)
		}
	}()
	return n.Run(ctx)
}
