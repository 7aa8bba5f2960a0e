package lbapply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nat"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/stage"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/sirupsen/logrus"
)

const cfgA = `
version: 1
network:
  failover: {members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {members: [eth2], addresses: [198.51.100.2/24]}
  external: {members: [eth3], addresses: [203.0.113.2/24]}
virtual_servers:
  - {name: api, vip: 203.0.113.101, port: 80, pool: api, mode: fullnat, local_address_pool: la}
pools:
  api: {members: [{address: 198.51.100.21, port: 8080}]}
local_address_pools:
  la: {addresses: [198.51.100.201-209]}
`

var cfgB = strings.Replace(cfgA, "203.0.113.101", "203.0.113.105", 1)

type fakeIPVS struct {
	mu      sync.Mutex // Run applies on its own goroutine
	fail    bool
	applied []*ipvs.State
}

func (f *fakeIPVS) Apply(_ context.Context, st *ipvs.State) (stage.Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return stage.Change{}, errors.New("injected ipvs failure (rolled back 3 steps)")
	}
	f.applied = append(f.applied, st)
	return stage.Change{Detail: &ipvs.Plan{}}, nil
}

func (f *fakeIPVS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applied)
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func desired(t *testing.T, doc string) *engine.Desired {
	t.Helper()
	d, err := engine.Build(parse(t, doc), engine.Overrides{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var ctx = context.Background()

func tableText(t *testing.T, m *nat.Manager) string {
	t.Helper()
	rules, err := m.Rules()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, ch := range []string{nat.ChainMark, nat.ChainSNAT} {
		for _, r := range rules[ch] {
			b.WriteString(ch)
			for _, e := range r.Exprs {
				fmt.Fprintf(&b, " %+v", e)
			}
			b.WriteString("\n")
		}
	}
	sets, err := m.Sets()
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(sets))
	for n := range sets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var el []string
		for _, e := range sets[n] {
			el = append(el, fmt.Sprintf("%v:%v", e.Key, e.Val))
		}
		sort.Strings(el)
		fmt.Fprintf(&b, "set %s %s\n", n, strings.Join(el, " "))
	}
	return b.String()
}

// TestIPVSFailureRollsBackNftables uses the real nftables manager in a
// fresh namespace and an IPVS side that fails.
func TestIPVSFailureRollsBackNftables(t *testing.T) {
	ns := testkit.NewNS(t, "lbapply")
	m := nat.NewManager(ns.Fd(), quiet())
	fi := &fakeIPVS{}
	a := &Applier{IPVS: fi, NAT: m, Log: quiet()}
	if _, err := a.Apply(ctx, desired(t, cfgA)); err != nil {
		t.Fatal(err)
	}
	before := tableText(t, m)
	if !strings.Contains(before, "[203 0 113 101 6 0 0 0 0 80 0 0]") { // the marks map: VIP . tcp . port 80
		t.Fatalf("table does not match VIP 203.0.113.101:\n%s", before)
	}
	fi.fail = true
	_, err := a.Apply(ctx, desired(t, cfgB))
	if err == nil || !strings.Contains(err.Error(), "ipvs: injected ipvs failure") || !strings.Contains(err.Error(), "undone") {
		t.Fatalf("apply with failing IPVS: err = %v", err)
	}
	if after := tableText(t, m); after != before {
		t.Fatalf("nftables table not restored after IPVS failure:\n%s\nwas:\n%s", after, before)
	}
	fi.fail = false
	if _, err := a.Apply(ctx, desired(t, cfgB)); err != nil {
		t.Fatal(err)
	}
	if tableText(t, m) == before {
		t.Fatal("good apply did not change the table (so the rollback check proves nothing)")
	}
}

type fakeNAT struct{ applies, rollbacks int }

func (f *fakeNAT) Apply(context.Context, *nat.Ruleset) (stage.Change, error) {
	f.applies++
	return stage.Change{Summary: "replaced", Undo: func() error { f.rollbacks++; return nil }}, nil
}

func TestRunReloadRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfgA), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, fn := &fakeIPVS{}, &fakeNAT{}
	a := &Applier{IPVS: fi, NAT: fn, Log: quiet()}
	ctx, cancel := context.WithCancel(context.Background())
	reload := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- NewController(a, nil, quiet()).Run(ctx, path, config.Load, reload) }()
	waitFor := func(n int) {
		t.Helper()
		testkit.Eventually(t, 5*time.Second, 5*time.Millisecond, func() error {
			if got := fi.count(); got < n {
				return fmt.Errorf("ipvs applied %d times, waiting for %d", got, n)
			}
			return nil
		})
	}
	waitFor(1)
	// A config with an error: nothing applied.
	if err := os.WriteFile(path, []byte(strings.Replace(cfgA, "mode: fullnat", "mode: nat", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	// A good config afterwards is applied.
	if err := os.WriteFile(path, []byte(cfgB), 0o644); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	waitFor(2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(fi.applied) != 2 || fn.applies != 2 {
		t.Fatalf("applied ipvs %d / nat %d times, want 2 (initial + good reload; the bad one rejected before touching anything)", len(fi.applied), fn.applies)
	}
	var vip string
	for k := range fi.applied[1].Services {
		vip = k.Addr.String()
	}
	if vip != "203.0.113.105" {
		t.Fatalf("second apply had VIP %s", vip)
	}
}

func TestRunFailsOnBadFirstConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(path, []byte("version: 1\nvirtual_servers: [{name: x}]\n"), 0o644)
	err := NewController(&Applier{IPVS: &fakeIPVS{}, NAT: &fakeNAT{}, Log: quiet()}, nil, quiet()).Run(context.Background(), path, config.Load, nil)
	if err == nil || !strings.Contains(err.Error(), "virtual_servers[0]") {
		t.Fatalf("bad first config: %v", err)
	}
}

// TestApplyIsSynchronousAndOutlivesItsCaller: Controller.Apply returns the
// outcome of the kernel apply, runs to the end even when the caller's
// context is already cancelled (a client gone mid-request), and a failed
// apply leaves the running config and the kernel as they were.
func TestApplyIsSynchronousAndOutlivesItsCaller(t *testing.T) {
	fi, fn := &fakeIPVS{}, &fakeNAT{}
	c := NewController(&Applier{IPVS: fi, NAT: fn, Log: quiet()}, nil, quiet())
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Apply(gone, "a.yaml", parse(t, cfgA), engine.Overrides{}); err != nil {
		t.Fatal(err)
	}
	if cfg, _ := c.Running(); cfg == nil || fi.count() != 1 || fn.applies != 1 {
		t.Fatalf("apply under a cancelled context: running %v, ipvs %d nat %d", cfg, fi.count(), fn.applies)
	}
	fi.fail = true
	err := c.Apply(ctx, "b.yaml", parse(t, cfgB), engine.Overrides{})
	if err == nil || !strings.Contains(err.Error(), "injected ipvs failure") {
		t.Fatalf("failing apply: %v", err)
	}
	if fn.rollbacks != 1 {
		t.Errorf("nftables undone %d times, want 1", fn.rollbacks)
	}
	if cfg, _ := c.Running(); cfg.VirtualServers[0].VIP.String() != "203.0.113.101" || c.Status().ConfigPath != "a.yaml" {
		t.Errorf("a failed apply changed the running view: %s %s", cfg.VirtualServers[0].VIP, c.Status().ConfigPath)
	}
}
