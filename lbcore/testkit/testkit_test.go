package testkit

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTB records what a helper did to the test: Fatal and Skip end the
// calling goroutine as the real ones do.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	failed  string
	skipped string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatal(args ...any) {
	f.mu.Lock()
	f.failed = fmt.Sprint(args...)
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }
func (f *fakeTB) Skipf(format string, args ...any) {
	f.mu.Lock()
	f.skipped = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls fn with a fake TB on its own goroutine (Goexit ends only that).
func run(fn func(tb *fakeTB)) *fakeTB {
	tb := &fakeTB{}
	done := make(chan struct{})
	go func() { defer close(done); fn(tb) }()
	<-done
	return tb
}

func TestEventuallyFailsOnTimeoutWithLastError(t *testing.T) {
	calls := 0
	start := time.Now()
	tb := run(func(tb *fakeTB) {
		Eventually(tb, 100*time.Millisecond, 10*time.Millisecond, func() error {
			calls++
			return fmt.Errorf("attempt %d not ready", calls)
		})
	})
	if took := time.Since(start); took > time.Second {
		t.Errorf("Eventually took %s for a 100ms timeout", took)
	}
	want := fmt.Sprintf("attempt %d not ready", calls)
	if tb.failed == "" || !strings.Contains(tb.failed, want) {
		t.Fatalf("on timeout: failure %q, want one naming the last error %q", tb.failed, want)
	}
	if calls < 5 {
		t.Errorf("f called %d times in 100ms at a 10ms interval", calls)
	}
}

func TestEventuallyReturnsOnSuccess(t *testing.T) {
	calls := 0
	tb := run(func(tb *fakeTB) {
		Eventually(tb, 5*time.Second, time.Millisecond, func() error {
			if calls++; calls < 3 {
				return errors.New("not yet")
			}
			return nil
		})
	})
	if tb.failed != "" || calls != 3 {
		t.Fatalf("failed %q after %d calls, want success on the third", tb.failed, calls)
	}
}

func TestEventuallyTriesOnceWithZeroTimeout(t *testing.T) {
	calls := 0
	tb := run(func(tb *fakeTB) {
		Eventually(tb, 0, time.Millisecond, func() error { calls++; return nil })
	})
	if tb.failed != "" || calls != 1 {
		t.Fatalf("failed %q after %d calls", tb.failed, calls)
	}
}

func TestPollTimeoutErrorWrapsLast(t *testing.T) {
	sentinel := errors.New("sentinel")
	err := Poll(20*time.Millisecond, 5*time.Millisecond, func() error { return sentinel })
	var te *TimeoutError
	if !errors.As(err, &te) || !errors.Is(err, sentinel) || te.Attempts < 2 {
		t.Fatalf("Poll: %v (want a TimeoutError wrapping the sentinel after several attempts)", err)
	}
}

func TestRequireSkipsLocallyFailsInCI(t *testing.T) {
	missing := Tool("fulcrum-no-such-tool")
	t.Setenv(EnvCI, "")
	tb := run(func(tb *fakeTB) { Require(tb, missing) })
	if tb.skipped == "" || tb.failed != "" || !strings.Contains(tb.skipped, "fulcrum-no-such-tool") {
		t.Fatalf("without CI: skipped %q failed %q, want a skip naming the tool", tb.skipped, tb.failed)
	}
	t.Setenv(EnvCI, "true")
	tb = run(func(tb *fakeTB) { Require(tb, missing) })
	if tb.failed == "" || tb.skipped != "" || !strings.Contains(tb.failed, "fulcrum-no-such-tool") {
		t.Fatalf("with CI=true: skipped %q failed %q, want a failure naming the tool", tb.skipped, tb.failed)
	}
	tb = run(func(tb *fakeTB) { Require(tb, Tool("sh"), Path("/", "a root directory")) })
	if tb.failed != "" || tb.skipped != "" {
		t.Fatalf("present requirements: skipped %q failed %q", tb.skipped, tb.failed)
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatal("no sh on this machine: the check above proves nothing")
	}
}

// Two namespaces joined by a veth pair: a TCP server in one answers a
// client in the other, and a process started in a namespace sees only
// that namespace's links.
func TestNamespaceLab(t *testing.T) {
	a, b := NewNS(t, "tka"), NewNS(t, "tkb")
	s := Suffix()
	Veth(t, a, "tka"+s, "10.99.0.1/24", b, "tkb"+s, "10.99.0.2/24")
	b.Serve(t, "srv", "10.99.0.2:7000")
	got, err := a.Ask("", "10.99.0.2:7000", 2*time.Second)
	if err != nil || got != "srv 10.99.0.1" {
		t.Fatalf("ask across the veth: %q %v", got, err)
	}
	out, err := b.Exec("cat", "/proc/net/dev")
	if err != nil || !strings.Contains(out, "tkb"+s) || strings.Contains(out, "tka"+s) {
		t.Fatalf("process in b sees links:\n%s (err %v)", out, err)
	}
}
