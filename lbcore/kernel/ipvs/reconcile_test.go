package ipvs

import (
	"context"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

const testNetwork = `
version: 1
network:
  failover: {members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {members: [eth2], addresses: [198.51.100.2/24]}
  external: {members: [eth3], addresses: [203.0.113.2/24]}
local_address_pools:
  la: {addresses: [198.51.100.201-209]}
`

const testLB = testNetwork + `
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: web, scheduler: rr}
  - {name: api, vip: 203.0.113.101, port: 443, pool: api, mode: fullnat, local_address_pool: la, persistence: {enabled: false}}
  - {name: range, vip: 203.0.113.102, port: 8000-8010, pool: plain, mode: dr, persistence: {netmask: 255.255.255.0, timeout: 60s}}
  - {name: dns, vip: 203.0.113.103, port: 53, protocol: udp, pool: plain, mode: tun}
pools:
  web:
    members:
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080, weight: 2}
  api:
    members: [{address: 198.51.100.21, port: 8443}, {address: 198.51.100.22, port: 8443}]
  plain:
    members: [{address: 198.51.100.31}, {address: 198.51.100.32}]
`

func parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

func desired(t *testing.T, doc string) *State {
	t.Helper()
	st, err := Desired(parse(t, doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
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

func TestDesiredFromConfig(t *testing.T) {
	c := parse(t, testLB)
	st, err := Desired(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 4 {
		t.Fatalf("%d services, want 4", len(st.Services))
	}
	web := st.Services[svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)]
	if web == nil || web.Scheduler != "rr" || web.Flags != FlagPersistent || web.Timeout != 600 || web.Netmask != 0xffffffff {
		t.Fatalf("web = %+v", web)
	}
	if d := web.Dests[dk("198.51.100.12", 8080)]; d == nil || d.Weight != 2 || d.Fwd != FwdMasq {
		t.Errorf("web member 2 = %+v", d)
	}
	api := st.Services[svcKey(unix.IPPROTO_TCP, "203.0.113.101", 443)]
	if api == nil || api.Flags != 0 || api.Timeout != 0 || api.Scheduler != "wrr" {
		t.Errorf("api (persistence off, default wrr) = %+v", api)
	}
	rangeKey := ServiceKey{Family: unix.AF_INET, FWMark: c.VirtualServers[2].Mark()}
	rs := st.Services[rangeKey]
	if rs == nil {
		t.Fatalf("no fwmark service %s in %v", rangeKey, st.SortedServices())
	}
	if rs.Timeout != 60 || rs.Netmask != NetmaskV4(24) || NetmaskV4(24) == 0xffffffff {
		t.Errorf("range persistence = %d s netmask %#x", rs.Timeout, rs.Netmask)
	}
	if d := rs.Dests[dk("198.51.100.31", 0)]; d == nil || d.Fwd != FwdDR {
		t.Errorf("fwmark member (port 0 keeps client port, dr) = %+v in %v", d, rs.SortedDests())
	}
	dns := st.Services[svcKey(unix.IPPROTO_UDP, "203.0.113.103", 53)]
	if d := dns.Dests[dk("198.51.100.31", 53)]; d == nil || d.Fwd != FwdTunnel {
		t.Errorf("dns member (port 0 -> VS port, tun) = %+v", dns.SortedDests())
	}
	if st.Timeouts.TCP != 90*time.Second {
		t.Errorf("tcp timeout %v", st.Timeouts.TCP)
	}
}

func TestDesiredHealthInhibitSorry(t *testing.T) {
	doc := testNetwork + `
virtual_servers:
  - {name: a, vip: 203.0.113.100, port: 80, pool: a}
  - {name: b, vip: 203.0.113.101, port: 80, pool: b}
pools:
  a:
    members: [{address: 198.51.100.11}, {address: 198.51.100.12}]
  b:
    inhibit: true
    quorum: 2
    sorry_server: 198.51.100.99:8080
    members: [{address: 198.51.100.21}, {address: 198.51.100.22}]
`
	down := func(pool string, m netip.AddrPort) bool {
		return m.Addr().String() != "198.51.100.12" && m.Addr().String() != "198.51.100.22"
	}
	st, err := Desired(parse(t, doc), down)
	if err != nil {
		t.Fatal(err)
	}
	a := st.Services[svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)]
	if len(a.Dests) != 1 || a.Dests[dk("198.51.100.11", 80)] == nil {
		t.Errorf("pool a: down member not removed: %v", a.SortedDests())
	}
	b := st.Services[svcKey(unix.IPPROTO_TCP, "203.0.113.101", 80)]
	if got := len(b.Dests); got != 3 {
		t.Fatalf("pool b: %d dests, want 2 inhibited/quorum-lost + sorry", got)
	}
	if b.Dests[dk("198.51.100.22", 80)].Weight != 0 || b.Dests[dk("198.51.100.21", 80)].Weight != 0 || b.Dests[dk("198.51.100.99", 8080)].Weight != 1 {
		t.Errorf("pool b below quorum: %+v", b.SortedDests())
	}
}

func TestApplyColdThenIdempotent(t *testing.T) {
	k := newFakeKernel()
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: time.Minute})
	want := desired(t, testLB)
	a, err := r.Apply(want)
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
	a2, err := r.Apply(desired(t, testLB))
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
	if _, err := r.Apply(desired(t, testLB)); err != nil {
		t.Fatal(err)
	}
	before := len(k.calls)
	changed := strings.Replace(testLB, "{address: 198.51.100.12, port: 8080, weight: 2}", "{address: 198.51.100.12, port: 8080, weight: 5}", 1)
	a, err := r.Apply(desired(t, changed))
	if err != nil {
		t.Fatal(err)
	}
	calls := k.calls[before:]
	if len(calls) != 1 || calls[0] != "update-dest tcp:203.0.113.100:80 -> 198.51.100.12:8080" {
		t.Fatalf("one weight change made calls %v (plan %s)", calls, a.Plan)
	}
	// Scheduler change: one update-service, nothing else.
	before = len(k.calls)
	changed2 := strings.Replace(changed, "scheduler: rr", "scheduler: lc", 1)
	if _, err := r.Apply(desired(t, changed2)); err != nil {
		t.Fatal(err)
	}
	if calls := k.calls[before:]; len(calls) != 1 || !strings.HasPrefix(calls[0], "update-service tcp:203.0.113.100:80") {
		t.Fatalf("scheduler change made calls %v", calls)
	}
}

// TestRollbackOnInjectedFailure fails every step of a mixed plan in turn and
// checks the kernel ends exactly as it started.
func TestRollbackOnInjectedFailure(t *testing.T) {
	next := strings.NewReplacer(
		"{name: web, vip: 203.0.113.100, port: 80, pool: web, scheduler: rr}", "{name: web, vip: 203.0.113.100, port: 80, pool: web, scheduler: sh}",
		"{address: 198.51.100.12, port: 8080, weight: 2}", "{address: 198.51.100.13, port: 8080, weight: 4}",
		"  - {name: dns, vip: 203.0.113.103, port: 53, protocol: udp, pool: plain, mode: tun}\n", "  - {name: new, vip: 203.0.113.110, port: 25, pool: plain}\n",
	).Replace(testLB) + "ipvs_timeouts: {tcp: 120s, udp: 30s}\n"
	probe := newFakeKernel()
	pr := NewReconciler(probe, quietLog(), Options{DrainTimeout: time.Minute})
	if _, err := pr.Apply(desired(t, testLB)); err != nil {
		t.Fatal(err)
	}
	a, err := pr.Apply(desired(t, next))
	if err != nil {
		t.Fatal(err)
	}
	n := len(a.Plan.Ops)
	c := a.Plan.Counts()
	if c["set-timeouts"] != 1 || c["update-service"] != 1 || c["add-service"] != 1 || c["del-service"] != 1 || c["drain"] != 1 || c["add-dest"] < 3 {
		t.Fatalf("plan is not mixed enough to test rollback: %v\n%s", c, a.Plan)
	}
	for fail := 1; fail <= n; fail++ {
		k := newFakeKernel()
		r := NewReconciler(k, quietLog(), Options{DrainTimeout: time.Minute})
		if _, err := r.Apply(desired(t, testLB)); err != nil {
			t.Fatal(err)
		}
		start := k.dump()
		k.failAt = k.n + fail
		_, err := r.Apply(desired(t, next))
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
	if _, err := r.Apply(desired(t, testLB)); err != nil {
		t.Fatal(err)
	}
	start := k.dump()
	a, err := r.Apply(desired(t, strings.Replace(testLB, "  - {name: web, vip: 203.0.113.100, port: 80, pool: web, scheduler: rr}\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if k.dump() == start {
		t.Fatal("apply changed nothing")
	}
	if err := a.Rollback(); err != nil {
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
	if _, err := r.Apply(desired(t, testLB)); err != nil {
		t.Fatal(err)
	}
	web := svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)
	m11, m12 := dk("198.51.100.11", 8080), dk("198.51.100.12", 8080)
	k.setActive(web, m11, 3)
	k.setActive(web, m12, 2)
	without := strings.Replace(testLB, "      - {address: 198.51.100.11, port: 8080}\n", "", 1)
	without = strings.Replace(without, "      - {address: 198.51.100.12, port: 8080, weight: 2}\n", "", 1)
	without = strings.Replace(without, "    members:\n", "    members: [{address: 198.51.100.13, port: 8080}]\n", 1)
	a, err := r.Apply(desired(t, without))
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
	if a, err := r.Apply(desired(t, without)); err != nil || !a.Plan.Empty() || len(r.Draining()) != 2 {
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
	if _, err := r.Apply(desired(t, testLB)); err != nil {
		t.Fatal(err)
	}
	web := svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)
	m11 := dk("198.51.100.11", 8080)
	k.setActive(web, m11, 1)
	without := strings.Replace(testLB, "      - {address: 198.51.100.11, port: 8080}\n", "", 1)
	if _, err := r.Apply(desired(t, without)); err != nil {
		t.Fatal(err)
	}
	a, err := r.Apply(desired(t, testLB))
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
	if _, err := r.Apply(desired(t, testLB)); err != nil {
		t.Fatal(err)
	}
	without := strings.Replace(testLB, "      - {address: 198.51.100.11, port: 8080}\n", "", 1)
	if _, err := r.Apply(desired(t, without)); err != nil {
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
	if _, err := r.Apply(desired(t, testLB)); err != nil {
		t.Fatal(err)
	}
	a, err := r.Apply(desired(t, strings.Replace(testLB, "      - {address: 198.51.100.11, port: 8080}\n", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c := a.Plan.Counts(); c["del-dest"] != 1 || len(a.Plan.Ops) != 1 {
		t.Fatalf("plan = %s", a.Plan)
	}
}
