package testkit

import (
	"fmt"
	"testing"
	"time"
)

// Eventually calls f every interval until it returns nil. If f has not
// succeeded within timeout, the test fails (t.Fatalf) with f's last error
// and the number of attempts: it never returns silently on a timeout.
// f runs at least once, even with a zero timeout.
func Eventually(t testing.TB, timeout, interval time.Duration, f func() error) {
	t.Helper()
	if err := Poll(timeout, interval, f); err != nil {
		t.Fatal(err)
	}
}

// TimeoutError is what Poll returns when f never succeeded.
type TimeoutError struct {
	Timeout  time.Duration
	Attempts int
	Last     error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("not within %s (%d attempts); last error: %v", e.Timeout, e.Attempts, e.Last)
}

func (e *TimeoutError) Unwrap() error { return e.Last }

// Poll is Eventually for code that handles the timeout itself (a helper
// that reports through its own error): it returns nil as soon as f does,
// or a *TimeoutError carrying f's last error.
func Poll(timeout, interval time.Duration, f func() error) error {
	if interval <= 0 {
		interval = 10 * time.Millisecond
	}
	deadline := time.Now().Add(timeout)
	for n := 1; ; n++ {
		err := f()
		if err == nil {
			return nil
		}
		if !time.Now().Add(interval).Before(deadline) {
			return &TimeoutError{Timeout: timeout, Attempts: n, Last: err}
		}
		time.Sleep(interval)
	}
}
