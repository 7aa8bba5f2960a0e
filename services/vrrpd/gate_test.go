package vrrpd

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestIPVSCatchUpFollowsTheRefreshPeriod(t *testing.T) {
	dir := t.TempDir()
	n := 0
	write := func(s string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("sync_refresh_period.%d", n))
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		path string
		want time.Duration
	}{
		{write("5\n"), 5*time.Second + catchUpMargin},
		{write("0\n"), noRefreshCatchUp},
		{write("junk"), noRefreshCatchUp},
		{filepath.Join(dir, "missing"), noRefreshCatchUp},
	} {
		if got := ipvsCatchUp(c.path); got != c.want {
			t.Errorf("%s: catch-up %v, want %v", c.path, got, c.want)
		}
	}
}

// The backup daemon must have run for the whole catch-up, without a stop
// in between, before the IPVS side counts as synced.
func TestBackupClockNeedsAWholeCatchUp(t *testing.T) {
	c := backupClock{catchUp: 8 * time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at      time.Duration
		running bool
		want    bool
	}{
		{0, false, false},
		{2 * time.Second, true, false}, // starts here
		{9 * time.Second, true, false}, // 7 s
		{10 * time.Second, true, true}, // 8 s
		{11 * time.Second, false, false},
		{12 * time.Second, true, false}, // starts again
		{19 * time.Second, true, false},
		{20 * time.Second, true, true},
	}
	for _, s := range steps {
		if got := c.observe(s.running, t0.Add(s.at)); got != s.want {
			t.Fatalf("at %v running=%v: caught up %v, want %v", s.at, s.running, got, s.want)
		}
	}
}

// VRRP hears "synced" only when both syncs that run say so; one that
// does not run is not waited for.
func TestSyncGateWantsBoth(t *testing.T) {
	var last []bool
	set := func(s bool) { last = append(last, s) }
	g := newSyncGate(set, true, true)
	g.conntrackSynced(true)
	g.ipvsSynced(false)
	g.ipvsSynced(true)
	g.conntrackSynced(false)
	want := []bool{false, false, false, true, false}
	if len(last) != len(want) {
		t.Fatalf("calls %v, want %v", last, want)
	}
	for i := range want {
		if last[i] != want[i] {
			t.Fatalf("calls %v, want %v", last, want)
		}
	}
	last = nil
	g = newSyncGate(set, false, true) // no conntrack sync
	g.ipvsSynced(true)
	if len(last) != 2 || last[0] || !last[1] {
		t.Fatalf("without conntrack sync: calls %v, want [false true]", last)
	}
	last = nil
	newSyncGate(set, false, false)
	if len(last) != 1 || !last[0] {
		t.Fatalf("with no sync at all: calls %v, want [true]", last)
	}
}
