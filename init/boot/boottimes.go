package boot

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"golang.org/x/sys/unix"
)

// BootTimesPath is where init keeps this boot's phase times (JSON,
// localapi.BootTimes) for anyone without the local API.
const BootTimesPath = "/run/fulcrum/boot-times.json"

// bootClock is the time since the kernel started (CLOCK_BOOTTIME: the clock
// of the kernel's printk times, counting from before /init).
func bootClock() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// timeline records when each boot phase ended. It is safe for concurrent
// use (the daemons' readiness is recorded from other goroutines).
type timeline struct {
	clock func() time.Duration

	mu       sync.Mutex
	marks    []localapi.BootMark
	complete bool
}

func newTimeline(clock func() time.Duration) *timeline { return &timeline{clock: clock} }

// mark records that phase p ended now. A phase is recorded once; marking it
// again, or after complete, changes nothing.
func (t *timeline) mark(p localapi.BootPhase) {
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.complete {
		return
	}
	for _, m := range t.marks {
		if m.Phase == p {
			return
		}
	}
	t.marks = append(t.marks, localapi.BootMark{Phase: p, At: now})
}

// finish marks the record complete: nothing more will be added.
func (t *timeline) finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.complete = true
}

// times is a copy of the record.
func (t *timeline) times() localapi.BootTimes {
	t.mu.Lock()
	defer t.mu.Unlock()
	return localapi.BootTimes{Marks: append([]localapi.BootMark(nil), t.marks...), Complete: t.complete}
}

// writeJSON writes the record to path (atomically: a reader never sees half
// a file).
func (t *timeline) writeJSON(path string) error {
	b, err := json.MarshalIndent(t.times(), "", "  ")
	if err != nil {
		return fmt.Errorf("boot times: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("boot times: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("boot times: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("boot times: %w", err)
	}
	return nil
}
