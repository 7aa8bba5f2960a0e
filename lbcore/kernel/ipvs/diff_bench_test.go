package ipvs

import (
	"context"
	"maps"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func table(nVS, nDest int) *State {
	st := NewState()
	for i := range nVS {
		k := ServiceKey{Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i%50)}), Port: uint16(1000 + i/50)}
		s := &Service{Key: k, Scheduler: "wrr", Dests: map[DestKey]*Dest{}}
		for j := range nDest {
			dk := DestKey{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(11 + j)}), Port: 8080}
			s.Dests[dk] = &Dest{Key: dk, Weight: 1, Fwd: FwdMasq}
		}
		st.Services[k] = s
	}
	return st
}

// BenchmarkDiffNoop1000x10 is the planning cost of a no-op re-apply over
// 1000 VS x 10 members (the guest report has the whole apply).
func BenchmarkDiffNoop1000x10(b *testing.B) {
	want, have := table(1000, 10), table(1000, 10)
	for b.Loop() {
		if p := Diff(want, have, DiffOptions{Drain: true}); !p.Empty() {
			b.Fatal(p)
		}
	}
}

// TestDiffOrdersTouchedServices: services are planned in key order and
// their destinations in address order, whatever the map order.
func TestDiffOrdersTouchedServices(t *testing.T) {
	want, have := table(60, 4), table(60, 4)
	var expect []string
	for _, s := range want.SortedServices() {
		if s.Key.Port%2 == 0 && s.Key.Addr.As4()[3]%7 == 0 {
			for _, d := range s.SortedDests() {
				d.Weight = 9
				expect = append(expect, s.Key.String()+" "+d.Key.String())
			}
		}
	}
	for range 5 {
		p := Diff(want, have, DiffOptions{})
		if len(p.Ops) != len(expect) || len(expect) < 8 {
			t.Fatalf("%d ops for %d changes", len(p.Ops), len(expect))
		}
		for i, op := range p.Ops {
			if got := op.Svc.Key.String() + " " + op.Dest.Key.String(); got != expect[i] {
				t.Fatalf("op %d is %s, want %s", i, got, expect[i])
			}
		}
	}
}

// BenchmarkHealthTransition1000x10 is a health transition's reconciler
// cost over 1000 VS x 10 members (fake kernel: no syscalls): one member of
// one service down or up, that service alone through ApplyServices.
func BenchmarkHealthTransition1000x10(b *testing.B) {
	full := table(1000, 10)
	r := NewReconciler(newFakeKernel(), quietLog(), Options{DrainTimeout: time.Minute})
	if _, err := r.Apply(context.Background(), full); err != nil {
		b.Fatal(err)
	}
	svc := full.SortedServices()[2]
	member := svc.SortedDests()[3]
	i := 0
	for b.Loop() {
		s := *svc
		s.Dests = maps.Clone(svc.Dests)
		part := &State{Services: map[ServiceKey]*Service{s.Key: &s}}
		if i%2 == 0 {
			delete(s.Dests, member.Key)
			part.Unhealthy = map[DrainRef]bool{{Service: svc.Key, Dest: member.Key}: true}
		}
		i++
		if _, err := r.ApplyServices(context.Background(), part); err != nil {
			b.Fatal(err)
		}
	}
}
