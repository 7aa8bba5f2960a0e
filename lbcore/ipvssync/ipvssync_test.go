package ipvssync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvsnl"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/sirupsen/logrus"
)

// fakeKernel behaves like the kernel's daemon table: one daemon per state,
// EEXIST on a second start, ESRCH on stopping none, defaults filled in.
type fakeKernel struct {
	mu       sync.Mutex
	daemons  map[ipvsnl.State]ipvsnl.Daemon
	failOn   map[ipvsnl.State]error // Start of that state fails
	block    chan struct{}          // if set, Start waits for it
	calls    []string
	listFail error
}

func newFake() *fakeKernel {
	return &fakeKernel{daemons: map[ipvsnl.State]ipvsnl.Daemon{}, failOn: map[ipvsnl.State]error{}}
}

func (f *fakeKernel) Start(d ipvsnl.Daemon) error {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("start %s id %d", d.State, d.SyncID))
	if err := f.failOn[d.State]; err != nil {
		return err
	}
	if _, ok := f.daemons[d.State]; ok {
		return ipvsnl.ErrRunning
	}
	if d.Port == 0 {
		d.Port = ipvsnl.DefaultPort
	}
	if !d.Group.IsValid() {
		d.Group = ipvsnl.DefaultGroup
	}
	if d.TTL == 0 {
		d.TTL = 1
	}
	if d.MaxLen == 0 {
		d.MaxLen = 1472
	}
	f.daemons[d.State] = d
	return nil
}

func (f *fakeKernel) Stop(s ipvsnl.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "stop "+s.String())
	if _, ok := f.daemons[s]; !ok {
		return ipvsnl.ErrNotRunning
	}
	delete(f.daemons, s)
	return nil
}

func (f *fakeKernel) List() ([]ipvsnl.Daemon, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listFail != nil {
		return nil, f.listFail
	}
	var out []ipvsnl.Daemon
	for _, s := range []ipvsnl.State{ipvsnl.Master, ipvsnl.Backup} {
		if d, ok := f.daemons[s]; ok {
			out = append(out, d)
		}
	}
	return out, nil
}

func (f *fakeKernel) takeCalls() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := strings.Join(f.calls, ", ")
	f.calls = nil
	return s
}

func (f *fakeKernel) states() string {
	ds, _ := f.List()
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%s/%d", d.State, d.SyncID))
	}
	return strings.Join(s, " ")
}

var settings = Settings{Interface: "failover", SyncID: 51}

func TestDesiredPerRole(t *testing.T) {
	for _, c := range []struct {
		r    Role
		want string
	}{
		{Master, "master backup"},
		{Backup, "master backup"},
		{Fault, "backup"},
		{Stopped, ""},
	} {
		var got []string
		for _, d := range Desired(c.r, settings) {
			if d.Interface != "failover" || d.SyncID != 51 {
				t.Errorf("%s: daemon %+v does not use the settings", c.r, d)
			}
			got = append(got, d.State.String())
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("Desired(%s) = %v, want %s", c.r, got, c.want)
		}
	}
}

func TestReconcileFollowsTheRole(t *testing.T) {
	k := newFake()
	steps := []struct {
		r                Role
		s                Settings
		calls, daemons   string
		started, stopped int
	}{
		{Backup, settings, "start master id 51, start backup id 51", "master/51 backup/51", 2, 0},
		{Master, settings, "", "master/51 backup/51", 0, 0}, // failover: nothing to restart
		{Fault, settings, "stop master", "backup/51", 0, 1},
		{Backup, settings, "start master id 51", "master/51 backup/51", 1, 0},
		// The VRID changed in the config: both restart with the new id.
		{Master, Settings{Interface: "failover", SyncID: 52}, "stop master, start master id 52, stop backup, start backup id 52", "master/52 backup/52", 2, 2},
		{Stopped, settings, "stop master, stop backup", "", 0, 2},
	}
	for i, st := range steps {
		ch, ds, err := Reconcile(k, st.r, st.s)
		if err != nil {
			t.Fatalf("step %d (%s): %v", i, st.r, err)
		}
		if got := k.takeCalls(); got != st.calls {
			t.Errorf("step %d (%s): kernel calls %q, want %q", i, st.r, got, st.calls)
		}
		if got := k.states(); got != st.daemons {
			t.Errorf("step %d (%s): daemons %q, want %q", i, st.r, got, st.daemons)
		}
		if ch.Started != st.started || ch.Stopped != st.stopped || len(ds) != len(strings.Fields(st.daemons)) {
			t.Errorf("step %d (%s): %+v, %d listed", i, st.r, ch, len(ds))
		}
	}
}

func TestReconcileRestartsADaemonWithOtherSettings(t *testing.T) {
	k := newFake()
	s := settings
	s.Port = 8850
	if _, _, err := Reconcile(k, Master, settings); err != nil {
		t.Fatal(err)
	}
	k.takeCalls()
	if _, _, err := Reconcile(k, Master, s); err != nil {
		t.Fatal(err)
	}
	if got, want := k.takeCalls(), "stop master, start master id 51, stop backup, start backup id 51"; got != want {
		t.Fatalf("calls %q, want %q", got, want)
	}
	// Defaults the kernel filled in do not count as a difference.
	if _, _, err := Reconcile(k, Master, s); err != nil {
		t.Fatal(err)
	}
	if got := k.takeCalls(); got != "" {
		t.Fatalf("second reconcile with the same settings made calls: %q", got)
	}
}

func TestReconcileCarriesOnPastAFailure(t *testing.T) {
	k := newFake()
	k.failOn[ipvsnl.Master] = errors.New("no address on failover")
	_, ds, err := Reconcile(k, Master, settings)
	if err == nil || !strings.Contains(err.Error(), "no address on failover") {
		t.Fatalf("err = %v, want the master's start error", err)
	}
	if len(ds) != 1 || ds[0].State != ipvsnl.Backup {
		t.Fatalf("the backup daemon should still have started: %+v", ds)
	}
	if _, _, err := Reconcile(k, Master, Settings{Interface: "a/b", SyncID: 1}); err == nil || !strings.Contains(err.Error(), "a/b") {
		t.Fatalf("bad settings: %v, want an error naming the interface", err)
	}
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// TestSetRoleNeverBlocks: with the kernel stuck, VRRP's role changes still
// return at once, and the syncer catches up with the latest role when the
// kernel answers again.
func TestSetRoleNeverBlocks(t *testing.T) {
	k := newFake()
	k.block = make(chan struct{})
	y := New(k, settings, quiet())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { y.Run(ctx); close(done) }()
	start := time.Now()
	for _, r := range []Role{Master, Backup, Fault, Master, Backup, Master} {
		y.SetRole(r)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("SetRole took %v with the kernel stuck", d)
	}
	close(k.block)
	testkit.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		st := y.Status()
		if st.Role != "master" || len(st.Daemons) != 2 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	cancel()
	<-done
	// The daemons outlive vrrpd: a restart must not interrupt sync.
	if got := k.states(); got != "master/51 backup/51" {
		t.Fatalf("daemons after Run ended: %q", got)
	}
}

// TestSyncerWaitsForARole: a restarted vrrpd does not stop the daemons a
// previous run left before it knows its role.
func TestSyncerWaitsForARole(t *testing.T) {
	k := newFake()
	if _, _, err := Reconcile(k, Master, settings); err != nil {
		t.Fatal(err)
	}
	k.takeCalls()
	y := New(k, settings, quiet())
	y.Retry, y.Recheck = time.Millisecond, time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	y.Run(ctx)
	if got := k.takeCalls(); got != "" {
		t.Fatalf("Run without a role made kernel calls: %q", got)
	}
}

func TestSyncerRetriesAndCounts(t *testing.T) {
	k := newFake()
	k.failOn[ipvsnl.Master] = errors.New("interface failover not up yet")
	y := New(k, settings, quiet())
	y.Retry = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go y.Run(ctx)
	y.SetRole(Master)
	testkit.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := y.Status(); st.Errors < 2 || !strings.Contains(st.LastError, "not up yet") {
			return fmt.Errorf("status %+v: want repeated errors", st)
		}
		return nil
	})
	k.mu.Lock()
	delete(k.failOn, ipvsnl.Master)
	k.mu.Unlock()
	testkit.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		st := y.Status()
		if st.LastError != "" || len(st.Daemons) != 2 || st.Started != 2 || st.LastChange.IsZero() {
			return fmt.Errorf("status %+v: want both daemons after the retry", st)
		}
		return nil
	})
}

func TestSettingsGroupValidated(t *testing.T) {
	s := settings
	s.Group = netip.MustParseAddr("10.0.0.1")
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "not a multicast") {
		t.Fatalf("Validate: %v", err)
	}
}

// A message size applies to the master daemon only: the kernel raises a
// backup's below 1024, so asking for it there would restart the backup
// on every reconcile.
func TestMaxLenIsTheMastersOnly(t *testing.T) {
	s := Settings{Interface: "failover", SyncID: 51, MaxLen: 44}
	for _, d := range Desired(Master, s) {
		switch {
		case d.State == ipvsnl.Master && d.MaxLen != 44:
			t.Errorf("master daemon maxlen %d, want %d", d.MaxLen, 44)
		case d.State == ipvsnl.Backup && d.MaxLen != 0:
			t.Errorf("backup daemon maxlen %d, want the kernel's default (0)", d.MaxLen)
		}
	}
}
