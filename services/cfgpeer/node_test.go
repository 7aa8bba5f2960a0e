package cfgpeer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// fakeLocal is a node's config in memory: a config containing "bad" is
// refused at prepare, failCommit makes the next commit fail.
type fakeLocal struct {
	mu         sync.Mutex
	st         State
	prev       []State
	failCommit bool
	commits    int
	delay      time.Duration // each commit takes this long
}

type fakePlan struct{ cluster []byte }

func (p fakePlan) Hash() string    { return hashOf(p.cluster) }
func (p fakePlan) Cluster() []byte { return p.cluster }

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newLocal(cluster string) *fakeLocal {
	return &fakeLocal{st: State{Hash: hashOf([]byte(cluster)), Cluster: []byte(cluster)}}
}

func (f *fakeLocal) State() (State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st, nil
}

func (f *fakeLocal) Prepare(cluster []byte) (Plan, error) {
	if strings.Contains(string(cluster), "bad") {
		return nil, errors.New("virtual_servers[0].scheduler (line 3): \"bad\" is not a scheduler")
	}
	return fakePlan{cluster: cluster}, nil
}

func (f *fakeLocal) Commit(p Plan, gen uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	time.Sleep(f.delay)
	if f.failCommit {
		f.failCommit = false
		return errors.New("kernel said no; running state unchanged")
	}
	f.prev = append(f.prev, f.st)
	f.st = State{Generation: gen, Hash: p.Hash(), Cluster: p.Cluster()}
	f.commits++
	return nil
}

func (f *fakeLocal) Undo(Plan) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = f.prev[len(f.prev)-1]
	f.prev = f.prev[:len(f.prev)-1]
	return nil
}

func (f *fakeLocal) get() State {
	st, _ := f.State()
	return st
}

var key = []byte("0123456789abcdef-test-key")

// pair is two nodes on loopback addresses (127.0.0.1 and .2, same port).
type pair struct {
	a, b     *Node
	la, lb   *fakeLocal
	port     int
	logA     *test.Hook
	cancelB  context.CancelFunc
	ctx      context.Context
	t        *testing.T
	addrA    netip.Addr
	addrB    netip.Addr
	optsB    Options
	runningB bool
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newPair(t *testing.T, startB bool) *pair {
	return newPairWith(t, startB, newLocal("pools: {web: 1}\n"), newLocal("pools: {web: 1}\n"))
}

// newPairWith starts a pair on the given local configs (each node says
// hello once at start).
func newPairWith(t *testing.T, startB bool, la, lb *fakeLocal) *pair {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &pair{ctx: ctx, t: t, port: freePort(t), la: la, lb: lb,
		addrA: netip.MustParseAddr("127.0.0.1"), addrB: netip.MustParseAddr("127.0.0.2")}
	logA, hookA := test.NewNullLogger()
	p.logA = hookA
	optsA := Options{Self: p.addrA, Peers: []netip.Addr{p.addrB}, Key: key, Port: p.port, Timeout: time.Second, Interval: time.Hour, Local: p.la, Log: logA}
	p.optsB = Options{Self: p.addrB, Peers: []netip.Addr{p.addrA}, Key: key, Port: p.port, Timeout: time.Second, Interval: time.Hour, Local: p.lb, Log: logrus.New()}
	var err error
	if p.a, err = New(optsA); err != nil {
		t.Fatal(err)
	}
	if p.b, err = New(p.optsB); err != nil {
		t.Fatal(err)
	}
	p.start(p.a)
	if startB {
		p.startB()
	}
	return p
}

func (p *pair) start(n *Node) context.CancelFunc {
	ctx, cancel := context.WithCancel(p.ctx)
	l, err := n.Listen(ctx)
	if err != nil {
		p.t.Fatal(err)
	}
	go n.Run(ctx, l)
	return cancel
}

func (p *pair) startB() { p.cancelB = p.start(p.b) }

func TestApplyRunsOnBothNodes(t *testing.T) {
	p := newPair(t, true)
	res, err := p.a.Apply(p.ctx, fakePlan{cluster: []byte("pools: {web: 2}\n")}, false)
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.la.get(), p.lb.get()
	if a.Generation != 1 || b.Generation != 1 || a.Hash != b.Hash || a.Hash != hashOf([]byte("pools: {web: 2}\n")) {
		t.Fatalf("after apply: a %d %s, b %d %s", a.Generation, short(a.Hash), b.Generation, short(b.Hash))
	}
	if !strings.Contains(res.Message, "127.0.0.2") {
		t.Errorf("result does not name the peer: %s", res.Message)
	}
	p.a.SyncNow(p.ctx)
	p.b.SyncNow(p.ctx)
	for _, n := range []*Node{p.a, p.b} {
		if s := n.Status(); !s.Agree || len(s.Peers) != 1 || s.Peers[0].Hash != a.Hash || s.Peers[0].Generation != 1 {
			t.Errorf("status of %s: %+v", s.Self, s)
		}
	}
	// The next apply raises the generation again.
	if _, err := p.b.Apply(p.ctx, fakePlan{cluster: []byte("pools: {web: 3}\n")}, false); err != nil {
		t.Fatal(err)
	}
	if a := p.la.get(); a.Generation != 2 || a.Hash != hashOf([]byte("pools: {web: 3}\n")) {
		t.Errorf("apply from b: a runs %d %s", a.Generation, short(a.Hash))
	}
}

func TestPeerRefusalChangesNeither(t *testing.T) {
	p := newPair(t, true)
	before, beforeB := p.la.get(), p.lb.get()
	_, err := p.a.Apply(p.ctx, fakePlan{cluster: []byte("pools: {bad: 1}\n")}, false)
	if err == nil || !strings.Contains(err.Error(), "peer 127.0.0.2 refused the config") || !strings.Contains(err.Error(), "scheduler (line 3)") {
		t.Fatalf("refusal: %v", err)
	}
	if a, b := p.la.get(), p.lb.get(); a.Hash != before.Hash || b.Hash != beforeB.Hash || a.Generation != 0 || b.Generation != 0 {
		t.Fatalf("a refused config changed something: a %+v b %+v", a, b)
	}
	// Nothing stays held: the next good apply goes through at once.
	if _, err := p.a.Apply(p.ctx, fakePlan{cluster: []byte("pools: {web: 2}\n")}, false); err != nil {
		t.Fatal(err)
	}
	// The peer's apply failing leaves this node alone too.
	p.lb.mu.Lock()
	p.lb.failCommit = true
	p.lb.mu.Unlock()
	_, err = p.a.Apply(p.ctx, fakePlan{cluster: []byte("pools: {web: 5}\n")}, false)
	if err == nil || !strings.Contains(err.Error(), "could not apply") {
		t.Fatalf("peer commit failure: %v", err)
	}
	if a, b := p.la.get(), p.lb.get(); a.Generation != 1 || b.Generation != 1 || a.Hash != b.Hash {
		t.Fatalf("after a failed peer commit: a %d b %d", a.Generation, b.Generation)
	}
	// This node's apply failing after the peer applied: the peer goes back.
	p.la.mu.Lock()
	p.la.failCommit = true
	p.la.mu.Unlock()
	if _, err = p.a.Apply(p.ctx, fakePlan{cluster: []byte("pools: {web: 6}\n")}, false); err == nil {
		t.Fatal("a failed local commit reported success")
	}
	if a, b := p.la.get(), p.lb.get(); a.Generation != 1 || b.Generation != 1 || a.Hash != b.Hash {
		t.Fatalf("after a failed local commit: a %d %s b %d %s", a.Generation, short(a.Hash), b.Generation, short(b.Hash))
	}
}

func TestUnreachablePeerRefusesUnlessForced(t *testing.T) {
	p := newPair(t, false)
	_, err := p.a.Apply(p.ctx, fakePlan{cluster: []byte("pools: {web: 2}\n")}, false)
	if !errors.Is(err, ErrPeerUnreachable) || !strings.Contains(err.Error(), "--force-local") || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("unreachable peer: %v", err)
	}
	if a := p.la.get(); a.Generation != 0 {
		t.Fatalf("applied though the peer is unreachable: %+v", a)
	}
	res, err := p.a.Apply(p.ctx, fakePlan{cluster: []byte("pools: {web: 2}\n")}, true)
	if err != nil || !res.LocalOnly {
		t.Fatalf("forced apply: %+v %v", res, err)
	}
	p.a.SyncNow(p.ctx)
	if s := p.a.Status(); s.Agree || s.Peers[0].Reachable {
		t.Fatalf("a lone node says it agrees: %+v", s)
	}
	if !logged(p.logA, "CONFIG DISAGREEMENT") {
		t.Error("the disagreement was not logged")
	}
	// The peer comes back with its older config and is brought up to date.
	p.startB()
	settle(p)
	if a, b := p.la.get(), p.lb.get(); b.Generation != 1 || b.Hash != a.Hash {
		t.Fatalf("rejoined peer not brought up to date: a %d %s b %d %s", a.Generation, short(a.Hash), b.Generation, short(b.Hash))
	}
	p.a.SyncNow(p.ctx)
	if s := p.a.Status(); !s.Agree {
		t.Fatalf("after the rejoin: %+v", s)
	}
}

// settle runs hello rounds on both nodes until they run the same hash
// (at most 20 rounds: a round that meets a sync in progress skips it).
func settle(p *pair) {
	for i := 0; i < 20; i++ {
		p.a.SyncNow(p.ctx)
		p.b.SyncNow(p.ctx)
		if p.la.get().Hash == p.lb.get().Hash {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func logged(h *test.Hook, s string) bool {
	for _, e := range h.AllEntries() {
		if strings.Contains(e.Message, s) {
			return true
		}
	}
	return false
}

// Same generation, different configs: the larger hash wins whichever node
// says hello first; a newer config the node refuses is not retried.
func TestTieAndRefusedPull(t *testing.T) {
	at := func(gen uint64, cluster string) *fakeLocal {
		return &fakeLocal{st: State{Generation: gen, Hash: hashOf([]byte(cluster)), Cluster: []byte(cluster)}}
	}
	for _, first := range []string{"a", "b"} {
		la, lb := at(4, "pools: {x: 1}\n"), at(4, "pools: {y: 1}\n")
		if first == "b" {
			la, lb = lb, la
		}
		win := la.st.Hash
		if lb.st.Hash > win {
			win = lb.st.Hash
		}
		p := newPairWith(t, true, la, lb)
		settle(p)
		if a, b := p.la.get(), p.lb.get(); a.Hash != win || b.Hash != win {
			t.Errorf("%s holds the smaller: a %s b %s, want both %s", first, short(a.Hash), short(b.Hash), short(win))
		}
	}
	p := newPairWith(t, true, newLocal("pools: {web: 1}\n"), at(9, "bad"))
	settle(p)
	settle(p)
	p.la.mu.Lock()
	commits := p.la.commits
	p.la.mu.Unlock()
	if a := p.la.get(); a.Generation != 0 || commits != 0 {
		t.Fatalf("a refused config was applied: %+v", a)
	}
	n := 0
	for _, e := range p.logA.AllEntries() {
		if strings.Contains(e.Message, "refused here") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("refused pull logged %d times, want once", n)
	}
	if s := p.a.Status(); s.Agree {
		t.Error("nodes with different configs agree")
	}
}

// A prepared config nobody commits expires and frees the node.
func TestPreparedExpires(t *testing.T) {
	p := newPair(t, true)
	p.b.o.PrepareTTL = 100 * time.Millisecond
	r, err := p.a.exchange(p.ctx, p.addrB, Message{Kind: KindPrepare, Txn: "t1", Generation: 1, Hash: hashOf([]byte("pools: {}\n")), Config: []byte("pools: {}\n")})
	if err != nil || !r.OK {
		t.Fatalf("prepare: %+v %v", r, err)
	}
	if _, err := p.b.Apply(p.ctx, fakePlan{cluster: []byte("pools: {z: 1}\n")}, false); err != nil {
		t.Fatalf("apply after the prepared config expired: %v", err)
	}
	r, err = p.a.exchange(p.ctx, p.addrB, Message{Kind: KindCommit, Txn: "t1"})
	if err != nil || r.OK {
		t.Fatalf("commit of an expired transaction: %+v %v", r, err)
	}
	if b := p.lb.get(); b.Hash != hashOf([]byte("pools: {z: 1}\n")) {
		t.Errorf("expired transaction committed")
	}
}

// A peer whose apply takes longer than an exchange's Timeout still
// answers its commit (the commit has its own, longer timeout), so a slow
// apply is not mistaken for a failure and undone.
func TestSlowPeerCommitStillAgrees(t *testing.T) {
	lb := newLocal("pools: {web: 1}\n")
	lb.delay = 1500 * time.Millisecond // Timeout is 1 s
	p := newPairWith(t, true, newLocal("pools: {web: 1}\n"), lb)
	if _, err := p.a.Apply(p.ctx, fakePlan{cluster: []byte("pools: {web: 2}\n")}, false); err != nil {
		t.Fatalf("slow peer: %v", err)
	}
	if a, b := p.la.get(), p.lb.get(); a.Generation != 1 || b.Generation != 1 || a.Hash != b.Hash {
		t.Fatalf("after a slow commit: a %d %s b %d %s", a.Generation, short(a.Hash), b.Generation, short(b.Hash))
	}
}
