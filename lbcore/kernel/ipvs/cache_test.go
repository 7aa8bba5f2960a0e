package ipvs

import (
	"net/netip"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// TestApplyFromMemoryReadsNothing: after a first (full) apply, a
// one-member change reads nothing from the kernel (it plans against the
// table the last apply left) and still leaves the kernel equal to desired.
func TestApplyFromMemoryReadsNothing(t *testing.T) {
	k := newFakeKernel()
	clk := &fakeClock{now: time.Unix(1000, 0)}
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: time.Minute, Clock: clk})
	if _, err := r.reconcile(testState(), false); err != nil {
		t.Fatal(err)
	}
	if k.destReads != 0 || r.Stats().Full != 1 {
		t.Fatalf("cold apply on an empty kernel: %d destination reads, stats %+v", k.destReads, r.Stats())
	}
	k.serviceReads, k.destReads = 0, 0
	changed := withWeight(5)
	want := withWeight(5)
	a, err := r.reconcile(want, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Plan.Ops) != 1 || k.serviceReads != 0 || k.destReads != 0 {
		t.Fatalf("one-member change: %d ops, %d service dumps, %d destination reads (want 1, 0, 0)", len(a.Plan.Ops), k.serviceReads, k.destReads)
	}
	if st := r.Stats(); st.FromMemory != 1 || st.Full != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The caller editing its desired state afterwards must not change the
	// reconciler's memory: the same config again is a no-op.
	want.Services[svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)].Dests[dk("198.51.100.12", 8080)].Weight = 99
	if a, err := r.reconcile(changed, false); err != nil || !a.Plan.Empty() {
		t.Fatalf("re-apply: %v %v", err, a.Plan)
	}
	got, _ := r.Read()
	if p := Diff(changed, got, DiffOptions{}); !p.Empty() {
		t.Fatalf("kernel differs from desired:\n%s", p)
	}
}

// TestVerifyRestoresOutsideChanges: a service added and a weight changed
// behind the reconciler's back are invisible to applies from memory; Verify
// finds and undoes both, and a second Verify finds nothing.
func TestVerifyRestoresOutsideChanges(t *testing.T) {
	k := newFakeKernel()
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: time.Minute})
	if p, err := r.Verify(); p != nil || err != nil {
		t.Fatalf("verify before any apply: %v %v", p, err)
	}
	if _, err := r.reconcile(testState(), false); err != nil {
		t.Fatal(err)
	}
	stray := &mobyipvs.Service{AddressFamily: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: netip.MustParseAddr("203.0.113.140").AsSlice(), Port: 9, SchedName: "rr"}
	if err := k.NewService(stray); err != nil {
		t.Fatal(err)
	}
	web := svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)
	k.svcs[web].dests[dk("198.51.100.11", 8080)].Weight = 42
	if a, err := r.reconcile(testState(), false); err != nil || !a.Plan.Empty() {
		t.Fatalf("apply from memory: %v %s", err, a.Plan)
	}
	p, err := r.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if p == nil || p.Counts()["del-service"] != 1 || p.Counts()["update-dest"] != 1 || len(p.Ops) != 2 || r.Stats().Repairs != 1 {
		t.Fatalf("verify: plan %v, stats %+v", p, r.Stats())
	}
	got, _ := r.Read()
	if d := Diff(testState(), got, DiffOptions{}); !d.Empty() {
		t.Fatalf("kernel not restored:\n%s", d)
	}
	if p, err := r.Verify(); p != nil || err != nil {
		t.Fatalf("second verify: %v %v", p, err)
	}
}

// TestRefusedPlanRetriedOnFullRead: a service deleted behind the
// reconciler's back makes the kernel refuse a plan made from memory; the
// apply reads the table in full and succeeds in the same call.
func TestRefusedPlanRetriedOnFullRead(t *testing.T) {
	k := newFakeKernel()
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: time.Minute})
	if _, err := r.reconcile(testState(), false); err != nil {
		t.Fatal(err)
	}
	web := svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)
	delete(k.svcs, web)
	a, err := r.reconcile(withWeight(5), false)
	if err != nil {
		t.Fatalf("apply after an outside delete: %v", err)
	}
	if st := r.Stats(); st.Retries != 1 || st.Full != 2 {
		t.Fatalf("stats %+v, want one retry on a second full read", st)
	}
	if a.Plan.Counts()["add-service"] != 1 {
		t.Fatalf("retry plan %s does not recreate the deleted service", a.Plan)
	}
	got, _ := r.Read()
	if d := Diff(withWeight(5), got, DiffOptions{}); !d.Empty() {
		t.Fatalf("kernel differs from desired:\n%s", d)
	}
}

// TestFailedApplyForgetsTheTable: after a failed (rolled back) apply the
// next apply reads the kernel in full.
func TestFailedApplyForgetsTheTable(t *testing.T) {
	k := newFakeKernel()
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: time.Minute})
	if _, err := r.reconcile(testState(), false); err != nil {
		t.Fatal(err)
	}
	k.failAt = k.n + 1
	changed := withWeight(3)
	if _, err := r.reconcile(changed, false); err == nil {
		t.Fatal("injected failure not reported")
	}
	k.failAt = 0
	full := r.Stats().Full
	if _, err := r.reconcile(changed, false); err != nil {
		t.Fatal(err)
	}
	if r.Stats().Full != full+1 {
		t.Fatalf("apply after a failure did not read in full: %+v", r.Stats())
	}
}

// TestUnhealthyMemberDeletedAtOnce: a member that fails its health check
// leaves the service at once, even when removed members are drained.
func TestUnhealthyMemberDeletedAtOnce(t *testing.T) {
	k := newFakeKernel()
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: time.Minute})
	if _, err := r.reconcile(testState(), false); err != nil {
		t.Fatal(err)
	}
	down := without11()
	down.Unhealthy = map[DrainRef]bool{{Service: webKey, Dest: dk("198.51.100.11", 8080)}: true}
	a, err := r.reconcile(down, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Plan.Ops) != 1 || a.Plan.Ops[0].Kind != OpDelDest || len(a.Plan.Drains) != 0 {
		t.Fatalf("health-down member: plan %s drains %v (want one delete, no drain)", a.Plan, a.Plan.Drains)
	}
	web := svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)
	if _, ok := k.svcs[web].dests[dk("198.51.100.11", 8080)]; ok {
		t.Fatal("health-down member still in the kernel")
	}
	// Back up: added again.
	a, err = r.reconcile(testState(), false)
	if err != nil || len(a.Plan.Ops) != 1 || a.Plan.Ops[0].Kind != OpAddDest {
		t.Fatalf("member back up: %v %s", err, a.Plan)
	}
}
