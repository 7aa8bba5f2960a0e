package vrrpd

// Conntrack sync (lbcore/ctsync, issue 13 items 2, 4, 5) runs inside
// vrrpd rather than as a daemon of its own: it is driven by VRRP state
// (the master sends, everyone else receives) and it drives VRRP back (a
// returning master preempts once it holds the peer's table), both within
// one process and without a protocol between daemons. It runs in its own
// goroutines and only ever hands VRRP a flag (node.SetSynced, never
// blocking), so a slow or failing sync never holds VRRP up; the watchdog
// heartbeat stays in the VRRP loop.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/ctsync"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ctnl"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/node"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// ctSync is vrrpd's conntrack sync.
type ctSync struct {
	instance string
	d        atomic.Pointer[ctsync.Daemon] // nil while off
	role     atomic.Pointer[bool]          // the last role set (master), for a late start
	mu       sync.Mutex
	err      string // why off
}

// ctEndpoints picks the peer (the first of vrrp.peers, else of
// unicast_peers) and this node's failover self IP of its family.
func ctEndpoints(cfg *config.Config) (local, peer netip.Addr, err error) {
	for _, list := range [][]config.IP{cfg.VRRP.Peers, cfg.VRRP.UnicastPeers} {
		if len(list) > 0 {
			peer = list[0].Addr.Unmap()
			break
		}
	}
	if !peer.IsValid() {
		return local, peer, errors.New("conntrack sync: off: no vrrp.peers (the node to sync with)")
	}
	for _, p := range cfg.Network.Failover.Addresses {
		if a := p.Addr().Unmap(); a.Is4() == peer.Is4() {
			return a, peer, nil
		}
	}
	return local, peer, fmt.Errorf("conntrack sync: off: no failover address of the family of peer %s", peer)
}

// ctSyncWanted says whether conntrack sync runs for cfg (and so whether
// VRRP preemption waits for it).
func ctSyncWanted(cfg *config.Config) bool {
	_, _, err := ctEndpoints(cfg)
	return err == nil
}

// natTable is the conntrack table as sync sees it: the entries the master
// translated (nftables SNAT behind FullNAT and SNAT all-in-one), the ones
// the backup needs to translate the same flows. IPVS's own entries
// travel by IPVS sync.
type natTable struct{ c *ctnl.Conn }

func (t natTable) Dump() ([]ctsync.Entry, error) { return t.c.Dump(ctnl.NATOnly) }
func (t natTable) Install(e ctsync.Entry) error  { return t.c.Install(e) }
func (t natTable) Watch(ctx context.Context, out chan<- ctsync.Entry) error {
	return t.c.Watch(ctx, ctnl.NATOnly, out)
}

// listenSync opens the sync socket: bound to the failover address and
// port and to the failover bond, with a receive buffer for a whole
// table's burst.
func listenSync(ctx context.Context, bond string, local netip.Addr) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, bond); serr != nil {
				return
			}
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.ListenPacket(ctx, "udp", netip.AddrPortFrom(local, ctsync.Port).String())
}

// startCTSync starts conntrack sync for cfg in the background; what fails
// is logged and shown by the API and never stops VRRP. The socket is
// retried until it opens (the failover address may still be on its way).
func startCTSync(ctx context.Context, cfg *config.Config, onSynced func(bool), log *logrus.Entry) *ctSync {
	in := cfg.VRRP.Instances[0]
	cs := &ctSync{instance: in.Name}
	local, peer, err := ctEndpoints(cfg)
	if err != nil {
		cs.setErr(err.Error())
		log.Warn(err.Error())
		return cs
	}
	cs.setErr("conntrack sync: starting")
	go cs.run(ctx, cfg.Network.Failover.Bond, local, ctsync.Config{SyncID: uint8(in.VRID), Peer: peer, Port: ctsync.Port, OnSynced: onSynced}, log)
	return cs
}

func (cs *ctSync) run(ctx context.Context, bond string, local netip.Addr, c ctsync.Config, log *logrus.Entry) {
	k, err := ctnl.Open("")
	if err != nil {
		cs.setErr("conntrack sync: off: " + err.Error())
		log.WithError(err).Error("conntrack sync: off")
		return
	}
	defer k.Close()
	var pc net.PacketConn
	for {
		if pc, err = listenSync(ctx, bond, local); err == nil {
			break
		}
		cs.setErr("conntrack sync: socket: " + err.Error())
		log.WithError(err).Warn("conntrack sync: socket; retrying")
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
	d, err := ctsync.New(c, natTable{k}, pc, log.WithField("sync", "conntrack"))
	if err != nil {
		pc.Close()
		cs.setErr(err.Error())
		return
	}
	cs.d.Store(d)
	cs.setErr("")
	if r := cs.role.Load(); r != nil {
		d.SetRole(*r)
	}
	log.WithFields(logrus.Fields{"local": local, "peer": c.Peer, "port": ctsync.Port, "sync_id": c.SyncID}).Info("conntrack sync: running")
	d.Run(ctx)
}

func (cs *ctSync) setErr(s string) {
	cs.mu.Lock()
	cs.err = s
	cs.mu.Unlock()
}

// event passes a state change of the sync instance on; never blocks.
func (cs *ctSync) event(instance string, to fsm.State) {
	if cs == nil || instance != cs.instance {
		return
	}
	m := to == fsm.Master
	cs.role.Store(&m)
	if d := cs.d.Load(); d != nil {
		d.SetRole(m)
	}
}

// follow sets the role from the node's status every interval too (events
// are dropped when a subscriber falls behind).
func (cs *ctSync) follow(ctx context.Context, n interface{ Status() []node.Status }, every time.Duration) {
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
				cs.event(s.Instance, s.State)
			}
		}
	}
}

func (cs *ctSync) status() localapi.ConntrackSync {
	if cs == nil {
		return localapi.ConntrackSync{}
	}
	d := cs.d.Load()
	if d == nil {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		return localapi.ConntrackSync{Error: cs.err}
	}
	return localapi.ConntrackSync{Enabled: true, Port: ctsync.Port, Status: d.Status()}
}
