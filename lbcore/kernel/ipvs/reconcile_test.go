package ipvs

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// The test table: what lbcore/engine makes of a config with four virtual
// servers (engine's tests check that translation; these test the reconciler).
var (
	webKey   = svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)
	apiKey   = svcKey(unix.IPPROTO_TCP, "203.0.113.101", 443)
	rangeKey = ServiceKey{Family: unix.AF_INET, FWMark: 0x100042}
	dnsKey   = svcKey(unix.IPPROTO_UDP, "203.0.113.103", 53)
)

func testState() *State {
	st := NewState()
	st.Timeouts = &Timeouts{TCP: 90 * time.Second}
	add := func(name string, k ServiceKey, sched string, timeout uint32, mask uint32, fwd uint32, dests ...Dest) {
		s := &Service{Name: name, Key: k, Scheduler: sched, Netmask: mask, Timeout: timeout, Dests: map[DestKey]*Dest{}}
		if timeout != 0 {
			s.Flags = FlagPersistent
		}
		for _, d := range dests {
			d.Fwd = fwd
			s.Dests[d.Key] = &d
		}
		st.Services[k] = s
	}
	all := NetmaskV4(32)
	add("web", webKey, "rr", 600, all, FwdMasq, Dest{Key: dk("198.51.100.11", 8080), Weight: 1}, Dest{Key: dk("198.51.100.12", 8080), Weight: 2})
	add("api", apiKey, "wrr", 0, all, FwdMasq, Dest{Key: dk("198.51.100.21", 8443), Weight: 1}, Dest{Key: dk("198.51.100.22", 8443), Weight: 1})
	add("range", rangeKey, "wrr", 60, NetmaskV4(24), FwdDR, Dest{Key: dk("198.51.100.31", 0), Weight: 1}, Dest{Key: dk("198.51.100.32", 0), Weight: 1})
	add("dns", dnsKey, "wrr", 600, all, FwdTunnel, Dest{Key: dk("198.51.100.31", 53), Weight: 1}, Dest{Key: dk("198.51.100.32", 53), Weight: 1})
	return st
}

// edited returns the test table changed by edit.
func edited(edit func(st *State)) *State {
	st := testState()
	edit(st)
	return st
}

func withWeight(w int) *State {
	return edited(func(st *State) { st.Services[webKey].Dests[dk("198.51.100.12", 8080)].Weight = w })
}

func without11() *State {
	return edited(func(st *State) { delete(st.Services[webKey].Dests, dk("198.51.100.11", 8080)) })
}

func quietLog() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
	ch  chan time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) After(time.Duration) <-chan time.Time {
	return c.ch
}
func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func svcKey(proto uint16, vip string, port uint16) ServiceKey {
	return ServiceKey{Family: unix.AF_INET, Protocol: proto, Addr: netip.MustParseAddr(vip), Port: port}
}

func dk(a string, p uint16) DestKey { return DestKey{Addr: netip.MustParseAddr(a), Port: p} }

func TestApplyColdThenIdempotent(t *testing.T) {
	k := newFakeKernel()
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: time.Minute})
	want := testState()
	a, err := r.reconcile(want, false)
	if err != nil {
		t.Fatal(err)
	}
	if c := a.Plan.Counts(); c["add-service"] != 4 || c["add-dest"] != 8 || c["set-timeouts"] != 1 {
		t.Errorf("cold plan counts = %v", c)
	}
	got, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if p := Diff(want, got, DiffOptions{Drain: true}); !p.Empty() {
		t.Fatalf("kernel differs from desired after apply:\n%s", p)
	}
	if got.Timeouts.TCP != 90*time.Second || got.Timeouts.UDP != 300*time.Second {
		t.Errorf("timeouts after apply = %+v (tcp 90s set, udp left at kernel default)", got.Timeouts)
	}
	before := len(k.calls)
	a2, err := r.reconcile(testState(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !a2.Plan.Empty() || len(k.calls) != before {
		t.Fatalf("second apply of the same config changed the kernel: %s / %v", a2.Plan, k.calls[before:])
	}
}

func TestChangeOneMemberTouchesOnlyItsService(t *testing.T) {
	k := newFakeKernel()
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: time.Minute})
	if _, err := r.reconcile(testState(), false); err != nil {
		t.Fatal(err)
	}
	before := len(k.calls)
	a, err := r.reconcile(withWeight(5), false)
	if err != nil {
		t.Fatal(err)
	}
	calls := k.calls[before:]
	if len(calls) != 1 || calls[0] != "update-dest tcp:203.0.113.100:80 -> 198.51.100.12:8080" {
		t.Fatalf("one weight change made calls %v (plan %s)", calls, a.Plan)
	}
	// Scheduler change: one update-service, nothing else.
	before = len(k.calls)
	changed2 := withWeight(5)
	changed2.Services[webKey].Scheduler = "lc"
	if _, err := r.reconcile(changed2, false); err != nil {
		t.Fatal(err)
	}
	if calls := k.calls[before:]; len(calls) != 1 || !strings.HasPrefix(calls[0], "update-service tcp:203.0.113.100:80") {
		t.Fatalf("scheduler change made calls %v", calls)
	}
}

// TestRollbackOnInjectedFailure fails every step of a mixed plan in turn and
// checks the kernel ends exactly as it started.
func TestRollbackOnInjectedFailure(t *testing.T) {
	nextState := func() *State {
		return edited(func(st *State) {
			web := st.Services[webKey]
			web.Scheduler = "sh"
			delete(web.Dests, dk("198.51.100.12", 8080))
			web.Dests[dk("198.51.100.13", 8080)] = &Dest{Key: dk("198.51.100.13", 8080), Weight: 4, Fwd: FwdMasq}
			delete(st.Services, dnsKey)
			k := svcKey(unix.IPPROTO_TCP, "203.0.113.110", 25)
			st.Services[k] = &Service{Name: "new", Key: k, Scheduler: "wrr", Flags: FlagPersistent, Timeout: 600, Netmask: NetmaskV4(32), Dests: map[DestKey]*Dest{
				dk("198.51.100.31", 25): {Key: dk("198.51.100.31", 25), Weight: 1, Fwd: FwdMasq},
				dk("198.51.100.32", 25): {Key: dk("198.51.100.32", 25), Weight: 1, Fwd: FwdMasq}}}
			st.Timeouts = &Timeouts{TCP: 120 * time.Second, UDP: 30 * time.Second}
		})
	}
	probe := newFakeKernel()
	pr := NewReconciler(probe, quietLog(), Options{DrainTimeout: time.Minute})
	if _, err := pr.reconcile(testState(), false); err != nil {
		t.Fatal(err)
	}
	a, err := pr.reconcile(nextState(), false)
	if err != nil {
		t.Fatal(err)
	}
	n := len(a.Plan.Ops)
	c := a.Plan.Counts()
	if c["set-timeouts"] != 1 || c["update-service"] != 1 || c["add-service"] != 1 || c["del-service"] != 1 || c["drain"] != 1 || c["add-dest"] < 3 {
		t.Fatalf("plan is not mixed enough to test rollback: %v\n%s", c, a.Plan)
	}
	// One change per call, and batches whose chunks go on past a failure
	// (as the kernel runs a sendmsg's messages) and stop after it.
	kernels := map[string]func(*fakeKernel) Kernel{
		"one-call-each": func(k *fakeKernel) Kernel { return k },
		"batches-of-3":  func(k *fakeKernel) Kernel { return &batchingFake{fakeKernel: k, chunk: 3} },
	}
	for name, wrap := range kernels {
		t.Run(name, func(t *testing.T) { testRollbackAtEveryStep(t, wrap, n, testState, nextState) })
	}
}

func testRollbackAtEveryStep(t *testing.T, wrap func(*fakeKernel) Kernel, n int, testState, nextState func() *State) {
	for fail := 1; fail <= n; fail++ {
		k := newFakeKernel()
		r := NewReconciler(wrap(k), quietLog(), Options{DrainTimeout: time.Minute})
		if _, err := r.reconcile(testState(), false); err != nil {
			t.Fatal(err)
		}
		start := k.dump()
		k.failAt = k.n + fail
		_, err := r.reconcile(nextState(), false)
		if err == nil {
			t.Fatalf("fail at step %d: apply succeeded", fail)
		}
		if !strings.Contains(err.Error(), "rolled back") || !strings.Contains(err.Error(), "injected failure") {
			t.Errorf("fail at step %d: error %q does not say what failed and that it rolled back", fail, err)
		}
		if end := k.dump(); end != start {
			t.Fatalf("fail at step %d: kernel changed:\nbefore:\n%s\nafter:\n%s", fail, start, end)
		}
		if len(r.Draining()) != 0 {
			t.Errorf("fail at step %d: failed apply registered drains", fail)
		}
	}
}

func TestAppliedRollback(t *testing.T) {
	k := newFakeKernel()
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: time.Minute})
	if _, err := r.reconcile(testState(), false); err != nil {
		t.Fatal(err)
	}
	start := k.dump()
	a, err := r.reconcile(edited(func(st *State) { delete(st.Services, webKey) }), false)
	if err != nil {
		t.Fatal(err)
	}
	if k.dump() == start {
		t.Fatal("apply changed nothing")
	}
	if err := a.undoAll(); err != nil {
		t.Fatal(err)
	}
	if end := k.dump(); end != start {
		t.Fatalf("rollback did not restore:\n%s\nvs\n%s", start, end)
	}
}

func TestDrain(t *testing.T) {
	k := newFakeKernel()
	clk := &fakeClock{now: time.Unix(1000, 0)}
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: 30 * time.Second, Clock: clk})
	if _, err := r.reconcile(testState(), false); err != nil {
		t.Fatal(err)
	}
	web := svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)
	m11, m12 := dk("198.51.100.11", 8080), dk("198.51.100.12", 8080)
	k.setActive(web, m11, 3)
	k.setActive(web, m12, 2)
	without := edited(func(st *State) {
		st.Services[webKey].Dests = map[DestKey]*Dest{dk("198.51.100.13", 8080): {Key: dk("198.51.100.13", 8080), Weight: 1, Fwd: FwdMasq}}
	})
	a, err := r.reconcile(without, false)
	if err != nil {
		t.Fatal(err)
	}
	if a.Plan.Counts()["drain"] != 2 {
		t.Fatalf("removing two members should drain them: %s", a.Plan)
	}
	for _, m := range []DestKey{m11, m12} {
		if d := k.svcs[web].dests[m]; d == nil || d.Weight != 0 {
			t.Fatalf("draining member %s: %+v (want present, weight 0)", m, d)
		}
	}
	// Same config again: still a no-op, drains stay registered.
	if a, err := r.reconcile(without, false); err != nil || !a.Plan.Empty() || len(r.Draining()) != 2 {
		t.Fatalf("re-apply during drain: err=%v plan=%v draining=%d", err, a.Plan, len(r.Draining()))
	}
	if n, err := r.DrainOnce(); err != nil || n != 0 {
		t.Fatalf("members with active connections deleted early: n=%d err=%v", n, err)
	}
	k.setActive(web, m11, 0)
	if n, err := r.DrainOnce(); err != nil || n != 1 {
		t.Fatalf("member with 0 active connections: n=%d err=%v", n, err)
	}
	if _, still := k.svcs[web].dests[m11]; still {
		t.Fatal("drained member 11 still in kernel")
	}
	if _, still := k.svcs[web].dests[m12]; !still {
		t.Fatal("member 12 (2 active) deleted before its timeout")
	}
	clk.advance(31 * time.Second)
	if n, err := r.DrainOnce(); err != nil || n != 1 {
		t.Fatalf("after drain timeout: n=%d err=%v", n, err)
	}
	if _, still := k.svcs[web].dests[m12]; still || len(r.Draining()) != 0 {
		t.Fatal("member 12 not deleted after the drain timeout")
	}
}

func TestDrainCancelledByReAdd(t *testing.T) {
	k := newFakeKernel()
	clk := &fakeClock{now: time.Unix(1000, 0)}
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: 30 * time.Second, Clock: clk})
	if _, err := r.reconcile(testState(), false); err != nil {
		t.Fatal(err)
	}
	web := svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)
	m11 := dk("198.51.100.11", 8080)
	k.setActive(web, m11, 1)
	without := without11()
	if _, err := r.reconcile(without, false); err != nil {
		t.Fatal(err)
	}
	a, err := r.reconcile(testState(), false)
	if err != nil {
		t.Fatal(err)
	}
	if c := a.Plan.Counts(); c["update-dest"] != 1 || len(a.Plan.Ops) != 1 {
		t.Fatalf("re-adding a draining member: plan %s", a.Plan)
	}
	clk.advance(time.Hour)
	if n, _ := r.DrainOnce(); n != 0 || k.svcs[web].dests[m11] == nil || k.svcs[web].dests[m11].Weight != 1 {
		t.Fatal("re-added member was drained away")
	}
}

func TestRunDrainerLoop(t *testing.T) {
	k := newFakeKernel()
	clk := &fakeClock{now: time.Unix(1000, 0), ch: make(chan time.Time)}
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: 30 * time.Second, Clock: clk})
	if _, err := r.reconcile(testState(), false); err != nil {
		t.Fatal(err)
	}
	without := without11()
	if _, err := r.reconcile(without, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.RunDrainer(ctx, time.Second); close(done) }()
	clk.ch <- time.Time{} // one tick: member has 0 active connections
	clk.ch <- time.Time{} // second tick proves the first pass finished
	web := svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)
	r.mu.Lock()
	_, still := k.svcs[web].dests[dk("198.51.100.11", 8080)]
	r.mu.Unlock()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("drainer did not stop on context cancel")
	}
	if still {
		t.Fatal("drainer loop did not delete the idle member")
	}
}

func TestDeleteWithoutDrain(t *testing.T) {
	k := newFakeKernel()
	r := NewReconciler(k, quietLog(), Options{})
	if _, err := r.reconcile(testState(), false); err != nil {
		t.Fatal(err)
	}
	a, err := r.reconcile(without11(), false)
	if err != nil {
		t.Fatal(err)
	}
	if c := a.Plan.Counts(); c["del-dest"] != 1 || len(a.Plan.Ops) != 1 {
		t.Fatalf("plan = %s", a.Plan)
	}
}
