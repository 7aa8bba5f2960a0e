package ipvs

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// only is st reduced to the services keys name, without timeouts: what a
// health transition in their pools hands ApplyServices.
func only(st *State, keys ...ServiceKey) *State {
	out := &State{Services: map[ServiceKey]*Service{}, Unhealthy: st.Unhealthy}
	for _, k := range keys {
		out.Services[k] = st.Services[k]
	}
	return out
}

// TestApplyServicesLeavesTheRestAlone: a partial apply changes the services
// it lists and nothing else: other services are not deleted, timeouts not
// touched, drains elsewhere go on.
func TestApplyServicesLeavesTheRestAlone(t *testing.T) {
	k := newFakeKernel()
	r := NewReconciler(k, quietLog(), Options{DrainTimeout: time.Minute})
	ctx := context.Background()
	if _, err := r.Apply(ctx, testState()); err != nil {
		t.Fatal(err)
	}
	// A member removed from api drains (full apply).
	apiLess := edited(func(st *State) { delete(st.Services[apiKey].Dests, dk("198.51.100.22", 8443)) })
	if _, err := r.Apply(ctx, apiLess); err != nil {
		t.Fatal(err)
	}
	if len(r.Draining()) != 1 {
		t.Fatalf("drains %v", r.Draining())
	}
	before := k.dump()
	// web's member .11 fails its check: only web is handed over.
	down := edited(func(st *State) { delete(st.Services[webKey].Dests, dk("198.51.100.11", 8080)) })
	down.Unhealthy = map[DrainRef]bool{{Service: webKey, Dest: dk("198.51.100.11", 8080)}: true}
	k.calls = nil
	c, err := r.ApplyServices(ctx, only(down, webKey))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Detail.(*Plan)
	if len(p.Ops) != 1 || p.Ops[0].Kind != OpDelDest || len(k.calls) != 1 {
		t.Fatalf("partial apply: plan %s, calls %v", p, k.calls)
	}
	if len(r.Draining()) != 1 {
		t.Fatalf("the partial apply ended api's drain: %v", r.Draining())
	}
	if k.cfg.TimeoutTCP != 90*time.Second {
		t.Fatalf("timeouts changed: %v", k.cfg)
	}
	// Undo puts the member back, and the rest is as before.
	if err := c.Undo(); err != nil {
		t.Fatal(err)
	}
	if after := k.dump(); after != before {
		t.Fatalf("undo of the partial apply:\n%s\nwant\n%s", after, before)
	}
	// A partial apply naming a service the kernel lacks adds it and
	// deletes nothing.
	nk := svcKey(unix.IPPROTO_TCP, "203.0.113.120", 8000)
	extra := testState()
	extra.Services[nk] = &Service{Key: nk, Scheduler: "rr", Netmask: NetmaskV4(32), Dests: map[DestKey]*Dest{dk("198.51.100.41", 80): {Key: dk("198.51.100.41", 80), Weight: 1, Fwd: FwdMasq}}}
	c, err = r.ApplyServices(ctx, only(extra, nk))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Detail.(*Plan).Counts(); got["add-service"] != 1 || got["add-dest"] != 1 || len(c.Detail.(*Plan).Ops) != 2 {
		t.Fatalf("new service by partial apply: %v", got)
	}
	if len(k.svcs) != 5 {
		t.Fatalf("kernel has %d services, want the 4 and the new one", len(k.svcs))
	}
	// The memory knows the whole table: a full apply of the original
	// state removes the extra service and nothing else changes.
	c, err = r.Apply(ctx, apiLess)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Detail.(*Plan); len(got.Ops) != 1 || got.Ops[0].Kind != OpDelService {
		t.Fatalf("full apply after partial ones: %s", got)
	}
}
