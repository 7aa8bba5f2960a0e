// Package node runs VRRP on real sockets: raw IP protocol 112 on the
// heartbeat (Failover) bond, virtual addresses through netlink, gratuitous ARP
// and unsolicited neighbour advertisements on takeover, tracking of the
// Internal and External bonds, manual switchover and state-change events.
//
// The protocol decisions are made by vrrp/fsm; this package only carries them
// out. One goroutine (Run) owns all state; the methods talk to it.
package node

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netns"
)

// Options configure a node.
type Options struct {
	// Config is the vrrp section, defaulted and validated.
	Config config.VRRP
	// Interfaces names the heartbeat, internal and external bonds.
	Interfaces config.VRRPBonds
	Log        logrus.FieldLogger
	// NetNS runs the node in another network namespace (tests, labs);
	// the zero value or netns.None() means the current one.
	NetNS netns.NsHandle
	// Heartbeat, when set, is called from Run's main loop at least every
	// HeartbeatEvery (default 1 s), so a supervisor's watchdog notices a
	// hung loop. It must not block.
	Heartbeat      func()
	HeartbeatEvery time.Duration
	// PreviousRunHung says the supervisor killed the previous run for
	// missing heartbeats: addresses it left behind are given up, not
	// resumed (a master that could not prove it was alive has likely been
	// replaced by the peer; resuming would be a second failover).
	PreviousRunHung bool
	// WaitSync: a returning higher-priority node preempts only once
	// SetSynced(true) says it holds the master's connection table;
	// preempt_delay (DefaultSyncWait when 0) bounds the wait.
	WaitSync bool
}

// DefaultSyncWait bounds a WaitSync node's wait for sync when the config
// sets no preempt_delay.
const DefaultSyncWait = 30 * time.Second

// netNS is the namespace to work in, or netns.None() for the current one.
func (o *Options) netNS() netns.NsHandle {
	if o.NetNS <= 0 {
		return netns.None()
	}
	return o.NetNS
}

// Event is a state change of one instance.
type Event struct {
	Time     time.Time
	Instance string
	VRID     int
	From, To fsm.State
	Reason   string
}

// Status is one instance's current state.
type Status struct {
	Instance string
	VRID     int
	Family   string
	State    fsm.State
	Priority int
	Master   netip.Addr // the master heard from; invalid when self or none
}

// Counter names (Counters keys). Dropped packets are "drop.<reason>".
const (
	CounterRx      = "rx"
	CounterTx      = "tx"
	CounterTxError = "tx.error"
	CounterEvents  = "events.dropped"
)

// Drop reasons the receiver adds to packet.Reason.
const (
	DropTTL       = "ttl"
	DropInterface = "interface"
	DropVRID      = "vrid"
	DropVersion   = "version"
	DropAddrCount = "address-count"
	DropInterval  = "interval"
	DropPeer      = "peer"
	DropOwn       = "own"
)

// Node is a VRRP router with one or more instances.
type Node struct {
	opts  Options
	log   logrus.FieldLogger
	cmds  chan func(now time.Time)
	insts []*instance
	rt    *session // set while Run runs; used only by its goroutine

	synced atomic.Bool // Options.WaitSync: the peer's table is here

	mu       sync.Mutex
	subs     map[int]chan Event
	nextSub  int
	status   []Status
	counters map[string]uint64
}

type instance struct {
	cfg      config.VRRPInstance
	v6       bool
	m        *fsm.Machine
	base     int
	addrs    []config.VRRPAddress
	hbAddrs  []netip.Addr
	garpLeft int
	garpAt   time.Time
	// followUp is one more announcement some time after the burst, so
	// the winner of a startup race or a healed split brain has the last
	// word even if the loser's final announcement, sent in the same
	// instant, reached a host or switch after ours.
	followUp time.Time
	refresh  time.Time
	// foreignAt is when another MAC last claimed one of the addresses.
	foreignAt time.Time
}

// New checks the options and prepares a node; Run starts it.
func New(opts Options) (*Node, error) {
	c := opts.Config
	if !c.Enabled() {
		return nil, errors.New("vrrp: no instances configured")
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("vrrp: %w", err)
	}
	if opts.Interfaces.Heartbeat == "" {
		return nil, errors.New("vrrp: no heartbeat interface")
	}
	if opts.Log == nil {
		l := logrus.New()
		opts.Log = l
	}
	n := &Node{opts: opts, log: opts.Log, cmds: make(chan func(time.Time)), subs: map[int]chan Event{}, counters: map[string]uint64{}}
	for _, ic := range c.Instances {
		in := &instance{cfg: ic, v6: ic.Family == config.IPv6, base: ic.Priority, addrs: ic.Addresses(), hbAddrs: ic.HeartbeatAddrs()}
		for _, a := range in.addrs {
			if opts.Interfaces.ForGroup(a.Group) == "" {
				return nil, fmt.Errorf("vrrp %s: no interface for group %s", ic.Name, a.Group)
			}
		}
		n.insts = append(n.insts, in)
	}
	n.publish()
	return n, nil
}

// Subscribe returns a channel of state-change events (buffered with buf;
// events are dropped and counted when it is full) and a function that ends
// the subscription.
func (n *Node) Subscribe(buf int) (<-chan Event, func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	id := n.nextSub
	n.nextSub++
	ch := make(chan Event, buf)
	n.subs[id] = ch
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, ok := n.subs[id]; ok {
			delete(n.subs, id)
			close(ch)
		}
	}
}

// Status returns every instance's state.
func (n *Node) Status() []Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.status)
}

// Counters returns a snapshot of the packet counters.
func (n *Node) Counters() map[string]uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]uint64, len(n.counters))
	for k, v := range n.counters {
		out[k] = v
	}
	return out
}

func (n *Node) count(name string) {
	n.mu.Lock()
	n.counters[name]++
	n.mu.Unlock()
}

func (n *Node) drop(reason string, p rawPacket, err error) {
	n.count("drop." + reason)
	n.log.WithFields(logrus.Fields{"src": p.src, "reason": reason}).Debugf("vrrp: dropped packet: %v", err)
}

func (n *Node) emit(ev Event) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, ch := range n.subs {
		select {
		case ch <- ev:
		default:
			n.counters[CounterEvents]++
		}
	}
}

func (n *Node) publish() {
	st := make([]Status, len(n.insts))
	for i, in := range n.insts {
		st[i] = Status{Instance: in.cfg.Name, VRID: in.cfg.VRID, Family: string(in.cfg.Family), State: fsm.Init, Priority: in.base}
		if in.m != nil {
			st[i].State, st[i].Priority, st[i].Master = in.m.State(), in.m.Priority(), in.m.Master()
		}
	}
	n.mu.Lock()
	n.status = st
	n.mu.Unlock()
}

// do runs f in the Run goroutine and waits for it.
func (n *Node) do(ctx context.Context, f func(now time.Time) error) error {
	errc := make(chan error, 1)
	select {
	case n.cmds <- func(now time.Time) { errc <- f(now) }:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Switchover makes every instance this node is master of hand over to the
// peer (priority-0 advert); the node does not preempt back until it becomes
// master again or ResumePreempt is called.
func (n *Node) Switchover(ctx context.Context) error {
	return n.do(ctx, func(now time.Time) error {
		var done int
		for _, in := range n.insts {
			acts, err := in.m.Switchover(now)
			if err != nil {
				continue
			}
			done++
			n.rt.handle(in, now, acts)
		}
		if done == 0 {
			return errors.New("vrrp switchover: this node is master of no instance")
		}
		return nil
	})
}

// SetSynced says whether this node holds the master's connection table
// (Options.WaitSync). It never blocks: the VRRP loop reads it when it
// next hears the master.
func (n *Node) SetSynced(s bool) { n.synced.Store(s) }

// preemptDelay is the configured delay, or with WaitSync the bound on the
// wait for sync.
func (n *Node) preemptDelay() time.Duration {
	d := n.opts.Config.PreemptDelay.D()
	if n.opts.WaitSync && d == 0 {
		return DefaultSyncWait
	}
	return d
}

// ResumePreempt ends the preemption hold a Switchover set.
func (n *Node) ResumePreempt(ctx context.Context) error {
	return n.do(ctx, func(time.Time) error {
		for _, in := range n.insts {
			in.m.ResumePreempt()
		}
		return nil
	})
}

// String names the node's instances for logs.
func (n *Node) String() string {
	var s []string
	for _, in := range n.insts {
		s = append(s, fmt.Sprintf("%s(vrid %d %s)", in.cfg.Name, in.cfg.VRID, in.cfg.Family))
	}
	sort.Strings(s)
	return fmt.Sprint(s)
}
