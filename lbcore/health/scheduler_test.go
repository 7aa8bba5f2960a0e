package health

import (
	"context"
	"fmt"
	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestPhaseSpread(t *testing.T) {
	const n, buckets = 10000, 20
	interval := time.Second
	var count [buckets]int
	for i := 0; i < n; i++ {
		p := phase(fmt.Sprintf("pool/198.51.%d.%d:80", i/250, i%250), interval)
		if p < 0 || p >= interval {
			t.Fatalf("phase %s outside interval", p)
		}
		count[int(p*buckets/interval)]++
	}
	for i, c := range count {
		if c < n/buckets*8/10 || c > n/buckets*12/10 {
			t.Errorf("bucket %d holds %d of %d phases (want %d ±20%%)", i, c, n, n/buckets)
		}
	}
	if phase("x", interval) != phase("x", interval) {
		t.Error("phase is not deterministic")
	}
}

func TestFirstSlot(t *testing.T) {
	now := time.Unix(100, 250_000_000)
	got := firstSlot(now, time.Second, 100*time.Millisecond)
	if want := time.Unix(101, 100_000_000); !got.Equal(want) {
		t.Errorf("firstSlot = %v, want %v", got, want)
	}
	got = firstSlot(now, time.Second, 300*time.Millisecond)
	if want := time.Unix(100, 300_000_000); !got.Equal(want) {
		t.Errorf("firstSlot = %v, want %v", got, want)
	}
}

// fakeChecker blocks per target as told, ignoring the context (a worst-case
// checker), and records concurrency.
type fakeChecker struct {
	mu       sync.Mutex
	block    map[netip.Addr]time.Duration
	ok       map[netip.Addr]bool
	inFlight map[netip.Addr]int
	maxIn    map[netip.Addr]int
}

func (f *fakeChecker) Check(ctx context.Context, t Target) Result {
	f.mu.Lock()
	f.inFlight[t.Addr]++
	f.maxIn[t.Addr] = max(f.maxIn[t.Addr], f.inFlight[t.Addr])
	d, ok := f.block[t.Addr], f.ok[t.Addr]
	f.mu.Unlock()
	time.Sleep(d)
	f.mu.Lock()
	f.inFlight[t.Addr]--
	f.mu.Unlock()
	if ok {
		return Result{OK: true, Reason: "fake ok"}
	}
	return Result{Reason: "fake failure"}
}

// TestNoPileUp runs the dispatcher with a checker that overruns its slot
// 2.5 times: the member never has two checks at once, its extra slots are
// counted as skipped, and a healthy member beside it keeps its rhythm.
func TestNoPileUp(t *testing.T) {
	slow, fast := netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("198.51.100.12")
	fc := &fakeChecker{
		block:    map[netip.Addr]time.Duration{slow: 250 * time.Millisecond},
		ok:       map[netip.Addr]bool{fast: true},
		inFlight: map[netip.Addr]int{}, maxIn: map[netip.Addr]int{},
	}
	var mu sync.Mutex
	starts := map[string][]time.Time{}
	s := NewScheduler(Options{OnResult: func(o Observation) {
		mu.Lock()
		starts[o.Member] = append(starts[o.Member], o.Started)
		mu.Unlock()
	}})
	mon := config.Monitor{Type: config.MonitorTCP, Interval: config.Duration(100 * time.Millisecond)}
	mon.ApplyDefaults()
	if err := s.Configure(config.Monitors{"m": mon}, []Member{
		{ID: "slow", Target: Target{slow, 80}, Monitor: "m"},
		{ID: "fast", Target: Target{fast, 80}, Monitor: "m"},
	}); err != nil {
		t.Fatal(err)
	}
	// Swap in the fake checker for both members.
	s.mu.Lock()
	for _, m := range s.members {
		m.checker = fc
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	s.Run(ctx)

	if fc.maxIn[slow] != 1 {
		t.Errorf("slow member had %d checks at once", fc.maxIn[slow])
	}
	snap := map[string]MemberStatus{}
	for _, st := range s.Snapshot() {
		snap[st.ID] = st
	}
	// Each check spans 3 slots: about 8 skips in 1.2 s; a loaded CI
	// machine may start fewer checks, never none skipped.
	if snap["slow"].Skipped < 3 {
		t.Errorf("slow member skipped %d slots, want >= 3 (each check spans 3 slots)", snap["slow"].Skipped)
	}
	mu.Lock()
	defer mu.Unlock()
	fs := starts["fast"]
	// Bounds leave room for a loaded machine; a fast member queued behind
	// the slow one (250 ms a check) would fall far below them.
	if len(fs) < 8 || len(fs) > 13 {
		t.Errorf("fast member ran %d checks in 1.2s at 100ms, want 8-13", len(fs))
	}
	for i := 1; i < len(fs); i++ {
		if gap := fs[i].Sub(fs[i-1]); gap < 50*time.Millisecond || gap > 200*time.Millisecond {
			t.Errorf("fast member gap %d = %s, want about 100ms (50-200ms; a check queued behind the 250ms one would exceed it)", i, gap)
		}
	}
	if st := snap["fast"]; st.State != StateUp || st.Transitions != 1 || st.LastReason != "fake ok" {
		t.Errorf("fast status %+v", st)
	}
}

func TestConfigureReconcile(t *testing.T) {
	s := NewScheduler(Options{})
	mon := config.Monitor{Type: config.MonitorTCP, Interval: config.Duration(time.Second), InitialState: config.InitialUp}
	a := Member{ID: "a", Target: Target{netip.MustParseAddr("198.51.100.11"), 80}, Monitor: "m"}
	b := Member{ID: "b", Target: Target{netip.MustParseAddr("198.51.100.12"), 80}, Monitor: "m"}
	if err := s.Configure(config.Monitors{"m": mon}, []Member{a, b}); err != nil {
		t.Fatal(err)
	}
	// Pretend a went down.
	s.mu.Lock()
	s.members["a"].tracker.State = StateDown
	s.members["b"].tracker.State = StateDown
	s.mu.Unlock()

	// Unknown monitor: rejected, nothing changes.
	c := Member{ID: "c", Target: b.Target, Monitor: "nope"}
	if err := s.Configure(config.Monitors{"m": mon}, []Member{a, c}); err == nil {
		t.Fatal("unknown monitor accepted")
	}
	if len(s.Snapshot()) != 2 {
		t.Fatal("failed Configure changed the members")
	}
	// Bad monitor: rejected.
	if err := s.Configure(config.Monitors{"m": {Type: "smtp"}}, []Member{a}); err == nil {
		t.Fatal("bad monitor accepted")
	}

	// a unchanged keeps its state; b moves to another server and starts over.
	b.Target.Port = 8080
	if err := s.Configure(config.Monitors{"m": mon}, []Member{a, b}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.State("a"); st != StateDown {
		t.Errorf("unchanged member lost its state: %s", st)
	}
	if st, _ := s.State("b"); st != StateUp {
		t.Errorf("moved member kept old state: %s (want initial up)", st)
	}
	if err := s.Configure(config.Monitors{"m": mon}, []Member{b}); err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, e := range s.queue {
		if !e.m.removed {
			live++
		}
	}
	if _, ok := s.State("a"); ok || live != 1 {
		t.Errorf("removed member still present (%d live in the queue)", live)
	}
}

// The dispatcher's heap hands out members in slot order through pushes,
// slot advances and removals.
func TestMemberHeapOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h memberHeap
	for i := range 1000 {
		h.push(&memberState{Member: Member{ID: fmt.Sprint(i)}, next: rng.Int64N(1e6)})
	}
	// advance the first entry's slot many times, as the dispatcher does
	for range 5000 {
		h[0].m.next += rng.Int64N(1e6)
		h[0].next = h[0].m.next
		h.fixTop()
	}
	prev := int64(-1)
	for n := 0; len(h) > 0; n++ {
		if h[0].next < prev {
			t.Fatalf("entry %d: slot %d after %d", n, h[0].next, prev)
		}
		if h[0].next != h[0].m.next {
			t.Fatalf("entry %d: heap slot %d, member slot %d", n, h[0].next, h[0].m.next)
		}
		prev = h[0].next
		h.pop()
	}
}

func TestDefaultQuantum(t *testing.T) {
	mon := func(d time.Duration) config.Monitor { return config.Monitor{Interval: config.Duration(d)} }
	for _, tc := range []struct {
		mons config.Monitors
		want time.Duration
	}{
		{config.Monitors{}, 5 * time.Millisecond},
		{config.Monitors{"a": mon(time.Second), "b": mon(5 * time.Second)}, 5 * time.Millisecond},
		{config.Monitors{"a": mon(time.Second), "b": mon(60 * time.Millisecond)}, 3 * time.Millisecond},
		{config.Monitors{"a": mon(10 * time.Millisecond)}, time.Millisecond},
	} {
		if got := defaultQuantum(tc.mons); got != tc.want {
			t.Errorf("%v: quantum %s, want %s", tc.mons, got, tc.want)
		}
	}
	s := NewScheduler(Options{})
	if err := s.Configure(config.Monitors{"m": {Type: config.MonitorTCP, Interval: config.Duration(100 * time.Millisecond)}}, nil); err != nil {
		t.Fatal(err)
	}
	if s.quantum != 5*time.Millisecond {
		t.Errorf("configured quantum %s, want 5ms for a 100ms interval", s.quantum)
	}
	s = NewScheduler(Options{Quantum: 2 * time.Millisecond})
	s.Configure(config.Monitors{}, nil)
	if s.quantum != 2*time.Millisecond {
		t.Errorf("Options.Quantum not honoured: %s", s.quantum)
	}
}
