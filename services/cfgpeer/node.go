// Package cfgpeer keeps the nodes of an HA pair (or cluster) on the same
// config: an apply on one node is offered to the peers over the Failover
// bond and applied by all or by none, and a node that comes back with an
// older config is brought up to date.
//
// Only the cluster sections travel (config.ClusterSections: virtual
// servers, pools, monitors, SNAT, IPVS timeouts); each node merges them
// into its own file, so its addresses, VRRP priority and local address
// pools stay its own. Nodes compare the SHA-256 of the cluster sections
// (the config hash) and a generation number that every apply raises.
//
// An apply is two-phase. Prepare: the initiator has parsed, validated and
// planned the config; each peer does the same with the offered sections
// merged into its own config and holds the result (PrepareTTL at most).
// Commit: the peers apply first, then the initiator; a peer that cannot
// apply changes nothing and the initiator applies nothing; an initiator
// that fails after its peers applied tells them to undo. A refusal, an
// unreachable peer or a timeout aborts with every node's running state
// untouched; Apply's force skips the peers (the operator's --force-local),
// and the nodes show as disagreeing until the peer takes the newer config.
//
// Every HELLO interval each node tells its peers its generation and hash.
// The older side fetches the newer config, validates it and applies it;
// on the same generation with different hashes the larger hash wins
// (deterministic, logged as an error). A config the node refuses is not
// retried until the peer's changes; the disagreement stays visible
// (Status, log).
//
// Messages are framed JSON over TCP, each with HMAC-SHA256 under the
// shared vrrp.sync_key, a timestamp (MaxSkew) and a nonce (replay cache);
// only configured peers, from their own address to this node's, are
// heard. Oversized, malformed, unauthenticated, stale, replayed or
// foreign messages are dropped and counted; frames are bounded
// (MaxFrame), as are connections served at once and the replay cache.
package cfgpeer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Port is the default TCP port (engine.ConfigSyncPort).
const Port = 7041

// maxConns bounds the connections served at once.
const maxConns = 4

// State is a node's running cluster config.
type State struct {
	Generation uint64
	Hash       string
	// Cluster is the canonical cluster sections (config.ClusterPart).
	Cluster []byte
}

// Plan is a config prepared (parsed, validated, planned) and not applied.
type Plan interface {
	// Hash is the config hash of its cluster sections.
	Hash() string
	// Cluster is its canonical cluster sections.
	Cluster() []byte
}

// Local is the node's own config handling (lbd).
type Local interface {
	State() (State, error)
	// Prepare merges cluster sections into this node's config and checks
	// it; nothing changes.
	Prepare(cluster []byte) (Plan, error)
	// Commit applies p as generation gen; on error the running state is
	// as it was.
	Commit(p Plan, gen uint64) error
	// Undo goes back to the config that ran before p was committed.
	Undo(p Plan) error
}

// Options configure a Node.
type Options struct {
	// Self is this node's failover address: it listens there and sends
	// from it.
	Self  netip.Addr
	Peers []netip.Addr
	Key   []byte
	Port  int // default Port
	// Interval between hellos (default 2 s); Timeout bounds one exchange
	// (default 5 s); CommitTimeout bounds a commit, which waits for the
	// peer's apply (default 60 s); PrepareTTL is how long a peer holds a
	// prepared config without a commit (default 15 s).
	Interval, Timeout, CommitTimeout, PrepareTTL time.Duration
	Local                                        Local
	Log                                          logrus.FieldLogger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Dial opens a connection to addr (default: TCP from Self; tests
	// dial from inside a network namespace).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// PeerStatus is what this node knows of one peer.
type PeerStatus struct {
	Addr       netip.Addr
	Reachable  bool
	Generation uint64
	Hash       string
	Agree      bool
	LastSeen   time.Time
	Error      string
}

// Status is the node's view of the cluster.
type Status struct {
	Self       netip.Addr
	Generation uint64
	Hash       string
	// Agree: every peer answered and runs this node's hash.
	Agree   bool
	Peers   []PeerStatus
	Dropped map[string]uint64
}

// Result is the outcome of an apply.
type Result struct {
	Generation uint64
	// LocalOnly: applied here without the peers (force).
	LocalOnly bool
	Message   string
}

// Node is one node's end of config sync.
type Node struct {
	o    Options
	c    *codec
	busy chan struct{} // held for one transaction at a time

	// commitMu is held while a peer's commit applies, so an undo for it
	// waits for its outcome.
	commitMu sync.Mutex

	mu          sync.Mutex
	peers       map[netip.Addr]*PeerStatus
	pending     *txn // prepared for a peer, awaiting commit
	committed   *txn // last committed for a peer, for undo
	agreed      *bool
	lastLoud    time.Time
	refused     map[netip.Addr]string // generation/hash last refused on pull
	lastDropLog time.Time
}

type txn struct {
	id    string
	from  netip.Addr
	plan  Plan
	gen   uint64
	timer *time.Timer
}

// New returns a node; Run serves and syncs it.
func New(o Options) (*Node, error) {
	if !o.Self.IsValid() {
		return nil, errors.New("config sync: no failover address to listen on")
	}
	if len(o.Key) == 0 {
		return nil, errors.New("config sync: no key (vrrp.sync_key)")
	}
	if o.Local == nil {
		return nil, errors.New("config sync: no local config handler")
	}
	if o.Port == 0 {
		o.Port = Port
	}
	if o.Interval == 0 {
		o.Interval = 2 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.CommitTimeout == 0 {
		o.CommitTimeout = 60 * time.Second
	}
	if o.PrepareTTL == 0 {
		o.PrepareTTL = 15 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Dial == nil {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: o.Self.Unmap().AsSlice()}}
		o.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if o.Log == nil {
		o.Log = logrus.StandardLogger()
	}
	o.Self = o.Self.Unmap()
	n := &Node{o: o, busy: make(chan struct{}, 1), peers: map[netip.Addr]*PeerStatus{}, refused: map[netip.Addr]string{}}
	var peers []netip.Addr
	for _, p := range o.Peers {
		p = p.Unmap()
		if p == o.Self {
			continue
		}
		peers = append(peers, p)
		n.peers[p] = &PeerStatus{Addr: p, Error: "not heard from yet"}
	}
	n.o.Peers = peers
	n.c = newCodec(o.Key, o.Self, peers, o.Now)
	return n, nil
}

// Listen opens the node's TCP listener (before Run, so a caller knows the
// port is open). IP_FREEBIND lets it bind before the failover address is
// up.
func (n *Node) Listen(ctx context.Context) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			level, opt := unix.IPPROTO_IP, unix.IP_FREEBIND
			if n.o.Self.Is6() {
				level, opt = unix.IPPROTO_IPV6, unix.IPV6_FREEBIND
			}
			serr = unix.SetsockoptInt(int(fd), level, opt, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	l, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(n.o.Self, uint16(n.o.Port)).String())
	if err != nil {
		return nil, fmt.Errorf("config sync: %w", err)
	}
	return l, nil
}

// Run serves l and says hello to the peers until ctx ends.
func (n *Node) Run(ctx context.Context, l net.Listener) error {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go n.helloLoop(ctx)
	n.o.Log.WithFields(logrus.Fields{"listen": l.Addr().String(), "peers": n.o.Peers}).Info("config sync: offering applies to the peers and taking theirs")
	sem := make(chan struct{}, maxConns)
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("config sync: %w", err)
		}
		select {
		case sem <- struct{}{}:
			go func() {
				defer func() { <-sem }()
				n.serve(conn)
			}()
		default:
			conn.Close() // busy: bounded memory; the peer retries
		}
	}
}

func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(t.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

func (n *Node) serve(conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(n.o.Timeout))
	src := addrOf(conn.RemoteAddr())
	m, err := n.c.read(conn, src)
	if err != nil {
		if DropReason(err) != "" {
			n.logDrop(err)
		}
		return
	}
	reply := n.dispatch(m)
	conn.SetWriteDeadline(time.Now().Add(n.o.Timeout)) // a commit may have taken longer than the request's deadline
	reply.Kind, reply.Re = KindReply, m.Nonce
	frame, _, err := n.c.seal(reply, m.From)
	if err != nil {
		n.o.Log.WithError(err).Error("config sync: reply not sent")
		return
	}
	conn.Write(frame)
}

// logDrop logs a dropped message, at most every 10 s (the counters have
// them all).
func (n *Node) logDrop(err error) {
	n.mu.Lock()
	now := n.o.Now()
	quiet := now.Sub(n.lastDropLog) < 10*time.Second
	if !quiet {
		n.lastDropLog = now
	}
	n.mu.Unlock()
	if !quiet {
		n.o.Log.WithError(err).Warn("config sync: message dropped (counted; further drops in the next 10 s not logged)")
	}
}

func (n *Node) dispatch(m Message) Message {
	switch m.Kind {
	case KindHello:
		n.heard(m.From, m.Generation, m.Hash)
		st, err := n.o.Local.State()
		if err != nil {
			return Message{Error: err.Error()}
		}
		return Message{OK: true, Generation: st.Generation, Hash: st.Hash}
	case KindFetch:
		st, err := n.o.Local.State()
		if err != nil {
			return Message{Error: err.Error()}
		}
		return Message{OK: true, Generation: st.Generation, Hash: st.Hash, Config: st.Cluster}
	case KindPrepare:
		return n.prepare(m)
	case KindCommit:
		return n.commit(m)
	case KindAbort:
		return n.abort(m)
	case KindUndo:
		return n.undo(m)
	}
	return Message{Error: fmt.Sprintf("unknown request %q", m.Kind)}
}

func (n *Node) tryAcquire() bool {
	select {
	case n.busy <- struct{}{}:
		return true
	default:
		return false
	}
}

func (n *Node) release() { <-n.busy }

func (n *Node) prepare(m Message) Message {
	if m.Txn == "" || m.Generation == 0 {
		return Message{Error: "prepare without a transaction or generation"}
	}
	if !n.tryAcquire() {
		return Message{Error: "another config change is in progress on this node; try again"}
	}
	plan, err := n.o.Local.Prepare(m.Config)
	if err == nil && plan.Hash() != m.Hash {
		err = fmt.Errorf("the offered sections hash to %s here, not %s", short(plan.Hash()), short(m.Hash))
	}
	if err != nil {
		n.release()
		n.o.Log.WithError(err).WithField("peer", m.From).Warn("config sync: refused the config the peer offered; nothing changed on either node")
		return Message{Error: err.Error()}
	}
	t := &txn{id: m.Txn, from: m.From, plan: plan, gen: m.Generation}
	n.mu.Lock()
	n.pending = t
	t.timer = time.AfterFunc(n.o.PrepareTTL, func() {
		n.mu.Lock()
		expired := n.pending == t
		if expired {
			n.pending = nil
		}
		n.mu.Unlock()
		if expired {
			n.release()
			n.o.Log.WithField("peer", t.from).Warn("config sync: a prepared config was neither committed nor aborted in time; dropped, nothing changed")
		}
	})
	n.mu.Unlock()
	return Message{OK: true, Hash: plan.Hash()}
}

// take removes the pending transaction id (from peer) and returns it.
func (n *Node) take(id string, from netip.Addr) *txn {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.pending
	if t == nil || t.id != id || t.from != from {
		return nil
	}
	t.timer.Stop()
	n.pending = nil
	return t
}

func (n *Node) commit(m Message) Message {
	n.commitMu.Lock()
	defer n.commitMu.Unlock()
	t := n.take(m.Txn, m.From)
	if t == nil {
		return Message{Error: "no prepared config for this transaction (expired or aborted); nothing changed"}
	}
	defer n.release()
	if err := n.o.Local.Commit(t.plan, t.gen); err != nil {
		n.o.Log.WithError(err).WithField("peer", m.From).Error("config sync: the config the peer offered could not be applied; running state unchanged")
		return Message{Error: err.Error()}
	}
	n.mu.Lock()
	n.committed = t
	n.mu.Unlock()
	n.o.Log.WithFields(logrus.Fields{"peer": m.From, "generation": t.gen, "hash": short(t.plan.Hash())}).Warn("config sync: applied the config the peer offered")
	return Message{OK: true, Generation: t.gen, Hash: t.plan.Hash()}
}

func (n *Node) abort(m Message) Message {
	if t := n.take(m.Txn, m.From); t != nil {
		n.release()
		n.o.Log.WithField("peer", m.From).Info("config sync: the peer aborted the config it offered; nothing changed")
	}
	return Message{OK: true}
}

func (n *Node) undo(m Message) Message {
	n.abort(m)        // a commit that never arrived
	n.commitMu.Lock() // a commit still applying: wait for its outcome
	defer n.commitMu.Unlock()
	n.mu.Lock()
	t := n.committed
	if t != nil && t.id == m.Txn && t.from == m.From {
		n.committed = nil
	} else {
		t = nil
	}
	n.mu.Unlock()
	if t == nil {
		return Message{OK: true}
	}
	if err := n.o.Local.Undo(t.plan); err != nil {
		n.o.Log.WithError(err).Error("config sync: the peer could not apply the config, and this node could not go back to its earlier one")
		return Message{Error: err.Error()}
	}
	n.o.Log.WithField("peer", m.From).Warn("config sync: the peer could not apply the config; this node went back to its earlier one")
	return Message{OK: true}
}

// exchange sends m to peer and returns its reply (within Timeout, or
// CommitTimeout for a commit or undo, which wait for the peer's apply).
func (n *Node) exchange(ctx context.Context, peer netip.Addr, m Message) (Message, error) {
	timeout := n.o.Timeout
	if m.Kind == KindCommit || m.Kind == KindUndo {
		timeout = n.o.CommitTimeout
	}
	frame, nonce, err := n.c.seal(m, peer)
	if err != nil {
		return Message{}, err
	}
	dctx, cancel := context.WithTimeout(ctx, n.o.Timeout)
	defer cancel()
	conn, err := n.o.Dial(dctx, netip.AddrPortFrom(peer, uint16(n.o.Port)).String())
	if err != nil {
		return Message{}, err
	}
	defer conn.Close()
	deadline := time.Now().Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	if _, err := conn.Write(frame); err != nil {
		return Message{}, err
	}
	r, err := n.c.read(conn, peer)
	if err != nil {
		return Message{}, err
	}
	if r.Kind != KindReply || r.Re != nonce {
		return Message{}, fmt.Errorf("answer from %s is not the reply to this request", peer)
	}
	return r, nil
}

// ErrPeerUnreachable wraps the error of an apply no peer could be asked
// about.
var ErrPeerUnreachable = errors.New("peer unreachable")

// Apply offers the prepared local plan to every peer and applies it on
// all of them and here, or nowhere. force applies it here only.
func (n *Node) Apply(ctx context.Context, p Plan, force bool) (Result, error) {
	wait, cancel := context.WithTimeout(ctx, 3*n.o.Timeout)
	defer cancel()
	select {
	case n.busy <- struct{}{}:
	case <-wait.Done():
		return Result{}, errors.New("another config change (one the peer offered, or a sync) is still in progress; nothing changed, try again")
	}
	defer n.release()
	st, err := n.o.Local.State()
	if err != nil {
		return Result{}, err
	}
	gen := st.Generation + 1
	n.mu.Lock()
	for _, ps := range n.peers {
		if ps.Generation >= gen {
			gen = ps.Generation + 1
		}
	}
	n.mu.Unlock()
	if force || len(n.o.Peers) == 0 {
		if err := n.o.Local.Commit(p, gen); err != nil {
			return Result{}, err
		}
		res := Result{Generation: gen, LocalOnly: len(n.o.Peers) > 0}
		if res.LocalOnly {
			res.Message = fmt.Sprintf("applied on this node only (forced), generation %d; the peers were not asked and disagree until they take it", gen)
			n.o.Log.WithField("generation", gen).Error("config sync: " + res.Message)
		}
		return res, nil
	}
	id := newNonce()
	offer := Message{Kind: KindPrepare, Txn: id, Generation: gen, Hash: p.Hash(), Config: p.Cluster()}
	var prepared []netip.Addr
	abort := func(kind Kind, to []netip.Addr) {
		for _, peer := range to {
			if _, err := n.exchange(context.WithoutCancel(ctx), peer, Message{Kind: kind, Txn: id}); err != nil {
				n.o.Log.WithError(err).WithField("peer", peer).Warnf("config sync: %s not delivered (a prepared config expires by itself)", kind)
			}
		}
	}
	for _, peer := range n.o.Peers {
		r, err := n.exchange(ctx, peer, offer)
		if err != nil {
			abort(KindAbort, prepared)
			return Result{}, fmt.Errorf("%w: %s did not answer (%v); nothing changed on either node. Apply with --force-local (API: force_local=true) to change this node only; the nodes then disagree until the peer takes the newer config", ErrPeerUnreachable, peer, err)
		}
		if !r.OK {
			abort(KindAbort, prepared)
			return Result{}, fmt.Errorf("peer %s refused the config: %s; nothing changed on either node", peer, r.Error)
		}
		prepared = append(prepared, peer)
	}
	var committed []netip.Addr
	for _, peer := range n.o.Peers {
		r, err := n.exchange(ctx, peer, Message{Kind: KindCommit, Txn: id})
		if err != nil || !r.OK {
			why := ""
			if err != nil {
				why = err.Error()
				committed = append(committed, peer) // it may have applied: undo
			} else {
				why = r.Error
			}
			abort(KindUndo, committed)
			abort(KindAbort, notIn(prepared, committed))
			return Result{}, fmt.Errorf("peer %s could not apply the config: %s; nothing changed here and the peers went back", peer, why)
		}
		committed = append(committed, peer)
	}
	if err := n.o.Local.Commit(p, gen); err != nil {
		abort(KindUndo, committed)
		return Result{}, fmt.Errorf("%w (the peers applied it and were told to go back)", err)
	}
	n.mu.Lock()
	for _, peer := range committed {
		ps := n.peers[peer]
		ps.Generation, ps.Hash, ps.Reachable, ps.Error, ps.LastSeen = gen, p.Hash(), true, "", n.o.Now()
	}
	n.mu.Unlock()
	n.evaluate()
	return Result{Generation: gen, Message: fmt.Sprintf("applied on this node and on %s (generation %d, hash %s)", joinAddrs(committed), gen, short(p.Hash()))}, nil
}

func notIn(all, minus []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range all {
		found := false
		for _, m := range minus {
			found = found || a == m
		}
		if !found {
			out = append(out, a)
		}
	}
	return out
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// heard records a peer's generation and hash.
func (n *Node) heard(peer netip.Addr, gen uint64, hash string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ps := n.peers[peer]
	if ps == nil {
		return
	}
	ps.Reachable, ps.Generation, ps.Hash, ps.Error, ps.LastSeen = true, gen, hash, "", n.o.Now()
}

func (n *Node) helloLoop(ctx context.Context) {
	t := time.NewTicker(n.o.Interval)
	defer t.Stop()
	for {
		n.helloRound(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// SyncNow runs one hello round (tests, and right after start).
func (n *Node) SyncNow(ctx context.Context) { n.helloRound(ctx) }

func (n *Node) helloRound(ctx context.Context) {
	for _, peer := range n.o.Peers {
		st, err := n.o.Local.State()
		if err != nil {
			n.o.Log.WithError(err).Debug("config sync: no running config to compare yet")
			return
		}
		r, err := n.exchange(ctx, peer, Message{Kind: KindHello, Generation: st.Generation, Hash: st.Hash})
		if err == nil && !r.OK {
			err = errors.New(r.Error)
		}
		if err != nil {
			n.mu.Lock()
			ps := n.peers[peer]
			ps.Reachable, ps.Error = false, err.Error()
			n.mu.Unlock()
			continue
		}
		n.heard(peer, r.Generation, r.Hash)
		if newer(r.Generation, r.Hash, st.Generation, st.Hash) {
			n.pull(ctx, peer, st, r)
		}
	}
	n.evaluate()
}

// newer: (g1, h1) wins over (g2, h2): a higher generation, or on the same
// generation with a different config the larger hash.
func newer(g1 uint64, h1 string, g2 uint64, h2 string) bool {
	return g1 > g2 || (g1 == g2 && h1 > h2)
}

// pull fetches and applies the peer's newer config.
func (n *Node) pull(ctx context.Context, peer netip.Addr, st State, hello Message) {
	key := fmt.Sprintf("%d/%s", hello.Generation, hello.Hash)
	n.mu.Lock()
	skip := n.refused[peer] == key
	n.mu.Unlock()
	if skip || !n.tryAcquire() {
		return
	}
	defer n.release()
	log := n.o.Log.WithFields(logrus.Fields{"peer": peer, "peer_generation": hello.Generation, "peer_hash": short(hello.Hash), "generation": st.Generation, "hash": short(st.Hash)})
	if hello.Generation == st.Generation {
		log.Error("config sync: both nodes run generation " + fmt.Sprint(st.Generation) + " with different configs; the larger hash wins (deterministic): taking the peer's")
	} else {
		log.Warn("config sync: the peer runs a newer config; taking it")
	}
	r, err := n.exchange(ctx, peer, Message{Kind: KindFetch})
	if err == nil && !r.OK {
		err = errors.New(r.Error)
	}
	if err != nil {
		log.WithError(err).Warn("config sync: fetching the peer's config failed; trying again")
		return
	}
	plan, err := n.o.Local.Prepare(r.Config)
	if err == nil && plan.Hash() != r.Hash {
		err = fmt.Errorf("its sections hash to %s here, not %s", short(plan.Hash()), short(r.Hash))
	}
	if err == nil {
		err = n.o.Local.Commit(plan, r.Generation)
	}
	if err != nil {
		n.mu.Lock()
		n.refused[peer] = fmt.Sprintf("%d/%s", r.Generation, r.Hash)
		n.mu.Unlock()
		log.WithError(err).Error("config sync: the peer's newer config is refused here; the nodes disagree until one of them changes")
		return
	}
	n.heard(peer, r.Generation, r.Hash)
	log.WithField("generation", r.Generation).Warn("config sync: now running the peer's config")
}

// Status is the node's view: its own generation and hash and each peer's.
func (n *Node) Status() Status {
	st, _ := n.o.Local.State()
	s := Status{Self: n.o.Self, Generation: st.Generation, Hash: st.Hash, Agree: true, Dropped: n.c.dropped()}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.o.Peers {
		ps := *n.peers[p]
		ps.Agree = ps.Reachable && ps.Hash == st.Hash
		s.Agree = s.Agree && ps.Agree
		s.Peers = append(s.Peers, ps)
	}
	sort.Slice(s.Peers, func(i, j int) bool { return s.Peers[i].Addr.Less(s.Peers[j].Addr) })
	return s
}

// evaluate logs a change of agreement (an error when the nodes disagree,
// repeated every minute while they do).
func (n *Node) evaluate() {
	s := n.Status()
	n.mu.Lock()
	changed := n.agreed == nil || *n.agreed != s.Agree
	remind := !s.Agree && n.o.Now().Sub(n.lastLoud) >= time.Minute
	if changed || remind {
		n.agreed = &s.Agree
		n.lastLoud = n.o.Now()
	}
	n.mu.Unlock()
	if !changed && !remind {
		return
	}
	if s.Agree {
		n.o.Log.WithFields(logrus.Fields{"generation": s.Generation, "hash": short(s.Hash)}).Info("config sync: the nodes agree on the config")
		return
	}
	for _, p := range s.Peers {
		if p.Agree {
			continue
		}
		f := logrus.Fields{"peer": p.Addr, "generation": s.Generation, "hash": short(s.Hash)}
		if !p.Reachable {
			n.o.Log.WithFields(f).WithField("error", p.Error).Error("CONFIG DISAGREEMENT: the peer does not answer config sync, so the nodes may run different configs")
			continue
		}
		f["peer_generation"], f["peer_hash"] = p.Generation, short(p.Hash)
		n.o.Log.WithFields(f).Error("CONFIG DISAGREEMENT: the peer runs a different config")
	}
}
