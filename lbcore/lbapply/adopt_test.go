package lbapply

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/health"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/stage"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"golang.org/x/sys/unix"
)

// tableIPVS is a fake kernel IPVS table: an apply replaces it, Read
// returns it.
type tableIPVS struct {
	mu      sync.Mutex
	table   *ipvs.State
	applies int
}

func (f *tableIPVS) Apply(_ context.Context, st *ipvs.State) (stage.Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.table = st
	f.applies++
	return stage.Change{Summary: "replaced", Detail: &ipvs.Plan{}}, nil
}

func (f *tableIPVS) Read() (*ipvs.State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.table, nil
}

// dests lists the table's destinations of vip as addr:port → weight.
func (f *tableIPVS) dests(vip string) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, s := range f.table.Services {
		if k.Addr.String() == vip {
			for dk, d := range s.Dests {
				out[dk.String()] = d.Weight
			}
		}
	}
	return out
}

func (f *tableIPVS) n() int { f.mu.Lock(); defer f.mu.Unlock(); return f.applies }

// previousTable is what a killed lbd left for cfgHealth plus a virtual
// server the config no longer has: web's members both in (one at a weight
// the config does not say), plain's member, and gone's.
func previousTable() *ipvs.State {
	st := ipvs.NewState()
	add := func(vip string, port uint16, dests map[string]int) {
		k := ipvs.ServiceKey{Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Addr: netip.MustParseAddr(vip), Port: port}
		s := &ipvs.Service{Key: k, Scheduler: "wlc", Dests: map[ipvs.DestKey]*ipvs.Dest{}}
		for ap, w := range dests {
			p := netip.MustParseAddrPort(ap)
			dk := ipvs.DestKey{Addr: p.Addr(), Port: p.Port()}
			s.Dests[dk] = &ipvs.Dest{Key: dk, Weight: w, Fwd: ipvs.FwdMasq}
		}
		st.Services[k] = s
	}
	add("203.0.113.100", 80, map[string]int{"198.51.100.11:80": 1, "198.51.100.12:8080": 5})
	add("203.0.113.101", 80, map[string]int{"198.51.100.21:80": 1})
	add("203.0.113.199", 80, map[string]int{"198.51.100.99:80": 1})
	return st
}

// settle gives a member a fresh check result in the fake health checker.
func (f *fakeHealth) settle(id string, s health.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.states[id] = s
	if f.checked == nil {
		f.checked = map[string]bool{}
	}
	f.checked[id] = true
}

func startAdopting(t *testing.T, doc string, h *fakeHealth, tab *tableIPVS) (*Controller, func()) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	nat := &fakeNAT{}
	c := NewController(&Applier{IPVS: tab, NAT: nat, Log: quiet()}, h, quiet())
	c.Debounce, c.RetryAfter, c.AdoptPoll = 10*time.Millisecond, 50*time.Millisecond, 10*time.Millisecond
	ready := make(chan struct{})
	c.Ready = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, path, config.Load, make(chan struct{})) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("controller stopped before the first apply: %v", err)
	case <-time.After(2 * time.Second):
		t.Fatal("no first apply within 2 s")
	}
	return c, func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestRestartAdoptsIPVSUntilHealthIsIn: a controller that starts over a
// table a previous daemon left changes nothing in it (destinations,
// weights, the service the config lost) while members have no fresh
// result, even through transitions; once every member has one, the desired
// state is applied: down members and the old service leave, weights are the
// config's.
func TestRestartAdoptsIPVSUntilHealthIsIn(t *testing.T) {
	h := &fakeHealth{states: map[string]health.State{}}
	tab := &tableIPVS{table: previousTable()}
	c, stop := startAdopting(t, cfgHealth, h, tab)
	defer stop()
	if adopting, until := c.Adopting(); !adopting || time.Until(until) < time.Second {
		t.Fatalf("adopting %v until %s: want a hold of about AdoptWait (%s)", adopting, until, AdoptWait(parse(t, cfgHealth)))
	}
	if st := c.Status(); !st.Adopting || st.AdoptUntil.IsZero() {
		t.Errorf("status does not say the table is adopted: %+v", st)
	}
	h.settle("web/198.51.100.11:0", health.StateUp)
	c.OnTransition(health.Event{}) // one member in, the other not yet
	time.Sleep(100 * time.Millisecond)
	if tab.n() != 0 {
		t.Fatalf("IPVS applied %d times before every member had a result: %v", tab.n(), tab.dests("203.0.113.100"))
	}
	if d := tab.dests("203.0.113.199"); len(d) != 1 {
		t.Fatalf("the old service's destinations were touched during the hold: %v", d)
	}
	h.settle("web/198.51.100.12:8080", health.StateDown)
	waitUntil(t, "the desired state applied", func() bool { return tab.n() == 1 })
	if d := tab.dests("203.0.113.100"); len(d) != 1 || d["198.51.100.11:80"] != 1 {
		t.Fatalf("after the hold, web: %v (want the up member only)", d)
	}
	if d := tab.dests("203.0.113.199"); len(d) != 0 {
		t.Fatalf("after the hold, the service the config lost is still there: %v", d)
	}
	if adopting, _ := c.Adopting(); adopting || c.Status().Adopting {
		t.Fatal("still adopting after the hold ended")
	}
	h.settle("web/198.51.100.12:8080", health.StateUp)
	c.OnTransition(health.Event{})
	waitUntil(t, "health applies again", func() bool { return tab.dests("203.0.113.100")["198.51.100.12:8080"] == 3 })
}

// TestRestartAdoptionIsBounded: a member that never settles does not hold
// the table for ever; after the wait the daemon applies what it knows.
func TestRestartAdoptionIsBounded(t *testing.T) {
	doc := strings.Replace(cfgHealth, "web: {type: tcp, interval: 1s}", "web: {type: tcp, interval: 100ms, timeout: 50ms}", 1)
	if w := AdoptWait(parse(t, doc)); w != 150*time.Millisecond+adoptSlack {
		t.Fatalf("AdoptWait = %s, want one interval + timeout + slack", w)
	}
	h := &fakeHealth{states: map[string]health.State{}}
	tab := &tableIPVS{table: previousTable()}
	_, stop := startAdopting(t, doc, h, tab)
	defer stop()
	time.Sleep(AdoptWait(parse(t, doc)) / 2)
	if tab.n() != 0 {
		t.Fatal("IPVS applied before the hold was over")
	}
	testkit.Eventually(t, 3*time.Second, 10*time.Millisecond, func() error {
		if tab.n() != 1 {
			return errors.New("no IPVS apply after the hold")
		}
		return nil
	})
	if d := tab.dests("203.0.113.100"); len(d) != 0 {
		t.Fatalf("members with no result serve after the hold: %v", d)
	}
}

// TestColdStartAppliesAtOnce: over an empty table there is nothing to
// adopt; the first apply programs IPVS as before.
func TestColdStartAppliesAtOnce(t *testing.T) {
	tab := &tableIPVS{table: ipvs.NewState()}
	c, stop := startAdopting(t, cfgHealth, &fakeHealth{states: map[string]health.State{}}, tab)
	defer stop()
	if tab.n() != 1 {
		t.Fatalf("cold start: %d IPVS applies at the first apply, want 1", tab.n())
	}
	if adopting, _ := c.Adopting(); adopting {
		t.Fatal("cold start adopts")
	}
	if d := tab.dests("203.0.113.101"); len(d) != 1 {
		t.Fatalf("cold start, plain: %v", d)
	}
}

func TestAdoptWaitPerInitialState(t *testing.T) {
	for _, tc := range []struct {
		mon  string
		want time.Duration
	}{
		{"{type: tcp, interval: 2s, timeout: 1s}", 3 * time.Second},
		{"{type: tcp, interval: 2s, timeout: 1s, rise: 3, initial_state: down}", 7 * time.Second},
		{"{type: tcp, interval: 2s, timeout: 1s, fall: 4, initial_state: up}", 9 * time.Second},
		{"{type: tcp}", config.DefaultInterval + config.DefaultTimeout},
	} {
		doc := strings.Replace(cfgHealth, "web: {type: tcp, interval: 1s}", "web: "+tc.mon, 1)
		if got := AdoptWait(parse(t, doc)); got != tc.want+adoptSlack {
			t.Errorf("monitor %s: AdoptWait %s, want %s", tc.mon, got, tc.want+adoptSlack)
		}
	}
}
