package ctsync

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// fakeTable is a conntrack table: Dump lists it, Install changes it, and
// what the test puts on ev comes out of Watch.
type fakeTable struct {
	mu      sync.Mutex
	entries map[Tuple]Entry
	ev      chan Entry
	watches atomic.Int32
}

func newTable() *fakeTable { return &fakeTable{entries: map[Tuple]Entry{}, ev: make(chan Entry)} }

func (f *fakeTable) Dump() ([]Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Entry
	for _, e := range f.entries {
		out = append(out, e)
	}
	return out, nil
}

func (f *fakeTable) Install(e Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e.Op == OpDelete {
		delete(f.entries, e.Orig)
	} else {
		f.entries[e.Orig] = e
	}
	return nil
}

func (f *fakeTable) Watch(ctx context.Context, out chan<- Entry) error {
	f.watches.Add(1)
	defer f.watches.Add(-1)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e := <-f.ev:
			select {
			case out <- e:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

func (f *fakeTable) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.entries)
}

func (f *fakeTable) has(e Entry) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	got, ok := f.entries[e.Orig]
	return ok && got.Reply == e.Reply && got.Timeout == e.Timeout
}

// lossy drops every nth data message it sends (0: none).
type lossy struct {
	net.PacketConn
	n, i atomic.Int32
}

func (l *lossy) WriteTo(b []byte, a net.Addr) (int, error) {
	if n := l.n.Load(); n > 0 && len(b) > 3 && MsgType(b[3]) == MsgData && l.i.Add(1)%n == 0 {
		return len(b), nil
	}
	return l.PacketConn.WriteTo(b, a)
}

func listen(t *testing.T, ip string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

func port(pc net.PacketConn) uint16 { return uint16(pc.LocalAddr().(*net.UDPAddr).Port) }

type pair struct {
	a, b       *Daemon
	ta, tb     *fakeTable
	pa, pb     net.PacketConn
	la         *lossy
	syncedB    atomic.Bool
	syncedBCnt atomic.Int32
}

// newPair runs two daemons on loopback (peer 127.0.0.1 both ways).
func newPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{ta: newTable(), tb: newTable(), pa: listen(t, "127.0.0.1"), pb: listen(t, "127.0.0.1")}
	p.la = &lossy{PacketConn: p.pa}
	log := logrus.New()
	log.SetLevel(logrus.ErrorLevel)
	lo := netip.MustParseAddr("127.0.0.1")
	var err error
	p.a, err = New(Config{SyncID: 51, Peer: lo, Port: port(p.pb), Window: 64, Join: 100 * time.Millisecond, Ack: 50 * time.Millisecond}, p.ta, p.la, log)
	if err != nil {
		t.Fatal(err)
	}
	p.b, err = New(Config{SyncID: 51, Peer: lo, Port: port(p.pa), Window: 64, Join: 100 * time.Millisecond, Ack: 50 * time.Millisecond,
		OnSynced: func(s bool) { p.syncedB.Store(s); p.syncedBCnt.Add(1) }}, p.tb, p.pb, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.a.Run(ctx) }()
	go func() { defer wg.Done(); p.b.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return p
}

func entry(i int, timeout uint32) Entry {
	e := v4entry(i)
	e.Timeout = timeout
	return e
}

// The master's table reaches the backup (bulk resync on join), the
// backup reports Synced, and then every event follows: new entries,
// refreshed timeouts, deletes.
func TestDaemonSyncsTableAndEvents(t *testing.T) {
	p := newPair(t)
	for i := 0; i < 100; i++ {
		p.ta.Install(entry(i, 300))
	}
	p.b.SetRole(false)
	p.a.SetRole(true)
	waitFor(t, 5*time.Second, "backup holds the master's 100 entries and is synced", func() bool {
		return p.tb.len() == 100 && p.syncedB.Load() && p.b.Status().Synced
	})
	// events: 50 new, one refreshed, one deleted
	for i := 100; i < 150; i++ {
		p.ta.ev <- entry(i, 120)
	}
	p.ta.ev <- entry(3, 77)
	del := entry(4, 0)
	del.Op = OpDelete
	p.ta.ev <- del
	waitFor(t, 5*time.Second, "events reach the backup", func() bool {
		return p.tb.len() == 149 && p.tb.has(entry(3, 77)) && p.tb.has(entry(149, 120))
	})
	st := p.b.Status()
	if st.Installed < 150 || st.Deleted != 1 || st.Received.Entries < 151 {
		t.Errorf("backup status %+v", st)
	}
	if ast := p.a.Status(); ast.Events != 52 || ast.Role != "sending" || ast.Dumps < 1 {
		t.Errorf("master status %+v", ast)
	}
}

// Lost data messages are NACKed and resent: with every third data
// message of the master dropped, the backup still ends with every entry.
func TestDaemonRepairsLoss(t *testing.T) {
	p := newPair(t)
	p.b.SetRole(false)
	p.a.SetRole(true)
	waitFor(t, 5*time.Second, "backup synced (empty table)", p.syncedB.Load)
	p.la.n.Store(3)
	for i := 0; i < 400; i++ {
		p.ta.ev <- entry(i, 300)
	}
	waitFor(t, 10*time.Second, "all 400 entries on the backup despite losses", func() bool { return p.tb.len() == 400 })
	if p.a.Status().Resent == 0 && p.a.Status().Dumps < 2 {
		t.Errorf("nothing was resent or resynced, so nothing was lost: the test proves nothing (%+v)", p.a.Status())
	}
}

// Failback: the backup becomes master (the old master returns as
// backup): each side changes its part, the returning node asks for and
// gets the new master's table, including entries made after the
// takeover, and reports synced only then.
func TestDaemonFailback(t *testing.T) {
	p := newPair(t)
	p.ta.Install(entry(1, 300))
	p.b.SetRole(false)
	p.a.SetRole(true)
	waitFor(t, 5*time.Second, "b synced", func() bool { return p.tb.len() == 1 && p.syncedB.Load() })
	// a "dies", b takes over and gets new connections
	p.a.SetRole(false)
	p.b.SetRole(true)
	waitFor(t, 5*time.Second, "b sends", func() bool { return p.b.Status().Role == "sending" && p.tb.watches.Load() == 1 })
	p.tb.ev <- entry(2, 300)
	p.tb.Install(entry(3, 300)) // created before b's watch (only a dump has it)
	p.tb.ev <- entry(3, 300)
	waitFor(t, 5*time.Second, "a holds b's table and is synced", func() bool {
		return p.ta.len() == 3 && p.a.Status().Synced
	})
	if r := p.b.Status().Role; r != "sending" {
		t.Errorf("new master's role %q, want sending", r)
	}
}

// Only the configured peer is heard; malformed, foreign (sync id) and
// replayed messages are dropped and counted, and none reaches the table.
func TestDaemonDropsBadInput(t *testing.T) {
	p := newPair(t)
	p.b.SetRole(false)
	p.a.SetRole(true)
	p.ta.ev <- entry(1, 300)
	waitFor(t, 5*time.Second, "b has the entry", func() bool { return p.tb.len() == 1 })
	to := p.pb.LocalAddr()
	send := func(pc net.PacketConn, m Message) {
		b, err := m.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.WriteTo(b, to); err != nil {
			t.Fatal(err)
		}
	}
	stranger := listen(t, "127.0.0.2")
	defer stranger.Close()
	other := listen(t, "127.0.0.1") // the peer's address, not its sync socket: still the peer as far as the filter goes
	defer other.Close()
	epoch := uint64(time.Now().UnixNano())
	send(stranger, Message{Type: MsgData, SyncID: 51, Epoch: epoch * 2, Seq: 1, Entries: []Entry{entry(900, 300)}})
	if _, err := other.WriteTo([]byte("FC\x01\x01garbage"), to); err != nil {
		t.Fatal(err)
	}
	send(other, Message{Type: MsgData, SyncID: 52, Epoch: epoch * 2, Seq: 1, Entries: []Entry{entry(901, 300)}})
	send(other, Message{Type: MsgData, SyncID: 51, Epoch: 1, Seq: 1, Entries: []Entry{entry(902, 300)}}) // older run: replay
	waitFor(t, 5*time.Second, "every bad message counted", func() bool {
		d := p.b.Status().Dropped
		return d[DropWrongPeer] == 1 && d[DropMalformed] == 1 && d[DropForeign] == 1 && d[DropReplay] == 1
	})
	if p.tb.len() != 1 {
		t.Fatalf("a dropped message reached the table: %d entries", p.tb.len())
	}
}

// waitFor polls f until it holds, failing the test (never silently) when
// it does not within d.
func waitFor(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
