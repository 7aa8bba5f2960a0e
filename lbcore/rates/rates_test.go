package rates

import (
	"testing"
	"time"
)

func TestCurrentAndHistory(t *testing.T) {
	r := New(15 * time.Minute)
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	if _, ok := r.Current("vs", 10*time.Second); ok {
		t.Fatal("a rate from no samples")
	}
	// 100 conns/s and 1 MB/s in for 30 s, sampled every 5 s.
	for i := 0; i <= 6; i++ {
		r.Add(t0.Add(time.Duration(i)*5*time.Second), map[string]Counters{"vs": {Conns: uint64(500 * i), BytesIn: uint64(5_000_000 * i), PacketsIn: 7}})
	}
	got, ok := r.Current("vs", 10*time.Second)
	if !ok || got.Conns != 100 || got.BytesIn != 1_000_000 || got.PacketsIn != 0 {
		t.Fatalf("current = %+v %v, want 100 conn/s, 1e6 B/s in", got, ok)
	}
	if _, ok := r.Current("other", 10*time.Second); ok {
		t.Fatal("a rate for an unknown key")
	}
	h := r.History("vs")
	if len(h) != 6 || h[0].Conns != 100 || !h[5].Time.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("history = %+v, want 6 points of 100 conn/s", h)
	}
	// A counter going backwards (service recreated): that interval has no
	// rate, the next one does.
	r.Add(t0.Add(35*time.Second), map[string]Counters{"vs": {Conns: 10}})
	if _, ok := r.Current("vs", 5*time.Second); ok {
		t.Fatal("a rate across a counter reset")
	}
	r.Add(t0.Add(40*time.Second), map[string]Counters{"vs": {Conns: 60}})
	if got, _ := r.Current("vs", 5*time.Second); got.Conns != 10 {
		t.Fatalf("after the reset: %+v, want 10 conn/s", got)
	}
	if h := r.History("vs"); len(h) != 7 {
		t.Fatalf("history across the reset has %d points, want 7 (one interval skipped)", len(h))
	}
	// A short window uses the newest interval only.
	r.Add(t0.Add(45*time.Second), map[string]Counters{"vs": {Conns: 160}})
	if got, _ := r.Current("vs", time.Second); got.Conns != 20 {
		t.Fatalf("1 s window: %+v, want 20 conn/s", got)
	}
	// Out-of-order samples are ignored.
	r.Add(t0.Add(44*time.Second), map[string]Counters{"vs": {Conns: 0}})
	if got, _ := r.Current("vs", time.Second); got.Conns != 20 {
		t.Fatalf("an older sample changed the rate: %+v", got)
	}
}

func TestRingKeepsFifteenMinutes(t *testing.T) {
	r := New(DefaultKeep)
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for i := 0; i < 1000; i++ { // 5000 s of 5 s samples
		r.Add(t0.Add(time.Duration(i)*5*time.Second), map[string]Counters{"vs": {Conns: uint64(i)}})
	}
	if n := r.Len(); n != 181 {
		t.Fatalf("ring holds %d samples, want 181 (15 min of 5 s intervals)", n)
	}
	h := r.History("vs")
	if span := h[len(h)-1].Time.Sub(h[0].Time); span != 15*time.Minute-5*time.Second {
		t.Fatalf("history spans %v", span)
	}
	if k := r.Keys(); len(k) != 1 || k[0] != "vs" {
		t.Fatalf("keys %v", k)
	}
}
