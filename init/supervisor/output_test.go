package supervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/sirupsen/logrus/hooks/test"
)

// startReaper runs a reaper for one test.
func startReaper(t *testing.T) *Reaper {
	t.Helper()
	r := NewReaper()
	done := make(chan struct{})
	go r.Run(done)
	t.Cleanup(func() { close(done) })
	return r
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string, within time.Duration) {
	t.Helper()
	testkit.Eventually(t, within, 20*time.Millisecond, func() error {
		_, err := os.Stat(path)
		return err
	})
}

// TestOutputNeverKillsOrStallsTheDaemon: a child writes a 100 KiB line and
// then floods 8 MiB of lines while the console does not read at all. The
// child must get through all of it, keep running (same PID, no restart),
// and the supervisor must count the lines it dropped.
func TestOutputNeverKillsOrStallsTheDaemon(t *testing.T) {
	dir := t.TempDir()
	flooded := filepath.Join(dir, "flooded")
	logger, _ := test.NewNullLogger()
	s := New(logger, startReaper(t))
	pr, pw, _ := os.Pipe() // a console nobody reads: its writes block
	defer pr.Close()
	defer pw.Close()
	s.Output = pw
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); s.Wait() }()
	script := fmt.Sprintf(`head -c 102400 /dev/zero | tr '\0' x; echo; yes 'flood line of some length ................................' | head -c 8388608; touch %s; exec sleep 60`, flooded)
	s.Start(ctx, Service{Name: "noisy", Path: "/bin/sh", Args: []string{"-c", script}})
	waitFile(t, flooded, 30*time.Second)
	time.Sleep(200 * time.Millisecond)
	st := s.Statuses()[0]
	if !st.Running || st.Restarts != 0 {
		t.Fatalf("status %+v: the child must survive its own output", st)
	}
	if st.Dropped == 0 {
		t.Fatalf("status %+v: lines were dropped for the stalled console but not counted", st)
	}
}

// TestLongLinesAreCutAndReadingGoesOn: a line over the cap reaches the
// console cut and marked, and the lines after it still arrive whole.
func TestLongLinesAreCutAndReadingGoesOn(t *testing.T) {
	logger, _ := test.NewNullLogger()
	s := New(logger, startReaper(t))
	var mu sync.Mutex
	var buf strings.Builder
	s.Output = lockedWriter{&mu, &buf}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); s.Wait() }()
	s.Start(ctx, Service{Name: "long", Path: "/bin/sh", Args: []string{"-c", `head -c 70000 /dev/zero | tr '\0' y; echo; echo after; exec sleep 60`}})
	testkit.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if got := buf.String(); !strings.Contains(got, "long| after\n") {
			return fmt.Errorf("no 'after' line yet; console got %d bytes", len(got))
		}
		return nil
	})
	mu.Lock()
	got := buf.String()
	mu.Unlock()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want the cut line and 'after'", len(lines))
	}
	want := "long| " + strings.Repeat("y", MaxLine) + CutMark
	if lines[0] != want {
		t.Fatalf("first line is %d bytes (%q...), want %d bytes of y then %q", len(lines[0]), lines[0][:20], MaxLine, CutMark)
	}
	if st := s.Statuses()[0]; !st.Running || st.Cut != 1 {
		t.Fatalf("status %+v, want running with 1 cut line", st)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
