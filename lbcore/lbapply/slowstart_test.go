package lbapply

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/health"
)

const cfgSlow = `
version: 1
network:
  failover: {members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {members: [eth2], addresses: [198.51.100.2/24]}
  external: {members: [eth3], addresses: [203.0.113.2/24]}
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: web, scheduler: wrr, persistence: {enabled: false}}
  - {name: plain, vip: 203.0.113.101, port: 80, pool: plain, scheduler: wrr, persistence: {enabled: false}}
pools:
  web:
    monitor: web
    slow_start: 10s
    members: [{address: 198.51.100.11}, {address: 198.51.100.12}]
  plain:
    slow_start: 10s
    members: [{address: 198.51.100.21}, {address: 198.51.100.22}]
monitors:
  web: {type: tcp, interval: 1s}
`

// fakeClock is the controller's clock, moved by the test.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fakeClock) add(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// lastPartial is the weights of vip's members in the newest partial apply.
func (p *partialIPVS) lastPartial(vip string) map[string]int {
	parts := p.partials()
	out := map[string]int{}
	if len(parts) == 0 {
		return out
	}
	for k, s := range parts[len(parts)-1].Services {
		if k.Addr.String() == vip {
			for dk, d := range s.Dests {
				out[dk.String()] = d.Weight
			}
		}
	}
	return out
}

func memberStatus(c *Controller, pool, addr string) MemberStatus {
	for _, p := range c.Status().Pools {
		for _, m := range p.Members {
			if p.Name == pool && m.Ref.Addr.String() == addr {
				return m
			}
		}
	}
	return MemberStatus{}
}

// TestControllerSlowStart: members up at start do not ramp; a member whose
// checks failed ramps when it is up again, stepped by the ramp ticker on
// the controller's clock (a fake one here: no sleeping through the ramp),
// back to the configured weights when the ramp ends, after which the
// ticker stops; a re-enabled member ramps; a member added by a reload
// ramps from its first up.
func TestControllerSlowStart(t *testing.T) {
	h := &fakeHealth{states: map[string]health.State{}}
	ip := &partialIPVS{}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfgSlow), 0o644); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := NewController(&Applier{IPVS: ip, NAT: &fakeNAT{}, Log: quiet()}, h, quiet())
	c.Debounce, c.RetryAfter, c.RampStep, c.Now = 10*time.Millisecond, 20*time.Millisecond, 10*time.Millisecond, clock.Now
	ctx, cancel := context.WithCancel(context.Background())
	reload := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, path, config.Load, reload) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitUntil(t, "first apply", func() bool { return ip.n() == 1 })
	if d := ip.lastDests("203.0.113.101"); d["198.51.100.21:80"] != 1 || d["198.51.100.22:80"] != 1 {
		t.Fatalf("unmonitored members at start: %v (want no ramp)", d)
	}
	m1, m2 := "web/198.51.100.11:0", "web/198.51.100.12:0"
	up := func(id string, from health.State) {
		h.set(id, health.StateUp)
		c.OnTransition(health.Event{Member: id, From: from, To: health.StateUp})
	}
	// First results after start: up, no ramp.
	up(m1, health.StateUnknown)
	up(m2, health.StateUnknown)
	waitUntil(t, "members up", func() bool {
		d := ip.lastPartial("203.0.113.100")
		return d["198.51.100.11:80"] == 1 && d["198.51.100.12:80"] == 1
	})
	if c.ramping() {
		t.Fatal("members up at start ramp")
	}

	// m2 fails, then comes back: it ramps from a tenth of m1's weight.
	h.set(m2, health.StateDown)
	c.OnTransition(health.Event{Member: m2, From: health.StateUp, To: health.StateDown})
	waitUntil(t, "m2 out", func() bool { _, in := ip.lastPartial("203.0.113.100")["198.51.100.12:80"]; return !in })
	up(m2, health.StateDown)
	waitUntil(t, "m2 back at the floor", func() bool {
		d := ip.lastPartial("203.0.113.100")
		return d["198.51.100.11:80"] == 10 && d["198.51.100.12:80"] == 1
	})
	if ms := memberStatus(c, "web", "198.51.100.12"); !ms.SlowStart.Active() || ms.SlowStart.Share != engine.RampFloor || ms.SlowStart.Left != 10*time.Second || ms.IPVSWeight != 1 {
		t.Fatalf("status of the ramping member: %+v", ms)
	}
	clock.add(5 * time.Second)
	waitUntil(t, "m2 halfway", func() bool { return ip.lastPartial("203.0.113.100")["198.51.100.12:80"] == 6 })
	clock.add(5 * time.Second)
	waitUntil(t, "m2 at its weight", func() bool {
		d := ip.lastPartial("203.0.113.100")
		return d["198.51.100.11:80"] == 1 && d["198.51.100.12:80"] == 1
	})
	if ms := memberStatus(c, "web", "198.51.100.12"); ms.SlowStart.Active() || ms.IPVSWeight != 1 {
		t.Fatalf("status after the ramp: %+v", ms)
	}
	n := len(ip.partials())
	time.Sleep(100 * time.Millisecond) // ten ramp steps: none may apply now
	if got := len(ip.partials()); got != n || c.ramping() {
		t.Fatalf("the ramp ticker still applies after the ramp (%d partial applies, then %d)", n, got)
	}

	// The operator disables then re-enables a plain member: it ramps.
	cfg, ov := c.Running()
	r21 := cfg.Pools["plain"].Members[0].Ref("plain")
	if err := c.Apply(ctx, path, cfg, ov.With(r21, true)); err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, path, cfg, ov.With(r21, false)); err != nil {
		t.Fatal(err)
	}
	if d := ip.lastDests("203.0.113.101"); d["198.51.100.21:80"] != 1 || d["198.51.100.22:80"] != 10 {
		t.Fatalf("re-enabled member: %v (want 1 next to 10)", d)
	}
	clock.add(10 * time.Second)
	waitUntil(t, "re-enabled member at its weight", func() bool {
		d := ip.lastPartial("203.0.113.101")
		return d["198.51.100.21:80"] == 1 && d["198.51.100.22:80"] == 1 && !c.ramping()
	})

	// A reload adds a monitored member: it ramps from its first up.
	doc := strings.Replace(cfgSlow, "{address: 198.51.100.12}]", "{address: 198.51.100.12}, {address: 198.51.100.13}]", 1)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	waitUntil(t, "reload", func() bool { cfg, _ := c.Running(); return len(cfg.Pools["web"].Members) == 3 })
	if c.ramping() {
		t.Fatal("an added member ramps before its first check")
	}
	up("web/198.51.100.13:0", health.StateUnknown)
	waitUntil(t, "added member ramps", func() bool {
		d := ip.lastPartial("203.0.113.100")
		return d["198.51.100.13:80"] == 1 && d["198.51.100.11:80"] == 10
	})
}
