package engine

import (
	"net/netip"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"golang.org/x/sys/unix"
)

const slowLB = testNetwork + `
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: web, scheduler: wrr, persistence: {enabled: false}}
  - {name: big, vip: 203.0.113.101, port: 80, pool: big, scheduler: wlc, persistence: {enabled: false}}
pools:
  web:
    slow_start: 10s
    members:
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080}
      - {address: 198.51.100.13, port: 8080, weight: 0}
  big:
    slow_start: 10s
    members:
      - {address: 198.51.100.21, weight: 60000}
      - {address: 198.51.100.22, weight: 100}
`

// The ramp, with the clock given: a tenth of the weight at the start, then
// linear in whole-second steps, the whole weight once slow_start has run.
func TestRampOf(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	d := 10 * time.Second
	for _, tc := range []struct {
		at    time.Duration
		share float64
		left  time.Duration
	}{
		{0, 0.1, 10 * time.Second},
		{900 * time.Millisecond, 0.1, 9100 * time.Millisecond}, // steps of 1 s
		{time.Second, 0.19, 9 * time.Second},
		{5 * time.Second, 0.55, 5 * time.Second},
		{9999 * time.Millisecond, 0.91, time.Millisecond},
		{10 * time.Second, 0, 0}, // done
		{time.Hour, 0, 0},
		{-time.Second, 0.1, 10 * time.Second}, // a start in the future (clock step) starts from the floor
	} {
		r := RampOf(d, t0, t0.Add(tc.at))
		if diff := r.Share - tc.share; diff > 1e-9 || diff < -1e-9 || r.Left != tc.left {
			t.Errorf("at %s: ramp %+v, want share %.2f left %s", tc.at, r, tc.share, tc.left)
		}
		if r.Active() != (tc.left > 0) {
			t.Errorf("at %s: active %v", tc.at, r.Active())
		}
	}
	if r := RampOf(0, t0, t0); r.Active() {
		t.Errorf("a pool without slow start ramps: %+v", r)
	}
	if r := RampOf(d, time.Time{}, t0); r.Active() {
		t.Errorf("a member with no start ramps: %+v", r)
	}
}

// IPVS weights over a ramp: the ramping member grows from a tenth of the
// others' to theirs; the others are on the ×10 scale during the ramp only;
// a weight-0 member stays 0.
func TestSlowStartIPVSWeights(t *testing.T) {
	c := parse(t, slowLB)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m2 := config.MemberRef{Pool: "web", Addr: addr("198.51.100.12"), Port: 8080}
	m3 := config.MemberRef{Pool: "web", Addr: addr("198.51.100.13"), Port: 8080}
	web := svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)
	weights := func(at time.Duration) [3]int {
		t.Helper()
		ov := Overrides{SlowStart: SlowStart{Now: t0.Add(at), Since: map[config.MemberRef]time.Time{m2: t0, m3: t0}}}
		st, err := IPVS(c, ov, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := st.Services[web]
		return [3]int{s.Dests[dk("198.51.100.11", 8080)].Weight, s.Dests[dk("198.51.100.12", 8080)].Weight, s.Dests[dk("198.51.100.13", 8080)].Weight}
	}
	prev := 0
	for _, tc := range []struct {
		at   time.Duration
		want [3]int
	}{
		{0, [3]int{10, 1, 0}},
		{time.Second, [3]int{10, 2, 0}},
		{5 * time.Second, [3]int{10, 6, 0}},
		{9 * time.Second, [3]int{10, 9, 0}},
		{10 * time.Second, [3]int{1, 1, 0}}, // ramp over: back to the configured weights
	} {
		got := weights(tc.at)
		if got != tc.want {
			t.Errorf("at %s: weights %v, want %v", tc.at, got, tc.want)
		}
		if tc.at < 10*time.Second && got[1] < prev {
			t.Errorf("at %s: the ramping member's weight fell (%d after %d)", tc.at, got[1], prev)
		}
		prev = got[1]
	}

	// No start given: no ramp (a member up when lbd started).
	st, err := IPVS(c, Overrides{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := st.Services[web].Dests[dk("198.51.100.12", 8080)].Weight; w != 1 {
		t.Errorf("member not ramping has weight %d", w)
	}
}

// The scale never takes a weight past IPVS's 65535: a pool with a member of
// weight 60000 ramps on scale 1; the ramping member still starts at a tenth.
func TestSlowStartScaleCapped(t *testing.T) {
	c := parse(t, slowLB)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	big := config.MemberRef{Pool: "big", Addr: addr("198.51.100.21")}
	res := PoolPolicy(c.Pools["big"], PoolMembers("big", c.Pools["big"], Overrides{SlowStart: SlowStart{Now: t0, Since: map[config.MemberRef]time.Time{big: t0}}}, nil))
	if !res.Ramping || res.Members[0].Weight != 6000 || res.Members[1].Weight != 100 || !res.Members[0].Ramp.Active() || res.Members[1].Ramp.Active() {
		t.Fatalf("ramping 60000 next to 100: %+v", res)
	}
}

// A ramp never applies in panic, to a disabled, down or weight-0 member, or
// while the sorry server serves.
func TestSlowStartOnlyForServingMembers(t *testing.T) {
	pool := &config.Pool{SlowStart: config.Duration(10 * time.Second)}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ramp := RampOf(10*time.Second, t0, t0)
	up := func(w int, r Ramp) MemberState { return MemberState{Weight: w, Up: true, Ramp: r} }
	for _, tc := range []struct {
		name    string
		members []MemberState
		want    []int
		ramping bool
	}{
		{"ramping", []MemberState{up(1, Ramp{}), up(1, ramp)}, []int{10, 1}, true},
		{"weight 0", []MemberState{up(1, Ramp{}), up(0, ramp)}, []int{1, 0}, false},
		{"disabled", []MemberState{up(1, Ramp{}), {Weight: 1, Up: true, Disabled: true, Ramp: ramp}}, []int{1, 0}, false},
		{"down", []MemberState{up(1, Ramp{}), {Weight: 1, Down: true, Ramp: ramp}}, []int{1, 0}, false},
	} {
		res := PoolPolicy(pool, tc.members)
		for i, w := range tc.want {
			if res.Members[i].Weight != w {
				t.Errorf("%s: weights %+v, want %v", tc.name, res.Members, tc.want)
				break
			}
		}
		if res.Ramping != tc.ramping {
			t.Errorf("%s: ramping %v", tc.name, res.Ramping)
		}
	}
	down := MemberState{Weight: 1, Down: true}
	res := PoolPolicy(pool, []MemberState{up(1, ramp), down, down})
	if !res.Panic || res.Ramping || res.Members[0].Weight != 1 {
		t.Errorf("panic pool ramps: %+v", res)
	}
	sorry := &config.AddrPort{AddrPort: netip.MustParseAddrPort("198.51.100.99:80")}
	res = PoolPolicy(&config.Pool{SlowStart: config.Duration(10 * time.Second), SorryServer: sorry, Quorum: 2}, []MemberState{up(1, ramp), down})
	if !res.SorryActive || res.Ramping || res.Members[0].Weight != 0 {
		t.Errorf("pool on its sorry server ramps: %+v", res)
	}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }
