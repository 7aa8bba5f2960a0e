package fsm

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

var (
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	addr1 = netip.MustParseAddr("192.0.2.1")
	addr2 = netip.MustParseAddr("192.0.2.2")
	ms    = time.Millisecond
)

func params(prio int) Params {
	return Params{Version: 3, Priority: prio, Interval: 200 * ms, Preempt: true, Primary: addr1}
}

func acts(as []Action) string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return strings.Join(s, " ")
}

// expect checks the actions' kinds/contents in order by their String prefix.
func expect(t *testing.T, what string, got []Action, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: actions %q, want %q", what, acts(got), want)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i].String(), w) {
			t.Fatalf("%s: actions %q, want %q", what, acts(got), want)
		}
	}
}

func TestStartup(t *testing.T) {
	m := New(params(100))
	if m.State() != Init {
		t.Fatalf("new machine in %s", m.State())
	}
	expect(t, "start", m.Start(t0), "INIT->BACKUP")
	// master down = 3*200ms + (256-100)*200ms/256 = 600 + 121.875 ms
	if got, want := m.MasterDownInterval(), 600*ms+121875*time.Microsecond; got != want {
		t.Errorf("master down interval %s, want %s", got, want)
	}
	if m.Deadline() != t0.Add(m.MasterDownInterval()) {
		t.Errorf("deadline %s", m.Deadline())
	}
	expect(t, "start twice", m.Start(t0))

	o := New(params(255))
	expect(t, "owner start", o.Start(t0), "send-advert(prio=255)", "INIT->MASTER")
	if o.Deadline() != t0.Add(200*ms) {
		t.Errorf("owner advert timer %s", o.Deadline().Sub(t0))
	}
}

func TestMasterDownTimer(t *testing.T) {
	m := New(params(100))
	m.Start(t0)
	down := t0.Add(m.MasterDownInterval())
	expect(t, "just before", m.Tick(down.Add(-time.Nanosecond)))
	if m.State() != Backup {
		t.Fatal("left backup early")
	}
	expect(t, "at expiry", m.Tick(down), "send-advert(prio=100)", "BACKUP->MASTER")
	// then adverts every interval
	expect(t, "advert timer early", m.Tick(down.Add(199*ms)))
	expect(t, "advert timer", m.Tick(down.Add(200*ms)), "send-advert(prio=100)")
	if m.Deadline() != down.Add(400*ms) {
		t.Errorf("next advert at +%s", m.Deadline().Sub(down))
	}
}

func TestBackupResetByMaster(t *testing.T) {
	m := New(params(100))
	m.Start(t0)
	now := t0
	for i := 0; i < 20; i++ { // 20 adverts 200 ms apart: never master
		now = now.Add(200 * ms)
		expect(t, "tick", m.Tick(now))
		expect(t, "advert", m.Receive(now, Advert{Priority: 150, Interval: 200 * ms, Src: addr2}))
	}
	if m.State() != Backup || m.Master() != addr2 {
		t.Fatalf("state %s master %s", m.State(), m.Master())
	}
	// master dies: takeover exactly master-down after its last advert
	expect(t, "takeover", m.Tick(now.Add(m.MasterDownInterval())), "send-advert", "BACKUP->MASTER")
}

func TestLearnedAdvertInterval(t *testing.T) {
	m := New(params(100))
	m.Start(t0)
	m.Receive(t0, Advert{Priority: 150, Interval: time.Second, Src: addr2})
	if m.MasterAdverInterval() != time.Second {
		t.Fatalf("learned interval %s", m.MasterAdverInterval())
	}
	want := 3*time.Second + 156*time.Second/256
	if m.MasterDownInterval() != want || m.Deadline() != t0.Add(want) {
		t.Errorf("master down %s deadline %s, want %s", m.MasterDownInterval(), m.Deadline().Sub(t0), want)
	}
	// v2 does not learn: it uses its own interval, and skew in seconds
	p := params(100)
	p.Version, p.Interval = 2, time.Second
	v2 := New(p)
	v2.Start(t0)
	v2.Receive(t0, Advert{Priority: 150, Interval: 3 * time.Second, Src: addr2})
	if v2.MasterAdverInterval() != time.Second || v2.MasterDownInterval() != 3*time.Second+156*time.Second/256 {
		t.Errorf("v2 interval %s down %s", v2.MasterAdverInterval(), v2.MasterDownInterval())
	}
}

func TestPreempt(t *testing.T) {
	m := New(params(200))
	m.Start(t0)
	now := t0
	var became time.Time
	for i := 0; i < 20 && became.IsZero(); i++ {
		now = now.Add(200 * ms)
		m.Receive(now, Advert{Priority: 100, Interval: 200 * ms, Src: addr2})
		for _, a := range m.Tick(now.Add(199 * ms)) {
			if a.Kind == Transition && a.To == Master {
				became = now
			}
		}
	}
	if became.IsZero() {
		t.Fatal("higher-priority backup never preempted a lower-priority master")
	}
	if d := became.Sub(t0); d > m.MasterDownInterval()+200*ms {
		t.Errorf("preempted after %s; the master-down interval is %s", d, m.MasterDownInterval())
	}
}

func TestNoPreempt(t *testing.T) {
	p := params(200)
	p.Preempt = false
	m := New(p)
	m.Start(t0)
	now := t0
	for i := 0; i < 50; i++ {
		now = now.Add(200 * ms)
		m.Receive(now, Advert{Priority: 100, Interval: 200 * ms, Src: addr2})
		expect(t, "tick", m.Tick(now.Add(199*ms)))
	}
	if m.State() != Backup {
		t.Fatalf("nopreempt backup became %s", m.State())
	}
	// but it still takes over when that master dies
	expect(t, "master died", m.Tick(now.Add(m.MasterDownInterval())), "send-advert", "BACKUP->MASTER")
}

func TestPreemptDelay(t *testing.T) {
	p := params(200)
	p.PreemptDelay = 3 * time.Second
	m := New(p)
	m.Start(t0)
	now := t0
	var became time.Time
	for i := 0; i < 50 && became.IsZero(); i++ {
		now = now.Add(200 * ms)
		m.Receive(now, Advert{Priority: 100, Interval: 200 * ms, Src: addr2})
		for _, a := range m.Tick(now.Add(199 * ms)) {
			if a.Kind == Transition && a.To == Master {
				became = now
			}
		}
	}
	if became.IsZero() {
		t.Fatal("never preempted after the delay")
	}
	d := became.Sub(t0)
	if d < 3*time.Second || d > 3*time.Second+m.MasterDownInterval()+200*ms {
		t.Errorf("preempted after %s, want 3 s + at most the master-down interval", d)
	}
}

func TestPriorityZeroFastTakeover(t *testing.T) {
	m := New(params(100))
	m.Start(t0)
	m.Receive(t0, Advert{Priority: 150, Interval: 200 * ms, Src: addr2})
	now := t0.Add(100 * ms)
	expect(t, "resign", m.Receive(now, Advert{Priority: 0, Interval: 200 * ms, Src: addr2}))
	skew := m.SkewTime()
	if skew != 156*200*ms/256 || m.Deadline() != now.Add(skew) {
		t.Fatalf("skew %s deadline +%s", skew, m.Deadline().Sub(now))
	}
	expect(t, "takeover", m.Tick(now.Add(skew)), "send-advert(prio=100)", "BACKUP->MASTER")
}

func TestMasterRules(t *testing.T) {
	master := func(prio int) *Machine {
		m := New(params(prio))
		m.Start(t0)
		m.Tick(t0.Add(time.Hour))
		if m.State() != Master {
			t.Fatalf("setup: %s", m.State())
		}
		return m
	}
	now := t0.Add(time.Hour + 50*ms)

	m := master(100)
	expect(t, "higher priority", m.Receive(now, Advert{Priority: 101, Interval: time.Second, Src: addr2}), "send-advert(prio=100)", "MASTER->BACKUP")
	if m.MasterAdverInterval() != time.Second || m.Master() != addr2 || m.Deadline() != now.Add(m.MasterDownInterval()) {
		t.Errorf("after stepping down: interval %s master %s", m.MasterAdverInterval(), m.Master())
	}

	// equal priority: the higher primary address wins (addr1 < addr2)
	m = master(100)
	expect(t, "equal, higher address", m.Receive(now, Advert{Priority: 100, Interval: 200 * ms, Src: addr2}), "send-advert(prio=100)", "MASTER->BACKUP")
	p := params(100)
	p.Primary = addr2
	m2 := New(p)
	m2.Start(t0)
	m2.Tick(t0.Add(time.Hour))
	expect(t, "equal, lower address", m2.Receive(now, Advert{Priority: 100, Interval: 200 * ms, Src: addr1}), "send-advert(prio=100)", "announce")
	if m2.State() != Master {
		t.Errorf("equal priority from a lower address made it %s", m2.State())
	}

	m = master(100)
	expect(t, "lower priority", m.Receive(now, Advert{Priority: 50, Interval: 200 * ms, Src: addr2}), "send-advert(prio=100)", "announce")
	if m.State() != Master || m.Deadline() != now.Add(200*ms) {
		t.Errorf("lower priority: %s, advert timer +%s", m.State(), m.Deadline().Sub(now))
	}

	m = master(100)
	expect(t, "priority 0", m.Receive(now, Advert{Priority: 0, Interval: 200 * ms, Src: addr2}), "send-advert(prio=100)")
	if m.State() != Master || m.Deadline() != now.Add(200*ms) {
		t.Errorf("priority 0: %s", m.State())
	}

	m = master(100)
	expect(t, "shutdown", m.Shutdown(now), "send-advert(prio=0)", "MASTER->INIT")
	if !m.Deadline().IsZero() {
		t.Error("timer left running after shutdown")
	}
}

func TestFault(t *testing.T) {
	m := New(params(100))
	m.Start(t0)
	m.Tick(t0.Add(time.Second))
	now := t0.Add(2 * time.Second)
	expect(t, "fault master", m.SetFault(now, true, "external down"), "send-advert(prio=0)", "MASTER->FAULT")
	expect(t, "fault twice", m.SetFault(now, true, "again"))
	expect(t, "no timers in fault", m.Tick(now.Add(time.Hour)))
	expect(t, "adverts ignored in fault", m.Receive(now, Advert{Priority: 0, Interval: 200 * ms, Src: addr2}))
	expect(t, "clear", m.SetFault(now, false, "external up"), "FAULT->BACKUP")
	if m.Deadline() != now.Add(m.MasterDownInterval()) {
		t.Errorf("backup timer after fault +%s", m.Deadline().Sub(now))
	}
	expect(t, "clear twice", m.SetFault(now, false, "x"))

	b := New(params(100))
	b.Start(t0)
	expect(t, "fault backup", b.SetFault(t0, true, "x"), "BACKUP->FAULT")

	i := New(params(100))
	expect(t, "fault at init", i.SetFault(t0, true, "x"), "INIT->FAULT")

	o := New(params(255))
	o.Start(t0)
	o.SetFault(t0, true, "x")
	expect(t, "owner clear", o.SetFault(t0, false, "x"), "send-advert(prio=255)", "FAULT->MASTER")
}

func TestSetPriority(t *testing.T) {
	m := New(params(100))
	m.Start(t0)
	m.Tick(t0.Add(time.Second))
	m.SetPriority(50)
	expect(t, "advert", m.Tick(t0.Add(2*time.Second)), "send-advert(prio=50)")
	// a peer at 80 now wins
	expect(t, "lost", m.Receive(t0.Add(2*time.Second), Advert{Priority: 80, Interval: 200 * ms, Src: addr2}), "send-advert(prio=50)", "MASTER->BACKUP")
	m.SetPriority(-5)
	if m.Priority() != 1 {
		t.Errorf("priority clamps to 1, got %d", m.Priority())
	}
}

func TestSwitchover(t *testing.T) {
	m := New(params(200))
	if _, err := m.Switchover(t0); err == nil {
		t.Error("switchover in INIT accepted")
	}
	m.Start(t0)
	m.Tick(t0.Add(time.Second))
	now := t0.Add(2 * time.Second)
	as, err := m.Switchover(now)
	if err != nil {
		t.Fatal(err)
	}
	// make-before-break: priority 0 out, but still master with the addresses
	expect(t, "switchover", as, "send-advert(prio=0)")
	if m.State() != Master || !m.HandingOver() {
		t.Fatalf("after switchover: %s handing over=%v, want MASTER until the peer takes over", m.State(), m.HandingOver())
	}
	if _, err := m.Switchover(now); err == nil {
		t.Error("second switchover while handing over accepted")
	}
	expect(t, "priority 0 again each interval", m.Tick(now.Add(200*ms)), "send-advert(prio=0)")
	// the peer (priority 100) takes over and advertises: we hold the
	// addresses for the hold time (2 intervals by default), silently
	now = now.Add(300 * ms)
	expect(t, "new master heard", m.Receive(now, Advert{Priority: 100, Interval: 200 * ms, Src: addr2}))
	if d := m.Deadline(); d != now.Add(400*ms) {
		t.Errorf("release at %s, want the hold (400 ms) after the new master's advert", d.Sub(now))
	}
	expect(t, "still holding", m.Tick(now.Add(399*ms)))
	expect(t, "release", m.Tick(now.Add(400*ms)), "MASTER->BACKUP")
	now = now.Add(400 * ms)
	// we must not preempt it back
	for i := 0; i < 30; i++ {
		now = now.Add(200 * ms)
		m.Receive(now, Advert{Priority: 100, Interval: 200 * ms, Src: addr2})
		expect(t, "held", m.Tick(now.Add(199*ms)))
	}
	m.ResumePreempt()
	now = now.Add(200 * ms)
	m.Receive(now, Advert{Priority: 100, Interval: 200 * ms, Src: addr2})
	expect(t, "preempt resumed", m.Tick(now.Add(m.MasterDownInterval())), "send-advert(prio=200)", "BACKUP->MASTER")

	o := New(params(255))
	o.Start(t0)
	if _, err := o.Switchover(t0); err == nil {
		t.Error("owner switchover accepted")
	}
}

// A switchover nobody answers (the peer is down) is abandoned: the master
// stays master, advertises its priority again and re-announces.
func TestSwitchoverWithoutPeer(t *testing.T) {
	m := New(params(200))
	m.Start(t0)
	now := t0.Add(time.Second)
	m.Tick(now)
	if _, err := m.Switchover(now); err != nil {
		t.Fatal(err)
	}
	var last []Action
	for end := now.Add(3*200*ms + time.Second); now.Before(end); now = now.Add(10 * ms) {
		if m.State() != Master {
			t.Fatalf("gave up the master role with no one to take over (%s)", m.State())
		}
		last = m.Tick(now)
	}
	last = m.Tick(now)
	expect(t, "abandoned", last, "send-advert(prio=200)", "announce(manual switchover: no peer took over")
	if m.HandingOver() {
		t.Error("still handing over")
	}
}

// Two machines: the switchover never leaves the VIPs unowned, and the old
// master keeps them until the new one has held them for the hold time.
func TestSwitchoverMakeBeforeBreak(t *testing.T) {
	p1, p2 := params(200), params(100)
	p2.Primary = addr2
	s := newSim(p1, p2)
	s.run(2 * time.Second)
	if s.m[0].State() != Master || s.m[1].State() != Backup {
		t.Fatalf("start: %s %s", s.m[0].State(), s.m[1].State())
	}
	as, err := s.m[0].Switchover(s.now)
	if err != nil {
		t.Fatal(err)
	}
	s.handle(0, as)
	var both, none time.Duration
	for end := s.now.Add(3 * time.Second); s.now.Before(end); {
		s.run(time.Millisecond)
		m0, m1 := s.m[0].State() == Master, s.m[1].State() == Master
		if m0 && m1 {
			both += time.Millisecond
		}
		if !m0 && !m1 {
			none += time.Millisecond
		}
	}
	if s.m[0].State() != Backup || s.m[1].State() != Master {
		t.Fatalf("after the switchover: lb1 %s lb2 %s\n%s", s.m[0].State(), s.m[1].State(), strings.Join(s.log, "\n"))
	}
	if none > 0 {
		t.Errorf("no master for %s during the switchover", none)
	}
	if both < 400*ms {
		t.Errorf("both held the addresses for only %s; the old master must keep them for the hold (400 ms) after the new one's advert", both)
	}
}

// simNet simulates two routers on a link with a controllable connection, in
// simulated time with 1 ms steps; an advert arrives 1 ms after it is sent.
type simNet struct {
	m         [2]*Machine
	connected bool
	inflight  []flight
	now       time.Time
	announced [2]int
	log       []string
}

func newSim(p1, p2 Params) *simNet {
	s := &simNet{m: [2]*Machine{New(p1), New(p2)}, connected: true, now: t0}
	for i := range s.m {
		s.handle(i, s.m[i].Start(s.now))
	}
	return s
}

func (s *simNet) handle(i int, as []Action) {
	for _, a := range as {
		s.log = append(s.log, fmt.Sprintf("%s r%d %s", s.now.Sub(t0), i, a))
		switch a.Kind {
		case SendAdvert:
			if s.connected {
				s.inflight = append(s.inflight, flight{to: 1 - i, adv: Advert{Priority: a.Priority, Interval: s.m[i].p.Interval, Src: s.m[i].p.Primary}})
			}
		case Announce:
			s.announced[i]++
		}
	}
}

func (s *simNet) run(d time.Duration) {
	end := s.now.Add(d)
	for s.now.Before(end) {
		s.now = s.now.Add(ms)
		deliver := s.inflight
		s.inflight = nil
		for _, f := range deliver {
			s.handle(f.to, s.m[f.to].Receive(s.now, f.adv))
		}
		for i := range s.m {
			s.handle(i, s.m[i].Tick(s.now))
		}
	}
}

type flight struct {
	to  int
	adv Advert
}

func (s *simNet) states() string { return s.m[0].State().String() + "/" + s.m[1].State().String() }

func TestSimElectionAndSplitBrain(t *testing.T) {
	p1, p2 := params(150), params(100)
	p2.Primary = addr2
	s := newSim(p1, p2)
	s.run(2 * time.Second)
	if s.states() != "MASTER/BACKUP" {
		t.Fatalf("election: %s\n%s", s.states(), strings.Join(s.log, "\n"))
	}
	s.connected = false // heartbeat cut: both master
	s.run(2 * time.Second)
	if s.states() != "MASTER/MASTER" {
		t.Fatalf("split: %s", s.states())
	}
	s.connected = true
	s.run(time.Second)
	if s.states() != "MASTER/BACKUP" {
		t.Fatalf("after reconnect: %s\n%s", s.states(), strings.Join(s.log, "\n"))
	}
	if s.announced[0] == 0 {
		t.Error("the winner did not re-announce after the split")
	}
}

func TestSimEqualPriority(t *testing.T) {
	p1, p2 := params(100), params(100)
	p2.Primary = addr2
	s := newSim(p1, p2)
	s.run(2 * time.Second)
	// both start at once with equal timers: both become master, and the
	// higher address (r1) must win.
	if s.states() != "BACKUP/MASTER" {
		t.Fatalf("equal priority: %s\n%s", s.states(), strings.Join(s.log, "\n"))
	}
}

// A restarted master that still holds the addresses resumes as master and
// advertises at once; a higher-priority master heard afterwards still wins.
func TestResume(t *testing.T) {
	m := New(params(100))
	expect(t, "resume", m.Resume(t0), "send-advert(prio=100)", "INIT->MASTER")
	if m.Deadline() != t0.Add(200*ms) {
		t.Errorf("next advert at %s, want one interval later", m.Deadline())
	}
	expect(t, "resume twice", m.Resume(t0))
	expect(t, "start after resume", m.Start(t0))
	expect(t, "higher master", m.Receive(t0.Add(50*ms), Advert{Priority: 150, Interval: 200 * ms, Src: addr2}),
		"send-advert(prio=100)", "MASTER->BACKUP")
}

// The priority last heard from another router is remembered across the
// transition to master, so a split brain's lower-priority master knows it.
func TestPeerOutranks(t *testing.T) {
	m := New(params(100))
	m.Start(t0)
	if m.PeerOutranks() {
		t.Error("outranked before hearing anyone")
	}
	m.Receive(t0.Add(10*ms), Advert{Priority: 200, Interval: 200 * ms, Src: addr2})
	m.Tick(t0.Add(2 * time.Second)) // the master goes quiet: master down
	if m.State() != Master || !m.PeerOutranks() {
		t.Errorf("after taking over from a priority-200 master: %s outranked=%v", m.State(), m.PeerOutranks())
	}
	m.Receive(t0.Add(3*time.Second), Advert{Priority: 50, Interval: 200 * ms, Src: addr2})
	if m.PeerOutranks() {
		t.Error("still outranked after hearing a priority-50 router")
	}
}

// preemptAt runs a returning higher-priority backup against a lower-
// priority master's adverts for up to 20 s; syncAt (zero: never) is when
// sync completes. It returns when the backup took over (zero: never).
func preemptAt(t *testing.T, p Params, syncAt time.Duration) time.Duration {
	t.Helper()
	m := New(p)
	m.Start(t0)
	for now := t0; now.Sub(t0) < 20*time.Second; now = now.Add(200 * ms) {
		if syncAt > 0 && !now.Before(t0.Add(syncAt)) {
			m.SetSynced(true)
		}
		m.Receive(now, Advert{Priority: 100, Interval: 200 * ms, Src: addr2})
		for _, a := range m.Tick(now.Add(199 * ms)) {
			if a.Kind == Transition && a.To == Master {
				return now.Sub(t0)
			}
		}
	}
	return 0
}

// WaitSync: a returning master preempts once it holds the peer's table
// (sync complete), not before, even with preempt_delay over; when sync
// never completes, preempt_delay is the safety net; holdPreempt still
// wins over both.
func TestPreemptWaitsForSync(t *testing.T) {
	p := params(200)
	p.WaitSync, p.PreemptDelay = true, 10*time.Second
	mdi := New(p).MasterDownInterval() + 200*ms
	if d := preemptAt(t, p, 2*time.Second); d < 2*time.Second || d > 2*time.Second+mdi {
		t.Errorf("synced at 2 s: preempted at %v, want 2 s + at most the master-down interval", d)
	}
	if d := preemptAt(t, p, 0); d < 10*time.Second || d > 10*time.Second+mdi {
		t.Errorf("never synced: preempted at %v, want at the 10 s safety net", d)
	}
	p.PreemptDelay = time.Second
	if d := preemptAt(t, p, 4*time.Second); d < time.Second || d > time.Second+mdi {
		t.Errorf("safety net 1 s, synced at 4 s: preempted at %v, want at 1 s", d)
	}
	p.WaitSync, p.PreemptDelay = false, 0
	if d := preemptAt(t, p, 0); d > mdi {
		t.Errorf("without WaitSync: preempted at %v, want at once", d)
	}
	p.WaitSync, p.PreemptDelay = true, 10*time.Second
	m := New(p)
	m.Start(t0)
	m.holdPreempt = true
	m.SetSynced(true)
	if m.preempts(t0.Add(11 * time.Second)) {
		t.Error("a switchover's preemption hold was overridden by sync")
	}
}
