package vrrpd

// IPVS connection sync driven by VRRP state (lbcore/ipvssync): the sync
// instance's state changes become sync roles; the daemons run on the
// failover bond with the instance's VRID as sync id.

import (
	"context"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/ipvssync"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvsnl"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/node"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

// connSync runs the Syncer for the node's first VRRP instance. The kernel
// has one master and one backup daemon per namespace, so one instance
// drives them; every instance moves together (they fault together and
// carry both groups' addresses), so the first one speaks for the node.
type connSync struct {
	instance string
	y        *ipvssync.Syncer // nil when sync could not start
	err      string           // why not
}

// syncSettings are the daemons' settings for cfg: failover bond, VRID of
// the first instance.
func syncSettings(cfg *config.Config) (ipvssync.Settings, string) {
	in := cfg.VRRP.Instances[0]
	return ipvssync.Settings{Interface: cfg.Network.Failover.Bond, SyncID: uint8(in.VRID)}, in.Name
}

// ipvsSyncWanted says whether IPVS sync runs for cfg (and so whether VRRP
// preemption waits for it).
func ipvsSyncWanted(cfg *config.Config) bool {
	s, _ := syncSettings(cfg)
	return s.Validate() == nil
}

// startSync starts the syncer; a failure (no ip_vs, bad settings) is
// logged and shown by the API, and never stops VRRP.
func startSync(ctx context.Context, cfg *config.Config, log *logrus.Entry) *connSync {
	s, name := syncSettings(cfg)
	cs := &connSync{instance: name}
	if err := s.Validate(); err != nil {
		cs.err = err.Error()
		log.WithError(err).Error("ipvs sync: off")
		return cs
	}
	k, err := ipvsnl.Open("")
	if err != nil {
		cs.err = err.Error()
		log.WithError(err).Error("ipvs sync: off")
		return cs
	}
	cs.y = ipvssync.New(k, s, log)
	go func() {
		defer k.Close()
		cs.y.Run(ctx)
	}()
	return cs
}

// stopLeftovers stops the daemons of a previous config on a node that no
// longer runs VRRP.
func stopLeftovers(log *logrus.Entry) {
	k, err := ipvsnl.Open("")
	if err != nil {
		log.WithError(err).Debug("ipvs sync: no ip_vs, nothing to stop")
		return
	}
	defer k.Close()
	if ch, _, err := ipvssync.Reconcile(k, ipvssync.Stopped, ipvssync.Settings{}); err != nil {
		log.WithError(err).Warn("ipvs sync: stop daemons")
	} else if ch.Stopped > 0 {
		log.WithField("stopped", ch.Stopped).Info("ipvs sync: standalone node, daemons stopped")
	}
}

// roleOf maps a VRRP state to a sync role.
func roleOf(s fsm.State) ipvssync.Role {
	switch s {
	case fsm.Master:
		return ipvssync.Master
	case fsm.Backup:
		return ipvssync.Backup
	case fsm.Fault:
		return ipvssync.Fault
	}
	return ipvssync.Stopped
}

// event passes a VRRP state change of the sync instance on; never blocks.
func (cs *connSync) event(instance string, to fsm.State) {
	if cs == nil || cs.y == nil || instance != cs.instance {
		return
	}
	cs.y.SetRole(roleOf(to))
}

// follow sets the role from the node's status every interval as well:
// events are dropped when a subscriber falls behind, and a missed one
// must not leave the daemons in the wrong role for long. It also tells
// the gate when the backup daemon has run long enough to hold the
// master's connections.
func (cs *connSync) follow(ctx context.Context, n interface{ Status() []node.Status }, gate *syncGate, every time.Duration) {
	if cs == nil || cs.y == nil {
		return
	}
	clock := backupClock{catchUp: ipvsCatchUp(refreshPeriodPath)}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range n.Status() {
			if s.Instance == cs.instance && s.State != fsm.Init {
				cs.y.SetRole(roleOf(s.State))
			}
		}
		gate.ipvsSynced(clock.observe(backupRuns(cs.y.Status().Daemons), time.Now()))
	}
}

// backupRuns says whether a backup daemon is among ds.
func backupRuns(ds []ipvsnl.Daemon) bool {
	for _, d := range ds {
		if d.State == ipvsnl.Backup {
			return true
		}
	}
	return false
}

// status is the API's view; connection counts are read from the kernel
// on each call.
func (cs *connSync) status() localapi.SyncStatus {
	st := localapi.SyncStatus{Daemons: []localapi.SyncDaemon{}}
	if cs == nil {
		return st
	}
	if cs.y == nil {
		st.LastError = cs.err
		return st
	}
	y := cs.y.Status()
	st.Enabled = true
	st.Role, st.Interface, st.SyncID = y.Role, y.Interface, int(y.SyncID)
	st.Reconciles, st.Started, st.Stopped, st.Errors, st.LastError, st.LastChange = y.Reconciles, y.Started, y.Stopped, y.Errors, y.LastError, y.LastChange
	for _, d := range y.Daemons {
		g := ""
		if d.Group.IsValid() {
			g = d.Group.String()
		}
		st.Daemons = append(st.Daemons, localapi.SyncDaemon{State: d.State.String(), Interface: d.Interface, SyncID: int(d.SyncID),
			Group: g, Port: int(d.Port), TTL: int(d.TTL), MaxLen: int(d.MaxLen)})
	}
	c, err := ipvsnl.ReadConnCounts(ipvsnl.ConnSyncPath)
	if err != nil {
		st.ConnsError = err.Error()
	}
	st.ConnsLocal, st.ConnsSynced = c.Local, c.Synced
	return st
}
