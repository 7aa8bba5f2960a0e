package health_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/health"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
)

// writeScript puts an executable shell script in dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func scriptMon(timeout time.Duration, dynamic bool, argv ...string) config.Monitor {
	m := config.Monitor{Type: config.MonitorScript, Command: argv, DynamicWeight: dynamic,
		Interval: config.Duration(10 * timeout), Timeout: config.Duration(timeout)}
	m.ApplyDefaults()
	return m
}

var scriptTarget = health.Target{Addr: netip.MustParseAddr("198.51.100.11"), Port: 8080}

// TestScriptExitStatus: keepalived's MISC_CHECK rules, with and without
// dynamic_weight; arguments and environment carry the member.
func TestScriptExitStatus(t *testing.T) {
	dir := t.TempDir()
	exit := writeScript(t, dir, "exit", `echo "args $1 $2 env $FULCRUM_MEMBER_ADDR $FULCRUM_MEMBER_PORT"; exit $3`)
	for _, tc := range []struct {
		code     string
		dynamic  bool
		ok       bool
		weighted bool
		weight   int
		reason   string
	}{
		{"0", false, true, false, 0, "exit 0"},
		{"0", true, true, false, 0, "exit 0"}, // keeps the weight
		{"1", false, false, false, 0, "exit 1: args 198.51.100.11 8080 env 198.51.100.11 8080"},
		{"1", true, false, false, 0, "exit 1: args 198.51.100.11 8080 env 198.51.100.11 8080"},
		{"2", true, true, true, 0, "exit 2: weight 0"},
		{"12", true, true, true, 10, "exit 12: weight 10"},
		{"255", true, true, true, 253, "exit 255: weight 253"},
		{"12", false, false, false, 0, "exit 12: args 198.51.100.11 8080 env 198.51.100.11 8080"},
	} {
		c := probeChecker(t, scriptMon(2*time.Second, tc.dynamic, exit, "{addr}", "{port}", tc.code), nil)
		r := c.Check(context.Background(), scriptTarget)
		if r.OK != tc.ok || r.Weighted != tc.weighted || r.Weight != tc.weight || r.Reason != tc.reason {
			t.Errorf("exit %s dynamic=%v: %+v, want ok=%v weighted=%v weight=%d %q", tc.code, tc.dynamic, r, tc.ok, tc.weighted, tc.weight, tc.reason)
		}
	}
	killed := writeScript(t, dir, "killed", `kill -USR1 $$`)
	if r := probeChecker(t, scriptMon(2*time.Second, true, killed), nil).Check(context.Background(), scriptTarget); r.OK || r.Reason != "killed by signal user defined signal 1" {
		t.Errorf("script killed by a signal: %+v", r)
	}
	missing := filepath.Join(dir, "missing")
	if r := probeChecker(t, scriptMon(2*time.Second, false, missing), nil).Check(context.Background(), scriptTarget); r.OK || !strings.HasPrefix(r.Reason, "cannot run "+missing) {
		t.Errorf("missing program: %+v", r)
	}
}

// TestScriptTimeoutKillsGroup: a script that hangs past its timeout is
// killed with its children (its process group, by PID) and the check ends
// at the timeout.
func TestScriptTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	hang := writeScript(t, dir, "hang", fmt.Sprintf(`sleep 30 & echo $! > %s; echo started; wait`, pidFile))
	c := probeChecker(t, scriptMon(300*time.Millisecond, false, hang), nil)
	start := time.Now()
	r := c.Check(context.Background(), scriptTarget)
	el := time.Since(start)
	if r.OK || r.Reason != "timeout after 300ms (script), killed" {
		t.Errorf("hanging script: %+v", r)
	}
	if el < 300*time.Millisecond || el > 1500*time.Millisecond {
		t.Errorf("hanging script's check took %s with a 300ms timeout", el)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the script never started its child: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	testkit.Eventually(t, 2*time.Second, 20*time.Millisecond, func() error {
		// Gone, or a zombie waiting for its (gone) parent's reaper.
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(st), ") Z ") {
			return nil
		}
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		return fmt.Errorf("the script's child %d outlived the timeout: %s", pid, st)
	})
}

// TestScriptOutputBounded: a script printing 64 MiB completes normally;
// its output is drained, not kept, and the reason holds its first line.
func TestScriptOutputBounded(t *testing.T) {
	dir := t.TempDir()
	loud := writeScript(t, dir, "loud", `echo first line; head -c 67108864 /dev/zero; exit 1`)
	c := probeChecker(t, scriptMon(5*time.Second, false, loud), nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := c.Check(context.Background(), scriptTarget)
	runtime.ReadMemStats(&after)
	if r.OK || r.Reason != "exit 1: first line" {
		t.Errorf("loud script: %+v", r)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("the check allocated %d bytes while reading 64 MiB of output", alloc)
	}
	t.Logf("64 MiB of output read in %s", r.Latency)
}

// TestSchedulerDynamicWeight: a dynamic_weight script changes the member's
// weight (an event with the same state and the new weight) without a state
// change; exit 0 keeps the weight; a failure takes the member down.
func TestSchedulerDynamicWeight(t *testing.T) {
	dir := t.TempDir()
	codeFile := filepath.Join(dir, "code")
	setCode := func(code int) {
		if err := os.WriteFile(codeFile, []byte(strconv.Itoa(code)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setCode(7)
	prog := writeScript(t, dir, "weight", "exit $(cat "+codeFile+")")
	mon := scriptMon(500*time.Millisecond, true, prog)
	mon.Interval, mon.Rise, mon.Fall = config.Duration(100*time.Millisecond), 1, 1
	mon.Timeout = config.Duration(80 * time.Millisecond)
	s, rec, _ := runSchedulerEnv(t, nil, config.Monitors{"w": mon}, []health.Member{{ID: "p/m", Target: scriptTarget, Monitor: "w"}})
	ev := rec.waitEvent(t, "p/m", 1, 3*time.Second)
	if ev.To != health.StateUp || !ev.Weighted || ev.Weight != 5 {
		t.Fatalf("first event %+v: want up with weight 5", ev)
	}
	if w, ok := s.Weight("p/m"); !ok || w != 5 {
		t.Fatalf("Weight = %d %v, want 5", w, ok)
	}
	setCode(0)
	time.Sleep(400 * time.Millisecond)
	if w, ok := s.Weight("p/m"); !ok || w != 5 {
		t.Fatalf("after exit 0: weight %d %v, want 5 kept", w, ok)
	}
	setCode(3)
	ev = rec.waitEvent(t, "p/m", 2, 3*time.Second)
	if ev.From != health.StateUp || ev.To != health.StateUp || ev.Weight != 1 {
		t.Fatalf("weight change event %+v: want up->up weight 1", ev)
	}
	setCode(1)
	ev = rec.waitEvent(t, "p/m", 3, 3*time.Second)
	if ev.To != health.StateDown {
		t.Fatalf("exit 1 event %+v: want down", ev)
	}
}
