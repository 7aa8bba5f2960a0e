package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
)

func TestBackoffDoublesToCeilingAndIsZeroAfterAStableRun(t *testing.T) {
	b := Backoff{Initial: time.Second, Max: 8 * time.Second, Stable: 10 * time.Second}
	var got []time.Duration
	d := time.Duration(0)
	for i := 0; i < 6; i++ {
		d = b.Next(d, time.Second)
		got = append(got, d)
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("delays %v, want %v s", got, want)
		}
	}
	if d = b.Next(d, 11*time.Second); d != 0 {
		t.Fatalf("after a stable run delay = %v, want 0 (restart at once)", d)
	}
	if d = b.Next(d, time.Second); d != time.Second {
		t.Fatalf("a quick crash after a stable run: delay = %v, want the initial 1s", d)
	}
}

// TestRestartsCrashingServiceAndStopsOnCancel runs a real program that
// appends a line to a file and exits: the supervisor must keep restarting it,
// count the restarts, and stop it when the context ends.
func TestRestartsCrashingServiceAndStopsOnCancel(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "runs")
	logger, hook := test.NewNullLogger()
	r := NewReaper()
	done := make(chan struct{})
	go r.Run(done)
	defer close(done)
	s := New(logger, r)
	s.Backoff = Backoff{Initial: 20 * time.Millisecond, Max: 40 * time.Millisecond, Stable: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	s.Start(ctx, Service{Name: "crasher", Path: "/bin/sh", Args: []string{"-c", "echo run >> " + marker + "; echo hello from crasher; exit 3"}})
	testkit.Eventually(t, 10*time.Second, 10*time.Millisecond, func() error {
		b, _ := os.ReadFile(marker)
		if n := strings.Count(string(b), "run"); n < 3 {
			return fmt.Errorf("service ran %d times, waiting for 3", n)
		}
		return nil
	})
	cancel()
	s.Wait()
	b, _ := os.ReadFile(marker)
	if n := strings.Count(string(b), "run"); n < 3 {
		t.Fatalf("service ran %d times, want at least 3 (restarted after each exit)", n)
	}
	st := s.Statuses()
	if len(st) != 1 || st[0].Restarts < 2 || st[0].LastExit != "exit status 3" {
		t.Fatalf("status = %+v, want >=2 restarts and last exit status 3", st)
	}
	var sawOutput, sawExit bool
	for _, e := range hook.AllEntries() {
		if e.Message == "hello from crasher" && e.Data["service"] == "crasher" {
			sawOutput = true
		}
		if e.Message == "exited" && e.Level == logrus.WarnLevel {
			sawExit = true
		}
	}
	if !sawOutput || !sawExit {
		t.Fatalf("log lacks service output (%v) or exit warning (%v)", sawOutput, sawExit)
	}
}

// TestStopEscalatesToKill checks that a service ignoring SIGTERM is killed
// after StopTimeout rather than blocking shutdown.
func TestStopEscalatesToKill(t *testing.T) {
	logger, _ := test.NewNullLogger()
	r := NewReaper()
	done := make(chan struct{})
	go r.Run(done)
	defer close(done)
	s := New(logger, r)
	s.StopTimeout = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	s.Start(ctx, Service{Name: "stubborn", Path: "/bin/sh", Args: []string{"-c", "trap '' TERM; while :; do sleep 0.05; done"}})
	testkit.Eventually(t, 2*time.Second, 10*time.Millisecond, func() error {
		if st := s.Statuses(); len(st) != 1 || !st[0].Running {
			return fmt.Errorf("service not running: %+v", st)
		}
		return nil
	})
	time.Sleep(100 * time.Millisecond) // let the shell install its trap
	start := time.Now()
	cancel()
	s.Wait()
	if el := time.Since(start); el < 150*time.Millisecond || el > 5*time.Second {
		t.Fatalf("stop took %v, want ~StopTimeout then kill", el)
	}
	if st := s.Statuses(); st[0].LastExit != "killed by killed" {
		t.Fatalf("last exit %q, want killed by SIGKILL", st[0].LastExit)
	}
}

// TestOutputLinesArePrefixedWithServiceName checks that a daemon's output
// reaches the console writer line by line under its name.
func TestOutputLinesArePrefixedWithServiceName(t *testing.T) {
	logger, _ := test.NewNullLogger()
	r := NewReaper()
	done := make(chan struct{})
	go r.Run(done)
	defer close(done)
	s := New(logger, r)
	pr, pw, _ := os.Pipe()
	s.Output = pw
	ctx, cancel := context.WithCancel(context.Background())
	s.Start(ctx, Service{Name: "lbd", Path: "/bin/sh", Args: []string{"-c", "echo one; echo two; sleep 10"}})
	buf := make([]byte, 64)
	var got string
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(got, "lbd| two\n") && time.Now().Before(deadline) {
		pr.SetReadDeadline(deadline)
		n, err := pr.Read(buf)
		if err != nil {
			break
		}
		got += string(buf[:n])
	}
	cancel()
	s.Wait()
	if got != "lbd| one\nlbd| two\n" {
		t.Fatalf("console got %q, want both lines prefixed with lbd|", got)
	}
}

// TestDoNotRestartStatusLeavesTheServiceStopped: exit 125 means "nothing to
// do here" (notify.DoNotRestart); the supervisor must not restart it.
func TestDoNotRestartStatusLeavesTheServiceStopped(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "runs")
	logger, _ := test.NewNullLogger()
	r := NewReaper()
	done := make(chan struct{})
	go r.Run(done)
	defer close(done)
	s := New(logger, r)
	s.Backoff = Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond, Stable: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx, Service{Name: "idle", Path: "/bin/sh", Args: []string{"-c", "echo run >> " + marker + "; exit 125"}})
	finished := make(chan struct{})
	go func() { s.Wait(); close(finished) }()
	select {
	case <-finished: // the loop ended by itself, without a cancel
	case <-time.After(5 * time.Second):
		t.Fatal("supervisor still looping 5s after exit 125")
	}
	b, _ := os.ReadFile(marker)
	if n := strings.Count(string(b), "run"); n != 1 {
		t.Fatalf("service ran %d times, want exactly once", n)
	}
	if st := s.Statuses(); st[0].Running || st[0].LastExit != "exit status 125" || st[0].Restarts != 0 {
		t.Fatalf("status %+v, want stopped after exit status 125", st[0])
	}
}
