// Package vrrpd is the VRRP daemon: it loads the appliance config, runs the
// vrrp section's instances on the Failover bond (lbcore/vrrp/node),
// heartbeats to init's supervisor from the VRRP main loop (a hung loop is
// killed and restarted; a restart on the master resumes without a
// failover), serves state, counters, switchover and resume on its local API
// for lbctl and mgmtd, and on SIGTERM/SIGINT resigns (priority-0 advert,
// virtual addresses removed). services/cmd/vrrpd is its main.
package vrrpd

import (
	"context"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/node"
	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/sirupsen/logrus"
)

// Run is the daemon until ctx ends (daemon.Main's run function).
func Run(ctx context.Context, path string, log *logrus.Entry) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	if !cfg.VRRP.Enabled() {
		log.Info("no vrrp instances configured: standalone node, nothing to do")
		stopLeftovers(log)
		go serveAPI(ctx, newAPI(nil, nil, nil), log)
		daemon.Ready(ctx)
		heartbeat(ctx)
		return nil
	}
	n, err := node.New(node.Options{Config: cfg.VRRP, Interfaces: cfg.VRRPInterfaces(), Log: log,
		Heartbeat: func() { daemon.Heartbeat(ctx) }, HeartbeatEvery: beatEvery(ctx),
		PreviousRunHung: daemon.PreviousRunHung(), WaitSync: ctSyncWanted(cfg) || ipvsSyncWanted(cfg)})
	if err != nil {
		return err
	}
	cs := startSync(ctx, cfg, log)
	gate := newSyncGate(n.SetSynced, ctSyncWanted(cfg), cs.y != nil)
	go cs.follow(ctx, n, gate, 2*time.Second)
	ct := startCTSync(ctx, cfg, gate.conntrackSynced, log)
	go ct.follow(ctx, n, 2*time.Second)
	a := newAPI(n, cs, ct)
	go serveAPI(ctx, a, log)
	events, unsubscribe := n.Subscribe(16)
	defer unsubscribe()
	go func() {
		for ev := range events {
			a.count(ev)
			cs.event(ev.Instance, ev.To)
			ct.event(ev.Instance, ev.To)
			log.WithFields(logrus.Fields{"instance": ev.Instance, "vrid": ev.VRID, "from": ev.From, "to": ev.To}).Info("state: " + ev.Reason)
		}
	}()
	daemon.Ready(ctx)
	return n.Run(ctx)
}

// beatEvery is a third of the supervisor's watchdog interval (1 s without one).
func beatEvery(ctx context.Context) time.Duration {
	if w := daemon.WatchdogInterval(ctx); w > 0 {
		return max(w/3, 10*time.Millisecond)
	}
	return time.Second
}

// heartbeat keeps a standalone vrrpd (no VRRP loop) alive for the watchdog.
func heartbeat(ctx context.Context) {
	t := time.NewTicker(beatEvery(ctx))
	defer t.Stop()
	for {
		daemon.Heartbeat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
