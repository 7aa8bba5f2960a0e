package lbapply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
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
)

const cfgHealth = `
version: 1
network:
  failover: {members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {members: [eth2], addresses: [198.51.100.2/24]}
  external: {members: [eth3], addresses: [203.0.113.2/24]}
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: web, persistence: {enabled: false}}
  - {name: plain, vip: 203.0.113.101, port: 80, pool: plain}
pools:
  web:
    monitor: web
    members: [{address: 198.51.100.11}, {address: 198.51.100.12, port: 8080, weight: 3}]
  plain:
    members: [{address: 198.51.100.21, port: 80}]
monitors:
  web: {type: tcp, interval: 1s}
`

// fakeHealth is a health checker whose states the test sets.
type fakeHealth struct {
	mu        sync.Mutex
	states    map[string]health.State
	members   []health.Member
	monitors  config.Monitors
	failNext  bool
	configure int
	checked   map[string]bool // members with a fresh result (settle)
	weights   map[string]int  // dynamic weights set
}

func (f *fakeHealth) Weight(id string) (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.weights[id]
	return w, ok
}

func (f *fakeHealth) Configure(m config.Monitors, ms []health.Member) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failNext {
		f.failNext = false
		return errors.New("injected: bad CA bundle")
	}
	f.configure++
	f.monitors, f.members = m, ms
	return nil
}

func (f *fakeHealth) State(id string) (health.State, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.members {
		if m.ID == id {
			return f.states[id], true
		}
	}
	return health.StateUnknown, false
}

func (f *fakeHealth) Snapshot() []health.MemberStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []health.MemberStatus
	for _, m := range f.members {
		ms := health.MemberStatus{ID: m.ID, Monitor: m.Monitor, Target: m.Target, State: f.states[m.ID], LastReason: "fake"}
		if f.checked[m.ID] {
			ms.Checks, ms.LastOK = 1, ms.State == health.StateUp
		}
		if w, ok := f.weights[m.ID]; ok {
			ms.Weighted, ms.Weight = true, w
		}
		out = append(out, ms)
	}
	return out
}

func (f *fakeHealth) set(id string, s health.State) {
	f.mu.Lock()
	f.states[id] = s
	f.mu.Unlock()
}

// countingIPVS records applies.
type countingIPVS struct {
	mu      sync.Mutex
	applied []*ipvs.State
	fail    int // fail this many applies
}

func (c *countingIPVS) Apply(_ context.Context, st *ipvs.State) (stage.Change, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail > 0 {
		c.fail--
		return stage.Change{}, errors.New("injected ipvs failure")
	}
	c.applied = append(c.applied, st)
	// A change, so the controller counts the apply.
	return stage.Change{Summary: "1 changes", Detail: &ipvs.Plan{Ops: []ipvs.Op{{Kind: ipvs.OpUpdateDest}}}}, nil
}

func (c *countingIPVS) n() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.applied) }

func (c *countingIPVS) lastDests(vip string) map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, s := range c.applied[len(c.applied)-1].Services {
		if k.Addr.String() == vip {
			for dk, d := range s.Dests {
				out[dk.String()] = d.Weight
			}
		}
	}
	return out
}

func TestHealthMembers(t *testing.T) {
	cfg := parse(t, cfgHealth)
	mons, members, err := HealthMembers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 {
		t.Fatalf("members %v: want the 2 of the monitored pool only", members)
	}
	if members[0].ID != "web/198.51.100.11:0" || members[0].Target.Port != 80 {
		t.Errorf("member 0 = %+v: port 0 members are checked on the VS port", members[0])
	}
	if members[1].ID != "web/198.51.100.12:8080" || members[1].Target.Port != 8080 {
		t.Errorf("member 1 = %+v", members[1])
	}
	if mons["web"].Source.String() != "198.51.100.2" {
		t.Errorf("monitor source %q: default is the Internal self IP", mons["web"].Source)
	}
	withSource := strings.Replace(cfgHealth, "interval: 1s}", "interval: 1s, source: 192.0.2.1}", 1)
	mons, _, err = HealthMembers(parse(t, withSource))
	if err != nil || mons["web"].Source.String() != "192.0.2.1" {
		t.Errorf("explicit source: %v %q", err, mons["web"].Source)
	}
}

func runController(t *testing.T, doc string, h *fakeHealth, ip *countingIPVS) (*Controller, string, chan struct{}, func()) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &Applier{IPVS: ip, NAT: &fakeNAT{}, Log: quiet()}
	c := NewController(a, h, quiet())
	c.Debounce = 50 * time.Millisecond
	c.RetryAfter = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	reload := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, path, config.Load, reload) }()
	return c, path, reload, func() {
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 2*time.Second, 5*time.Millisecond, func() error {
		if !cond() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

// TestControllerHealthDrivesIPVS: unknown members do not serve; a burst of
// transitions costs one apply; a down member leaves, comes back when up;
// the status snapshot says so.
func TestControllerHealthDrivesIPVS(t *testing.T) {
	h := &fakeHealth{states: map[string]health.State{}}
	ip := &countingIPVS{}
	c, _, _, stop := runController(t, cfgHealth, h, ip)
	defer stop()
	waitUntil(t, "first apply", func() bool { return ip.n() == 1 })
	if d := ip.lastDests("203.0.113.100"); len(d) != 0 {
		t.Fatalf("members not checked yet serve: %v", d)
	}
	if d := ip.lastDests("203.0.113.101"); len(d) != 1 {
		t.Fatalf("unmonitored pool: %v", d)
	}
	// A burst: both up, plus noise transitions, within one window.
	for i := 0; i < 20; i++ {
		h.set("web/198.51.100.11:0", health.StateUp)
		h.set("web/198.51.100.12:8080", health.StateUp)
		c.OnTransition(health.Event{})
	}
	waitUntil(t, "health apply", func() bool { return ip.n() >= 2 })
	time.Sleep(150 * time.Millisecond) // longer than the window: no second apply
	if n := ip.n(); n != 2 {
		t.Fatalf("20 transitions in one window made %d applies, want 1", n-1)
	}
	if d := ip.lastDests("203.0.113.100"); d["198.51.100.11:80"] != 1 || d["198.51.100.12:8080"] != 3 {
		t.Fatalf("both up: %v", d)
	}
	h.set("web/198.51.100.12:8080", health.StateDown)
	c.OnTransition(health.Event{})
	waitUntil(t, "down apply", func() bool { return ip.n() == 3 })
	if d := ip.lastDests("203.0.113.100"); len(d) != 1 || d["198.51.100.11:80"] != 1 {
		t.Fatalf("one down: %v", d)
	}
	st := c.Status()
	if len(st.Pools) != 2 || st.Pools[1].Name != "web" || st.Pools[1].Serving != 1 {
		t.Fatalf("status pools: %+v", st.Pools)
	}
	if m := st.Pools[1].Members[1]; m.State != health.StateDown || m.Serving || m.LastReason != "fake" {
		t.Fatalf("status of the down member: %+v", m)
	}
	if st.Transitions != 21 || st.Applies != 2 {
		t.Fatalf("status counters: %+v", st)
	}
}

// TestControllerDynamicWeight: a weight set by a member's checks
// (dynamic_weight) replaces its configured weight in IPVS and in the status;
// weight 0 keeps it in the service without new connections.
func TestControllerDynamicWeight(t *testing.T) {
	h := &fakeHealth{states: map[string]health.State{}, weights: map[string]int{}}
	ip := &countingIPVS{}
	c, _, _, stop := runController(t, cfgHealth, h, ip)
	defer stop()
	waitUntil(t, "first apply", func() bool { return ip.n() == 1 })
	h.set("web/198.51.100.11:0", health.StateUp)
	h.set("web/198.51.100.12:8080", health.StateUp)
	c.OnTransition(health.Event{Member: "web/198.51.100.11:0"})
	waitUntil(t, "up apply", func() bool { return ip.n() == 2 })
	if d := ip.lastDests("203.0.113.100"); d["198.51.100.11:80"] != 1 || d["198.51.100.12:8080"] != 3 {
		t.Fatalf("configured weights: %v", d)
	}
	h.mu.Lock()
	h.weights["web/198.51.100.12:8080"] = 7
	h.mu.Unlock()
	c.OnTransition(health.Event{Member: "web/198.51.100.12:8080", From: health.StateUp, To: health.StateUp, Weighted: true, Weight: 7})
	waitUntil(t, "weight apply", func() bool { return ip.n() == 3 })
	if d := ip.lastDests("203.0.113.100"); d["198.51.100.11:80"] != 1 || d["198.51.100.12:8080"] != 7 {
		t.Fatalf("dynamic weight 7: %v", d)
	}
	if m := c.Status().Pools[1].Members[1]; m.Weight != 7 || !m.Serving {
		t.Fatalf("status of the reweighted member: %+v", m)
	}
	h.mu.Lock()
	h.weights["web/198.51.100.12:8080"] = 0
	h.mu.Unlock()
	c.OnTransition(health.Event{Member: "web/198.51.100.12:8080"})
	waitUntil(t, "weight 0 apply", func() bool { return ip.n() == 4 })
	if d := ip.lastDests("203.0.113.100"); len(d) != 2 || d["198.51.100.12:8080"] != 0 {
		t.Fatalf("dynamic weight 0: %v (want the member kept at weight 0)", d)
	}
	if m := c.Status().Pools[1].Members[1]; m.Serving {
		t.Fatalf("a weight-0 member is not serving: %+v", m)
	}
}

// TestControllerRetriesFailedHealthApply: a failed IPVS apply on a
// transition is retried until it goes through.
func TestControllerRetriesFailedHealthApply(t *testing.T) {
	h := &fakeHealth{states: map[string]health.State{}}
	ip := &countingIPVS{}
	c, _, _, stop := runController(t, cfgHealth, h, ip)
	defer stop()
	waitUntil(t, "first apply", func() bool { return ip.n() == 1 })
	ip.mu.Lock()
	ip.fail = 2
	ip.mu.Unlock()
	h.set("web/198.51.100.11:0", health.StateUp)
	c.OnTransition(health.Event{})
	waitUntil(t, "retried apply", func() bool { return ip.n() == 2 })
	if d := ip.lastDests("203.0.113.100"); d["198.51.100.11:80"] != 1 {
		t.Fatalf("after retries: %v", d)
	}
	if !strings.Contains(c.Status().LastError, "injected ipvs failure") {
		t.Fatalf("last error %q", c.Status().LastError)
	}
}

// TestControllerReloadWithBadMonitorChangesNothing: when the health side
// refuses the new members, the kernel is not touched.
func TestControllerReloadWithBadMonitorChangesNothing(t *testing.T) {
	h := &fakeHealth{states: map[string]health.State{}}
	ip := &countingIPVS{}
	c, path, reload, stop := runController(t, cfgHealth, h, ip)
	defer stop()
	waitUntil(t, "first apply", func() bool { return ip.n() == 1 })
	os.WriteFile(path, []byte(strings.Replace(cfgHealth, "203.0.113.101", "203.0.113.105", 1)), 0o644)
	h.mu.Lock()
	h.failNext = true
	h.mu.Unlock()
	reload <- struct{}{}
	waitUntil(t, "error recorded", func() bool { return strings.Contains(c.Status().LastError, "bad CA bundle") })
	if ip.n() != 1 {
		t.Fatalf("rejected reload applied IPVS")
	}
	reload <- struct{}{}
	waitUntil(t, "good reload", func() bool { return ip.n() == 2 })
	if d := ip.lastDests("203.0.113.105"); len(d) != 1 {
		t.Fatalf("reload not applied: %v", d)
	}
}

func TestStatusHandlerServesJSON(t *testing.T) {
	h := &fakeHealth{states: map[string]health.State{"web/198.51.100.11:0": health.StateUp}}
	ip := &countingIPVS{}
	c, _, _, stop := runController(t, cfgHealth, h, ip)
	defer stop()
	waitUntil(t, "first apply", func() bool { return ip.n() == 1 })
	rec := httptest.NewRecorder()
	StatusHandler(c).ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	var st struct {
		Pools []struct {
			Name    string
			Members []struct{ Address, State string }
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if len(st.Pools) != 2 || st.Pools[1].Members[0].State != "up" || st.Pools[1].Members[1].State != "unknown" {
		t.Fatalf("status JSON: %s", rec.Body)
	}
}

// TestControllerReadyAfterTheFirstApplyOnly: Ready (lbd's readiness for
// init's supervisor) comes once the first config is in the kernel, and not
// at all when it cannot be applied.
func TestControllerReadyAfterTheFirstApplyOnly(t *testing.T) {
	for _, tc := range []struct {
		doc   string
		ready int
	}{{cfgHealth, 1}, {"version: 99\n", 0}} {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, []byte(tc.doc), 0o644); err != nil {
			t.Fatal(err)
		}
		ip := &countingIPVS{}
		c := NewController(&Applier{IPVS: ip, NAT: &fakeNAT{}, Log: quiet()}, &fakeHealth{states: map[string]health.State{}}, quiet())
		var readies, appliesAtReady int
		c.Ready = func() { readies++; appliesAtReady = ip.n() }
		ctx, cancel := context.WithCancel(context.Background())
		reload := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx, path, config.Load, reload) }()
		if tc.ready == 1 {
			waitUntil(t, "first apply", func() bool { return ip.n() == 1 })
			reload <- struct{}{} // a reload is not a second Ready
		}
		cancel()
		err := <-done
		if readies != tc.ready || (tc.ready == 1 && (err != nil || appliesAtReady != 1)) {
			t.Fatalf("config %q: Ready called %d times (after %d applies, run error %v), want %d after the first apply", tc.doc, readies, appliesAtReady, err, tc.ready)
		}
	}
}

// partialIPVS is a countingIPVS that can also apply part of the table.
type partialIPVS struct {
	countingIPVS
	partial     []*ipvs.State
	failPartial int
}

func (p *partialIPVS) ApplyServices(_ context.Context, st *ipvs.State) (stage.Change, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failPartial > 0 {
		p.failPartial--
		return stage.Change{}, errors.New("injected partial failure")
	}
	p.partial = append(p.partial, st)
	return stage.Change{Summary: "1 changes", Detail: &ipvs.Plan{Ops: []ipvs.Op{{Kind: ipvs.OpUpdateDest}}}}, nil
}

func (p *partialIPVS) partials() []*ipvs.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*ipvs.State(nil), p.partial...)
}

// TestHealthTransitionAppliesOnlyItsPool: with an IPVS stage that can
// apply part of the table, a transition of a web member hands over web's
// service only (no timeouts, not the other VS); a transition of a member
// the controller does not know, and the retry after a failed partial
// apply, apply the whole table.
func TestHealthTransitionAppliesOnlyItsPool(t *testing.T) {
	h := &fakeHealth{states: map[string]health.State{}}
	ip := &partialIPVS{}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfgHealth), 0o644); err != nil {
		t.Fatal(err)
	}
	c := NewController(&Applier{IPVS: ip, NAT: &fakeNAT{}, Log: quiet()}, h, quiet())
	c.Debounce, c.RetryAfter = 20*time.Millisecond, 20*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, path, config.Load, nil) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitUntil(t, "first apply", func() bool { return ip.n() == 1 })
	h.set("web/198.51.100.11:0", health.StateUp)
	c.OnTransition(health.Event{Member: "web/198.51.100.11:0"})
	waitUntil(t, "partial apply", func() bool { return len(ip.partials()) == 1 })
	part := ip.partials()[0]
	if len(part.Services) != 1 || part.Timeouts != nil {
		t.Fatalf("partial state: %d services, timeouts %v; want web's service only", len(part.Services), part.Timeouts)
	}
	for k, s := range part.Services {
		if k.Addr.String() != "203.0.113.100" || len(s.Dests) != 1 {
			t.Fatalf("partial state has %s with %d members", k, len(s.Dests))
		}
	}
	if ip.n() != 1 {
		t.Fatalf("a pool's transition also applied the whole table (%d applies)", ip.n())
	}
	c.OnTransition(health.Event{Member: "nowhere/198.51.100.99:80"})
	waitUntil(t, "full apply for an unknown member", func() bool { return ip.n() == 2 })
	ip.mu.Lock()
	ip.failPartial = 1
	ip.mu.Unlock()
	c.OnTransition(health.Event{Member: "web/198.51.100.12:8080"})
	waitUntil(t, "full apply after a failed partial one", func() bool { return ip.n() == 3 })
	if n := len(ip.partials()); n != 1 {
		t.Fatalf("%d partial applies, want only the first", n)
	}
}
