package supervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/services/daemon/notify"
	"github.com/sirupsen/logrus/hooks/test"
	"golang.org/x/sys/unix"
)

// waitStatus waits until ok(status of name) and returns that status.
func waitStatus(t *testing.T, s *Supervisor, name string, within time.Duration, what string, ok func(Status) bool) Status {
	t.Helper()
	var got Status
	testkit.Eventually(t, within, 10*time.Millisecond, func() error {
		for _, st := range s.Statuses() {
			if st.Name == name && ok(st) {
				got = st
				return nil
			}
		}
		return fmt.Errorf("%s not %s (statuses %+v)", name, what, s.Statuses())
	})
	return got
}

// TestAfterWaitsForReady: b is After a, and a reports ready only after
// 400 ms; b must start after that, not before.
func TestAfterWaitsForReady(t *testing.T) {
	order := filepath.Join(t.TempDir(), "order")
	logger, _ := test.NewNullLogger()
	s := New(logger, startReaper(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); s.Wait() }()
	start := time.Now()
	s.StartAll(ctx,
		Service{Name: "a", Path: "/bin/sh", Args: []string{"-c", "sleep 0.4; echo a-ready >> " + order + "; echo READY=1 >&3; exec sleep 60"}},
		Service{Name: "b", Path: "/bin/sh", Args: []string{"-c", "echo b-start >> " + order + "; exec sleep 60"}, After: []string{"a", "not-here"}},
	)
	waitStatus(t, s, "b", 10*time.Second, "running", func(st Status) bool { return st.Running })
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Fatalf("b started %v after a, before a could be ready", el)
	}
	time.Sleep(100 * time.Millisecond)
	b, _ := os.ReadFile(order)
	if string(b) != "a-ready\nb-start\n" {
		t.Fatalf("order %q, want a ready before b starts", b)
	}
	if st := waitStatus(t, s, "a", time.Second, "ready", func(st Status) bool { return st.Ready }); st.Restarts != 0 {
		t.Fatalf("a %+v", st)
	}
}

// TestAfterGivesUpWaitingAtReadyTimeout: a dependency that never gets
// ready delays its dependants by ReadyTimeout, not for ever; one that exits
// with the do-not-restart status does not delay them at all.
func TestAfterGivesUpWaitingAtReadyTimeout(t *testing.T) {
	logger, _ := test.NewNullLogger()
	s := New(logger, startReaper(t))
	s.ReadyTimeout = 500 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); s.Wait() }()
	start := time.Now()
	s.StartAll(ctx,
		Service{Name: "mute", Path: "/bin/sh", Args: []string{"-c", "exec sleep 60"}},
		Service{Name: "idle", Path: "/bin/sh", Args: []string{"-c", "exit 125"}},
		Service{Name: "after-idle", Path: "/bin/sh", Args: []string{"-c", "exec sleep 60"}, After: []string{"idle"}},
		Service{Name: "after-mute", Path: "/bin/sh", Args: []string{"-c", "exec sleep 60"}, After: []string{"mute"}},
	)
	waitStatus(t, s, "after-idle", 5*time.Second, "running", func(st Status) bool { return st.Running })
	if el := time.Since(start); el > 400*time.Millisecond {
		t.Fatalf("after-idle waited %v for a service that will never run again", el)
	}
	waitStatus(t, s, "after-mute", 5*time.Second, "running", func(st Status) bool { return st.Running })
	if el := time.Since(start); el < 500*time.Millisecond {
		t.Fatalf("after-mute started after %v, before the ready timeout", el)
	}
}

// heartbeater is a child that heartbeats every 100 ms and records its PID.
func heartbeater(pids string) []string {
	return []string{"-c", "echo $$ ${" + notify.EnvPreviousRun + ":-first} >> " + pids + "; while :; do echo WATCHDOG=1 >&3; sleep 0.1; done"}
}

// TestWatchdogKillsAStoppedDaemonAndRestartsIt: a daemon that heartbeats
// and is then SIGSTOPped must be SIGKILLed after the watchdog interval and
// started again (at once: its run was longer than the stable period).
func TestWatchdogKillsAStoppedDaemonAndRestartsIt(t *testing.T) {
	pids := filepath.Join(t.TempDir(), "pids")
	logger, _ := test.NewNullLogger()
	s := New(logger, startReaper(t))
	s.Backoff = Backoff{Initial: 5 * time.Second, Max: 5 * time.Second, Stable: 500 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); s.Wait() }()
	s.Start(ctx, Service{Name: "vrrpd", Path: "/bin/sh", Args: heartbeater(pids), Watchdog: 600 * time.Millisecond})
	first := waitStatus(t, s, "vrrpd", 5*time.Second, "running", func(st Status) bool { return st.Running })
	time.Sleep(time.Second) // well past the interval: heartbeats keep it alive
	if st := s.Statuses()[0]; st.PID != first.PID || st.WatchdogKills != 0 {
		t.Fatalf("a heartbeating daemon was disturbed: %+v", st)
	}
	if err := unix.Kill(first.PID, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	st := waitStatus(t, s, "vrrpd", 5*time.Second, "restarted", func(st Status) bool { return st.Running && st.PID != first.PID })
	took := time.Since(stopped)
	if st.WatchdogKills != 1 || st.Restarts != 1 || !strings.HasPrefix(st.LastExit, "no heartbeat for 600ms (killed by killed") {
		t.Fatalf("status %+v, want one watchdog kill and restart", st)
	}
	if took < 400*time.Millisecond || took > 2*time.Second { // the last beat may precede the stop by 100ms
		t.Fatalf("restarted %v after SIGSTOP, want about the 600ms watchdog (and no back-off)", took)
	}
	if err := unix.Kill(first.PID, 0); err != unix.ESRCH {
		t.Fatalf("the stopped process %d is still there (%v)", first.PID, err)
	}
	b, _ := os.ReadFile(pids)
	want := fmt.Sprintf("%d first\n%d %s\n", first.PID, st.PID, notify.PreviousRunHung)
	if string(b) != want {
		t.Fatalf("runs (pid, previous run) %q, want %q: the restarted run must learn it was killed as hung", b, want)
	}
}

// TestNoWatchdogBeforeTheFirstHeartbeat: a service that never heartbeats
// (a standalone vrrpd) is not killed, whatever its interval.
func TestNoWatchdogBeforeTheFirstHeartbeat(t *testing.T) {
	logger, _ := test.NewNullLogger()
	s := New(logger, startReaper(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); s.Wait() }()
	s.Start(ctx, Service{Name: "quiet", Path: "/bin/sh", Args: []string{"-c", "exec sleep 60"}, Watchdog: 200 * time.Millisecond})
	first := waitStatus(t, s, "quiet", 5*time.Second, "running", func(st Status) bool { return st.Running })
	time.Sleep(800 * time.Millisecond)
	if st := s.Statuses()[0]; st.PID != first.PID || st.WatchdogKills != 0 || !st.Running {
		t.Fatalf("a daemon that never heartbeat was killed: %+v", st)
	}
}
