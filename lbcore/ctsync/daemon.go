package ctsync

// The running side of conntrack sync: one goroutine owns a Sender (while
// the node is VRRP master), a Receiver (always: the peer may be master)
// and a UDP socket on the Failover bond. A master follows its conntrack
// table's events, batches them and sends them to the peer, dumps the whole
// table when the peer asks (and every Refresh, so the backup's timeouts
// follow the kernel's, which packets refresh without an event). A backup
// installs what arrives, acknowledges it, asks for gaps and, when it
// becomes backup or the master restarts, for the whole table; Synced says
// it holds it. Nothing here ever waits for VRRP or makes VRRP wait:
// SetRole only records the role and wakes the loop.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Port is the UDP port conntrack sync uses on the Failover bond (the
// input filter admits it from the VRRP peers only; other protocols on the
// bond use other ports: VRRP is IP protocol 112, IPVS sync udp/8848).
const Port = 7040

// Kernel is the node's conntrack table (lbcore/kernel/ctnl), reduced to
// the entries sync carries.
type Kernel interface {
	// Dump lists the entries to sync.
	Dump() ([]Entry, error)
	// Install creates or refreshes an entry (or deletes it: OpDelete).
	Install(Entry) error
	// Watch sends the entries to sync as they change until ctx ends or
	// it fails (events were lost: the caller resyncs).
	Watch(ctx context.Context, out chan<- Entry) error
}

// Config configures a Daemon.
type Config struct {
	SyncID uint8
	// Peer is the only address messages are accepted from and sent to;
	// Port the peer's sync port.
	Peer netip.Addr
	Port uint16
	// Window is the sender's resend window and the receiver's tracking
	// window in messages (DefaultWindow when 0): the bound on memory
	// whatever the peer does.
	Window int
	// Flush bounds the batching delay (20 ms); Ack is the acknowledgement
	// interval (200 ms); Join how often a backup that does not hold the
	// master's table asks for it (1 s); Refresh how often a master sends
	// its whole table again (30 s); Retry how long a failed event watch
	// waits before it starts again (1 s).
	Flush, Ack, Join, Refresh, Retry time.Duration
	// OnSynced is called from the daemon's goroutine whenever Synced
	// changes; it must not block.
	OnSynced func(bool)
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Flush, 20*time.Millisecond)
	def(&c.Ack, 200*time.Millisecond)
	def(&c.Join, time.Second)
	def(&c.Refresh, 30*time.Second)
	def(&c.Retry, time.Second)
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
}

// Status is what `lbctl show sync` and /metrics show of conntrack sync.
type Status struct {
	Role   string `json:"role"` // sending (master) or receiving
	Peer   string `json:"peer"`
	SyncID uint8  `json:"sync_id"`
	// Synced: this node holds the peer's table (the last resync is
	// complete); a returning master preempts only then.
	Synced     bool      `json:"synced"`
	SyncedAt   time.Time `json:"synced_at,omitzero"`
	Sent       Traffic   `json:"sent"`
	Received   Traffic   `json:"received"`
	Events     uint64    `json:"events"`      // conntrack events taken while master
	Dumps      uint64    `json:"dumps"`       // whole tables sent (resyncs served, refreshes)
	Resent     uint64    `json:"resent"`      // messages resent on a NACK
	Installed  uint64    `json:"installed"`   // entries installed or refreshed
	Deleted    uint64    `json:"deleted"`     // entries removed as the master's expired
	InstallErr uint64    `json:"install_err"` // entries the kernel refused
	SendErr    uint64    `json:"send_err"`
	// Dropped messages by reason: malformed, wrong_peer, foreign (sync
	// id), replay, duplicate, unexpected.
	Dropped   map[string]uint64 `json:"dropped"`
	Gaps      uint64            `json:"gaps"`
	Nacks     uint64            `json:"nacks"`
	Resyncs   uint64            `json:"resyncs"` // whole tables asked for
	LastError string            `json:"last_error,omitempty"`
}

// Traffic counts messages and the entries in them.
type Traffic struct {
	Messages uint64 `json:"messages"`
	Entries  uint64 `json:"entries"`
}

// Drop reasons (Status.Dropped keys).
const (
	DropMalformed  = "malformed"
	DropWrongPeer  = "wrong_peer"
	DropForeign    = "foreign"
	DropReplay     = "replay"
	DropDuplicate  = "duplicate"
	DropUnexpected = "unexpected"
)

// Daemon runs conntrack sync on one socket.
type Daemon struct {
	cfg  Config
	k    Kernel
	pc   net.PacketConn
	peer *net.UDPAddr
	log  logrus.FieldLogger

	kick chan struct{}
	mu   sync.Mutex
	role bool // master
	st   Status
}

// New makes a daemon sending to and receiving from cfg.Peer on pc (a UDP
// socket bound to the node's failover address and the sync port).
func New(cfg Config, k Kernel, pc net.PacketConn, log logrus.FieldLogger) (*Daemon, error) {
	if !cfg.Peer.IsValid() {
		return nil, errors.New("conntrack sync: no peer address")
	}
	if cfg.Port == 0 {
		return nil, errors.New("conntrack sync: no peer port")
	}
	cfg.defaults()
	return &Daemon{cfg: cfg, k: k, pc: pc, log: log,
		peer: net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.Peer, cfg.Port)),
		kick: make(chan struct{}, 1),
		st:   Status{Role: "receiving", Peer: cfg.Peer.String(), SyncID: cfg.SyncID, Dropped: map[string]uint64{}}}, nil
}

// SetRole records whether the node is VRRP master (it sends) and wakes
// the loop; it never blocks.
func (d *Daemon) SetRole(master bool) {
	d.mu.Lock()
	changed := d.role != master
	d.role = master
	d.mu.Unlock()
	if changed {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}

// Status is a copy of the current status.
func (d *Daemon) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.st
	st.Dropped = make(map[string]uint64, len(d.st.Dropped))
	for k, v := range d.st.Dropped {
		st.Dropped[k] = v
	}
	return st
}

type packet struct {
	b   []byte
	src netip.Addr
}

// run is the loop's state; only Run's goroutine touches it.
type run struct {
	*Daemon
	ctx      context.Context
	sender   *Sender
	recv     *Receiver
	synced   bool
	events   chan Entry
	watchErr chan error
	stop     context.CancelFunc // the event watch
	retryAt  time.Time
	buf      []byte
}

// Run is the daemon until ctx ends; it closes the socket when it returns.
func (d *Daemon) Run(ctx context.Context) {
	pkts := make(chan packet, 64)
	go d.read(ctx, pkts)
	r := &run{Daemon: d, ctx: ctx, recv: NewReceiver(d.cfg.SyncID, d.cfg.Window),
		events: make(chan Entry, 1024), watchErr: make(chan error, 1)}
	defer func() {
		if r.stop != nil {
			r.stop()
		}
		d.pc.Close()
	}()
	flush := time.NewTicker(d.cfg.Flush)
	ack := time.NewTicker(d.cfg.Ack)
	join := time.NewTicker(d.cfg.Join)
	refresh := time.NewTicker(d.cfg.Refresh)
	defer flush.Stop()
	defer ack.Stop()
	defer join.Stop()
	defer refresh.Stop()
	r.follow()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
			r.follow()
		case p := <-pkts:
			r.packet(p)
		case e := <-r.events:
			r.event(e)
		case err := <-r.watchErr:
			r.stop = nil
			r.fail("conntrack events: %v", err)
			r.retryAt = time.Now().Add(d.cfg.Retry)
		case <-flush.C:
			if r.sender != nil {
				r.send(r.sender.Flush()...)
				if r.stop == nil && !r.retryAt.IsZero() && !time.Now().Before(r.retryAt) {
					r.retryAt = time.Time{}
					r.watch()
					r.dump() // events were lost meanwhile
				}
			}
		case <-ack.C:
			if a, ok := r.recv.Ack(); ok {
				r.send(a)
			}
			if n, ok := r.recv.Repair(); ok {
				r.send(n)
			}
			if r.sender != nil {
				if m, ok := r.sender.Tail(); ok {
					r.send(m)
				}
			}
		case <-join.C:
			if r.sender == nil && !r.recv.Synced() {
				r.send(r.recv.Join())
				r.noteSynced()
			}
		case <-refresh.C:
			if r.sender != nil {
				r.dump()
			}
		}
	}
}

func (d *Daemon) read(ctx context.Context, out chan<- packet) {
	for {
		b := make([]byte, MaxDatagram+1)
		n, from, err := d.pc.ReadFrom(b)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			d.mu.Lock()
			d.st.LastError = "read: " + err.Error()
			d.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		var src netip.Addr
		if u, ok := from.(*net.UDPAddr); ok {
			src = u.AddrPort().Addr().Unmap()
		}
		select {
		case out <- packet{b[:n], src}:
		case <-ctx.Done():
			return
		}
	}
}

// follow starts or stops sending for the current role.
func (r *run) follow() {
	r.mu.Lock()
	master := r.role
	r.mu.Unlock()
	switch {
	case master && r.sender == nil:
		r.sender = NewSender(r.cfg.SyncID, uint64(time.Now().UnixNano()), r.cfg.Window)
		r.setRole("sending")
		r.watch()
		r.dump()
	case !master && r.sender != nil:
		if r.stop != nil {
			r.stop()
			r.stop = nil
		}
		r.sender, r.retryAt = nil, time.Time{}
		r.setRole("receiving")
		// The peer is (or becomes) master: ask for its table now.
		r.send(r.recv.Join())
		r.noteSynced()
	case !master:
		r.setRole("receiving")
	}
}

func (r *run) setRole(s string) {
	r.mu.Lock()
	r.st.Role = s
	r.mu.Unlock()
}

func (r *run) watch() {
	ctx, cancel := context.WithCancel(r.ctx)
	r.stop = cancel
	events, errc := r.events, r.watchErr
	go func() {
		err := r.k.Watch(ctx, events)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("event watch ended")
		}
		select {
		case errc <- err:
		case <-ctx.Done():
		}
	}()
}

// dump sends the whole table and the done that ends it.
func (r *run) dump() {
	es, err := r.k.Dump()
	if err != nil {
		r.fail("dump: %v", err)
		return
	}
	for _, e := range es {
		r.add(e)
	}
	r.send(r.sender.Flush()...)
	r.send(r.sender.Done())
	r.mu.Lock()
	r.st.Dumps++
	r.mu.Unlock()
}

func (r *run) add(e Entry) {
	ms, err := r.sender.Add(e)
	if err != nil {
		r.fail("entry: %v", err)
		return
	}
	r.send(ms...)
}

func (r *run) event(e Entry) {
	if r.sender == nil {
		return // an event of the watch just stopped
	}
	r.mu.Lock()
	r.st.Events++
	r.mu.Unlock()
	r.add(e)
}

func (r *run) send(ms ...Message) {
	for _, m := range ms {
		var err error
		r.buf, err = m.Append(r.buf[:0])
		if err == nil {
			_, err = r.pc.WriteTo(r.buf, r.peer)
		}
		r.mu.Lock()
		if err != nil {
			r.st.SendErr++
			r.st.LastError = "send: " + err.Error()
		} else {
			r.st.Sent.Messages++
			r.st.Sent.Entries += uint64(len(m.Entries))
		}
		r.mu.Unlock()
	}
}

func (r *run) drop(reason string) {
	r.mu.Lock()
	r.st.Dropped[reason]++
	r.mu.Unlock()
}

func (r *run) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.st.LastError = msg
	r.mu.Unlock()
	r.log.Warn("conntrack sync: " + msg)
}

func dropReason(err error) string {
	switch {
	case errors.Is(err, ErrForeign):
		return DropForeign
	case errors.Is(err, ErrReplay):
		return DropReplay
	case errors.Is(err, ErrDuplicate):
		return DropDuplicate
	}
	return DropUnexpected
}

func (r *run) packet(p packet) {
	if p.src != r.cfg.Peer {
		r.drop(DropWrongPeer)
		return
	}
	m, err := Parse(p.b)
	if err != nil {
		r.drop(DropMalformed)
		return
	}
	switch m.Type {
	case MsgData, MsgDone:
		r.receive(m)
	default:
		if r.sender == nil {
			if m.SyncID != r.cfg.SyncID {
				r.drop(DropForeign)
			}
			return // asked of a node that is not master: nothing to give
		}
		resend, resync, err := r.sender.Handle(m)
		if err != nil {
			r.drop(dropReason(err))
			return
		}
		r.send(resend...)
		r.mu.Lock()
		r.st.Resent += uint64(len(resend))
		r.mu.Unlock()
		if resync {
			r.dump()
		}
	}
}

func (r *run) receive(m Message) {
	apply, reply, err := r.recv.Handle(m)
	if err != nil {
		r.drop(dropReason(err))
		r.noteSynced()
		return
	}
	var ok, del, bad uint64
	var last error
	for _, e := range apply {
		if err := r.k.Install(e); err != nil {
			bad++
			last = err
		} else if e.Op == OpDelete {
			del++
		} else {
			ok++
		}
	}
	r.send(reply...)
	r.mu.Lock()
	if m.Type == MsgData {
		r.st.Received.Messages++
		r.st.Received.Entries += uint64(len(m.Entries))
	}
	r.st.Installed += ok
	r.st.Deleted += del
	r.st.InstallErr += bad
	if last != nil {
		r.st.LastError = "install: " + last.Error()
	}
	c := r.recv.C
	r.st.Gaps, r.st.Nacks, r.st.Resyncs = c.Gaps, c.Nacks, c.Resyncs
	r.mu.Unlock()
	r.noteSynced()
}

// noteSynced publishes a change of Synced.
func (r *run) noteSynced() {
	s := r.recv.Synced()
	r.mu.Lock()
	r.st.Resyncs = r.recv.C.Resyncs
	if s == r.synced {
		r.mu.Unlock()
		return
	}
	r.synced, r.st.Synced = s, s
	if s {
		r.st.SyncedAt = time.Now()
	}
	r.mu.Unlock()
	if s {
		r.log.WithField("entries", r.recv.C.Entries).Info("conntrack sync: holding the peer's table")
	}
	if r.cfg.OnSynced != nil {
		r.cfg.OnSynced(s)
	}
}
