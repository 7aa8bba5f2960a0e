package boot

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/init/supervisor"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/logring"
	"github.com/sirupsen/logrus/hooks/test"
)

// fakeClock returns the durations it is given, one per call.
type fakeClock struct{ now time.Duration }

func (c *fakeClock) read() time.Duration { return c.now }

// TestTimelineRecordsEachPhaseOnceInOrder: a phase keeps its first time,
// nothing is added once the record is complete, and the shares split at
// /init.
func TestTimelineRecordsEachPhaseOnceInOrder(t *testing.T) {
	c := &fakeClock{}
	tl := newTimeline(c.read)
	c.now = 2300 * time.Millisecond
	tl.mark(localapi.PhaseInit)
	c.now = 3 * time.Second
	tl.mark(localapi.PhaseModules)
	c.now = 4 * time.Second
	tl.mark(localapi.PhaseModules) // again: ignored
	tl.mark(localapi.PhaseNetwork)
	c.now = 5500 * time.Millisecond
	tl.mark(localapi.PhaseVRRP)
	tl.finish()
	c.now = 9 * time.Second
	tl.mark(localapi.PhaseReady) // after finish: ignored

	got := tl.times()
	want := []localapi.BootMark{{Phase: localapi.PhaseInit, At: 2300 * time.Millisecond}, {Phase: localapi.PhaseModules, At: 3 * time.Second},
		{Phase: localapi.PhaseNetwork, At: 4 * time.Second}, {Phase: localapi.PhaseVRRP, At: 5500 * time.Millisecond}}
	if !got.Complete || len(got.Marks) != len(want) {
		t.Fatalf("times %+v, want complete with %v", got, want)
	}
	for i := range want {
		if got.Marks[i] != want[i] {
			t.Errorf("mark %d = %+v, want %+v", i, got.Marks[i], want[i])
		}
	}
	if got.KernelShare() != 2300*time.Millisecond || got.InitShare() != 3200*time.Millisecond {
		t.Errorf("kernel share %v, init share %v; want 2.3s and 3.2s", got.KernelShare(), got.InitShare())
	}
}

// TestBootClockCountsFromKernelStart: the clock is CLOCK_BOOTTIME, which
// on any running system is well past zero and moves forward.
func TestBootClockCountsFromKernelStart(t *testing.T) {
	a := bootClock()
	time.Sleep(10 * time.Millisecond)
	b := bootClock()
	if a <= 0 || b-a < 10*time.Millisecond {
		t.Fatalf("boot clock %v then %v: want positive and advancing by >= 10ms", a, b)
	}
}

// TestBootRecordCompletesWhenLBDAndVRRPDAreReady: init adds first-apply
// when lbd reports ready and vrrp when vrrpd does, then prints the console
// line, writes the JSON file and serves the record on its local API.
func TestBootRecordCompletesWhenLBDAndVRRPDAreReady(t *testing.T) {
	in, console := testInit(t)
	r := supervisor.NewReaper()
	done := make(chan struct{})
	go r.Run(done)
	defer close(done)
	in.sup = supervisor.New(in.Log, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); in.sup.Wait() }()
	in.times.mark(localapi.PhaseInit)
	in.sup.StartAll(ctx,
		supervisor.Service{Name: "lbd", Path: "/bin/sh", Args: []string{"-c", "sleep 0.3; echo READY=1 >&3; exec sleep 60"}},
		supervisor.Service{Name: "vrrpd", Path: "/bin/sh", After: []string{"lbd"}, Args: []string{"-c", "sleep 0.2; echo READY=1 >&3; exec sleep 60"}})
	in.times.mark(localapi.PhaseDaemons)
	in.times.mark(localapi.PhaseReady)
	started := bootClock()

	finished := make(chan struct{})
	go func() { in.recordDaemonsReady(ctx, 10*time.Second); close(finished) }()
	select {
	case <-finished:
	case <-time.After(15 * time.Second):
		t.Fatal("boot record not complete after 15s")
	}
	got := in.times.times()
	apply, ok1 := got.At(localapi.PhaseFirstApply)
	vrrp, ok2 := got.At(localapi.PhaseVRRP)
	if !got.Complete || !ok1 || !ok2 {
		t.Fatalf("record %+v: want complete with first-apply and vrrp", got)
	}
	if apply-started < 300*time.Millisecond || vrrp-apply < 200*time.Millisecond {
		t.Errorf("first-apply %v and vrrp %v after ready: want >= 0.3s, then >= 0.2s more (the daemons' sleeps)", apply-started, vrrp-apply)
	}
	if !strings.Contains(console.String(), got.ConsoleLine()) {
		t.Errorf("console %q lacks the boot line %q", console.String(), got.ConsoleLine())
	}
	var file localapi.BootTimes
	b, err := os.ReadFile(in.timesPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &file); err != nil || !file.Complete || len(file.Marks) != len(got.Marks) {
		t.Errorf("%s = %s (%v): want the complete record %+v", in.timesPath, b, err, got)
	}
	rec := httptest.NewRecorder()
	statusHandler(in.sup, logring.New(10), in.times).ServeHTTP(rec, httptest.NewRequest("GET", localapi.PathBoot, nil))
	var served localapi.BootTimes
	if err := json.Unmarshal(rec.Body.Bytes(), &served); err != nil || len(served.Marks) != len(got.Marks) || !served.Complete {
		t.Errorf("GET %s = %s (%v): want the complete record", localapi.PathBoot, rec.Body.Bytes(), err)
	}
}

// TestBootRecordLeavesOutADaemonThatNeverGetsReady: a bounded wait; the
// record completes without the phase instead of hanging.
func TestBootRecordLeavesOutADaemonThatNeverGetsReady(t *testing.T) {
	in, console := testInit(t)
	r := supervisor.NewReaper()
	done := make(chan struct{})
	go r.Run(done)
	defer close(done)
	in.sup = supervisor.New(in.Log, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); in.sup.Wait() }()
	in.sup.StartAll(ctx, supervisor.Service{Name: "lbd", Path: "/bin/sh", Args: []string{"-c", "exec sleep 60"}})
	in.times.mark(localapi.PhaseReady)

	finished := make(chan struct{})
	go func() { in.recordDaemonsReady(ctx, 300*time.Millisecond); close(finished) }()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("boot record not complete 10s after a 300ms wait")
	}
	got := in.times.times()
	if _, ok := got.At(localapi.PhaseFirstApply); ok || !got.Complete {
		t.Errorf("record %+v: want complete without first-apply", got)
	}
	if !strings.Contains(console.String(), localapi.BootTimesPrefix) {
		t.Errorf("console %q: want the boot line anyway", console.String())
	}
}

// consoleFile is a test's console: what init printed so far.
type consoleFile struct{ f *os.File }

func (c consoleFile) String() string {
	b, _ := os.ReadFile(c.f.Name())
	return string(b)
}

func testInit(t *testing.T) (*Init, consoleFile) {
	t.Helper()
	logger, _ := test.NewNullLogger()
	f, err := os.CreateTemp(t.TempDir(), "console")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	in := &Init{Log: logger, Console: f, times: newTimeline(bootClock), timesPath: filepath.Join(t.TempDir(), "run", "boot-times.json")}
	return in, consoleFile{f}
}
