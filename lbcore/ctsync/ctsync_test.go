package ctsync

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func v4entry(i int) Entry {
	return Entry{Op: OpUpdate, Proto: 6, TCPState: 3, Status: 0x1ba, Timeout: 431999, Mark: 7, Zone: 0,
		Orig:  Tuple{Src: netip.MustParseAddr("198.51.100.11"), Dst: netip.MustParseAddr("203.0.113.50"), SrcPort: uint16(40000 + i), DstPort: 80},
		Reply: Tuple{Src: netip.MustParseAddr("203.0.113.50"), Dst: netip.MustParseAddr("203.0.113.200"), SrcPort: 80, DstPort: uint16(50000 + i)}}
}

func v6entry() Entry {
	return Entry{Op: OpDelete, Proto: 17,
		Orig:  Tuple{Src: netip.MustParseAddr("2001:db8:1::11"), Dst: netip.MustParseAddr("2001:db8:2::50"), SrcPort: 5353, DstPort: 53},
		Reply: Tuple{Src: netip.MustParseAddr("2001:db8:2::50"), Dst: netip.MustParseAddr("2001:db8:2::200"), SrcPort: 53, DstPort: 61000}}
}

func TestHeaderByteLayout(t *testing.T) {
	b, err := Message{Type: MsgNack, SyncID: 51, Epoch: 0x0102030405060708, Seq: 9, Last: 12}.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{'F', 'C', 1, 3, 51, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 9, 0, 0, 0, 12}
	if !bytes.Equal(b, want) {
		t.Fatalf("header\n got % x\nwant % x", b, want)
	}
	b, _ = Message{Type: MsgData, SyncID: 1, Seq: 1, Entries: []Entry{v4entry(0)}}.Append(nil)
	if len(b) != headerLen+entryLen4 {
		t.Fatalf("one IPv4 entry: %d bytes, want %d", len(b), headerLen+entryLen4)
	}
	wantEntry := []byte{1, 4, 6, 3, 0, 0, 1, 0xba, 0, 6, 0x97, 0x7f, 0, 0, 0, 7, 0, 0, 0, 0,
		198, 51, 100, 11, 203, 0, 113, 50, 203, 0, 113, 50, 203, 0, 113, 200,
		0x9c, 0x40, 0, 80, 0, 80, 0xc3, 0x50}
	if !bytes.Equal(b[headerLen:], wantEntry) {
		t.Fatalf("entry\n got % x\nwant % x", b[headerLen:], wantEntry)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, m := range []Message{
		{Type: MsgData, SyncID: 51, Epoch: 77, Seq: 5, Entries: []Entry{v4entry(1), v4entry(2)}},
		{Type: MsgData, SyncID: 51, Epoch: 77, Seq: 6, Entries: []Entry{v6entry()}},
		{Type: MsgAck, SyncID: 51, Epoch: 77, Seq: 6, Entries: []Entry{}},
		{Type: MsgResync, SyncID: 9, Entries: []Entry{}},
	} {
		b, err := m.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", m.Type, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip\n got %+v\nwant %+v", got, m)
		}
	}
}

func TestParseRejects(t *testing.T) {
	good, _ := Message{Type: MsgData, SyncID: 1, Seq: 1, Entries: []Entry{v4entry(0)}}.Append(nil)
	mod := func(i int, v byte) []byte { b := append([]byte{}, good...); b[i] = v; return b }
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"short", good[:10], "shorter than"},
		{"magic", mod(0, 'X'), "bad magic"},
		{"version", mod(2, 2), "version 2"},
		{"type", mod(3, 9), "unknown message type 9"},
		{"count high", mod(7, 2), "entry 1 truncated"},
		{"count huge", mod(6, 1), "more than"},
		{"trailing", append(append([]byte{}, good...), 0), "after the last entry"},
		{"family", mod(headerLen+1, 5), "family 5"},
		{"op", mod(headerLen, 0), "op 0"},
		{"truncated entry", good[:len(good)-1], "truncated"},
		{"ack with entries", mod(3, byte(MsgAck)), "claims 1 entries"},
	} {
		if _, err := Parse(c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	mixed := v4entry(0)
	mixed.Reply.Dst = netip.MustParseAddr("2001:db8::1")
	if _, err := (Message{Type: MsgData, Entries: []Entry{mixed}}).Append(nil); err == nil {
		t.Error("an entry mixing IPv4 and IPv6 was encoded")
	}
}

func FuzzParse(f *testing.F) {
	for _, m := range []Message{
		{Type: MsgData, SyncID: 51, Epoch: 77, Seq: 5, Entries: []Entry{v4entry(1), v6entry()}},
		{Type: MsgNack, SyncID: 51, Epoch: 77, Seq: 5, Last: 9},
		{Type: MsgDone, SyncID: 51, Epoch: 77, Seq: 5},
	} {
		b, _ := m.Append(nil)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			return
		}
		out, err := m.Append(nil)
		if err != nil {
			t.Fatalf("parsed %+v but cannot encode it: %v", m, err)
		}
		if !bytes.Equal(out, b[:len(out)]) || len(out) != len(b) {
			// reserved bytes may differ; compare by re-parsing
			back, err := Parse(out)
			if err != nil || !reflect.DeepEqual(back, m) {
				t.Fatalf("re-encode changed the message: %+v vs %+v (%v)", back, m, err)
			}
		}
	})
}

func TestSenderBatchesToOneDatagram(t *testing.T) {
	s := NewSender(51, 1, 0)
	var sealed []Message
	for i := 0; i < 70; i++ {
		out, err := s.Add(v4entry(i))
		if err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, out...)
	}
	sealed = append(sealed, s.Flush()...)
	if len(sealed) != 3 || len(sealed[0].Entries) != MaxEntries || len(sealed[1].Entries) != MaxEntries || len(sealed[2].Entries) != 70-2*MaxEntries {
		t.Fatalf("70 entries in %d messages of %v; want 31+31+8", len(sealed), lens(sealed))
	}
	for i, m := range sealed {
		if m.Seq != uint32(i+1) {
			t.Errorf("message %d numbered %d", i, m.Seq)
		}
		if b, err := m.Append(nil); err != nil || len(b) > MaxDatagram {
			t.Errorf("message %d: %d bytes, %v", i, len(b), err)
		}
	}
	if s.Flush() != nil {
		t.Error("empty flush sent a message")
	}
}

func lens(ms []Message) []int {
	var n []int
	for _, m := range ms {
		n = append(n, len(m.Entries))
	}
	return n
}

// deliver passes m through the wire, as a datagram would.
func deliver(t *testing.T, m Message) Message {
	t.Helper()
	b, err := m.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A lost message is asked for again (NACK), resent from the window and
// installed; the ACK then covers everything; a duplicate and a foreign
// message are dropped and counted.
func TestLossIsRepairedByNack(t *testing.T) {
	s, r := NewSender(51, 100, 8), NewReceiver(51, 8)
	join := deliver(t, r.Join())
	if _, resync, _ := s.Handle(join); !resync {
		t.Fatal("a join did not ask the sender for a resync")
	}
	var msgs []Message
	for i := 0; i < 4; i++ {
		s.Add(v4entry(i))
		msgs = append(msgs, s.Flush()...)
	}
	installed := 0
	recv := func(m Message) []Message {
		apply, reply, err := r.Handle(deliver(t, m))
		if err != nil {
			t.Fatalf("message %d: %v", m.Seq, err)
		}
		installed += len(apply)
		return reply
	}
	if reply := recv(msgs[0]); len(reply) != 0 {
		t.Fatalf("first message after the join asked for %v (the join already asked for a resync)", reply)
	}
	// msgs[1] and msgs[2] are lost.
	reply := recv(msgs[3])
	if len(reply) != 1 || reply[0].Type != MsgNack || reply[0].Seq != 2 || reply[0].Last != 3 {
		t.Fatalf("after a gap: %+v, want NACK 2-3", reply)
	}
	if a, _ := r.Ack(); a.Seq != 1 {
		t.Fatalf("ACK %d before the gap is filled, want 1", a.Seq)
	}
	resend, resync, err := s.Handle(deliver(t, reply[0]))
	if err != nil || resync || len(resend) != 2 {
		t.Fatalf("NACK: %d resent, resync %v, %v", len(resend), resync, err)
	}
	for _, m := range resend {
		recv(m)
	}
	if installed != 4 {
		t.Fatalf("%d entries installed, want 4", installed)
	}
	if a, ok := r.Ack(); !ok || a.Seq != 4 {
		t.Fatalf("ACK %d (%v) after the gap is filled, want 4", a.Seq, ok)
	}
	if _, ok := r.Ack(); ok {
		t.Error("a second ACK with nothing new")
	}
	if _, _, err := r.Handle(deliver(t, msgs[2])); !errors.Is(err, ErrDuplicate) {
		t.Errorf("duplicate: %v", err)
	}
	foreign := msgs[0]
	foreign.SyncID = 52
	if _, _, err := r.Handle(deliver(t, foreign)); !errors.Is(err, ErrForeign) {
		t.Errorf("foreign: %v", err)
	}
	if r.C.Duplicates != 1 || r.C.Foreign != 1 || r.C.Nacks != 1 || r.C.Entries != 4 {
		t.Errorf("receiver counters %+v", r.C)
	}
}

// A restarted sender (newer epoch) makes the receiver ask for a resync; a
// message of the old run is a replay; a gap wider than the window, or a
// NACK for messages the sender no longer has, is a resync too.
func TestEpochsReplaysAndResync(t *testing.T) {
	r := NewReceiver(51, 8)
	s1 := NewSender(51, 100, 8)
	s1.Add(v4entry(0))
	old := s1.Flush()[0]
	_, reply, err := r.Handle(deliver(t, old))
	if err != nil || len(reply) != 1 || reply[0].Type != MsgResync {
		t.Fatalf("first message of a run: %+v %v, want a resync request", reply, err)
	}
	s2 := NewSender(51, 200, 8)
	s2.Add(v4entry(1))
	_, reply, err = r.Handle(deliver(t, s2.Flush()[0]))
	if err != nil || len(reply) != 1 || reply[0].Type != MsgResync || reply[0].Epoch != 200 {
		t.Fatalf("restarted sender: %+v %v, want a resync of epoch 200", reply, err)
	}
	if _, _, err := r.Handle(deliver(t, old)); !errors.Is(err, ErrReplay) {
		t.Fatalf("message of the old run: %v, want ErrReplay", err)
	}
	// 20 messages lost: wider than the window of 8.
	var last Message
	for i := 0; i < 21; i++ {
		s2.Add(v4entry(i))
		last = s2.Flush()[0]
	}
	_, reply, err = r.Handle(deliver(t, last))
	if err != nil || len(reply) != 1 || reply[0].Type != MsgResync {
		t.Fatalf("gap of 20 with a window of 8: %+v %v, want a resync", reply, err)
	}
	// A NACK for what has left the sender's window.
	if _, resync, _ := s2.Handle(Message{Type: MsgNack, SyncID: 51, Epoch: 200, Seq: 2, Last: 3}); !resync {
		t.Fatal("NACK for overwritten messages did not ask for a resync")
	}
	// A NACK of another run is stale.
	if _, _, err := s2.Handle(Message{Type: MsgNack, SyncID: 51, Epoch: 100, Seq: 20, Last: 21}); !errors.Is(err, ErrReplay) {
		t.Fatalf("NACK of the old epoch: %v", err)
	}
	// A message far behind the highest is a replay, not a gap filler.
	if _, _, err := r.Handle(Message{Type: MsgData, SyncID: 51, Epoch: 200, Seq: 3}); !errors.Is(err, ErrReplay) {
		t.Fatalf("message 3 after 22 with a window of 8: %v, want ErrReplay", err)
	}
}

// Memory is bounded whatever the peer does: the sender's window is fixed,
// and a dead receiver never makes it grow.
func TestSenderMemoryIsBoundedWithADeadPeer(t *testing.T) {
	s := NewSender(51, 1, 16)
	for i := 0; i < 10000; i++ {
		s.Add(v4entry(i))
		s.Flush()
	}
	if len(s.window) != 16 || cap(s.pending) > MaxEntries+1 {
		t.Fatalf("window %d, pending cap %d", len(s.window), cap(s.pending))
	}
	if s.C.Messages != 10000 {
		t.Fatalf("messages %d", s.C.Messages)
	}
}

// A resync ends with a done: the receiver is synced only once every
// message up to it arrived; a join or a new sender run unsets it; a done
// of a run whose data was all lost asks for that data.
func TestDoneMarksSynced(t *testing.T) {
	s, r := NewSender(51, 100, 16), NewReceiver(51, 16)
	if _, resync, _ := s.Handle(deliver(t, r.Join())); !resync {
		t.Fatal("join is not a resync request")
	}
	var msgs []Message
	for i := 0; i < 3; i++ {
		s.Add(v4entry(i))
		msgs = append(msgs, s.Flush()...)
	}
	done := deliver(t, s.Done())
	if done.Type != MsgDone || done.Seq != 3 {
		t.Fatalf("done %+v, want done of 3", done)
	}
	r.Handle(deliver(t, msgs[0]))
	r.Handle(deliver(t, msgs[2])) // msgs[1] lost
	if _, _, err := r.Handle(done); err != nil {
		t.Fatal(err)
	}
	if r.Synced() {
		t.Fatal("synced with message 2 missing")
	}
	n, ok := r.Repair()
	if !ok || n.Type != MsgNack || n.Seq != 2 || n.Last != 2 {
		t.Fatalf("repair %+v %v, want NACK 2-2", n, ok)
	}
	r.Handle(deliver(t, msgs[1]))
	if !r.Synced() {
		t.Fatal("not synced with every message up to the done")
	}
	if _, ok := r.Repair(); ok {
		t.Error("repair with no gap")
	}
	r.Join()
	if r.Synced() {
		t.Error("still synced after asking for a resync")
	}
	// A new run whose data was all lost: its done asks for it.
	s2 := NewSender(51, 200, 16)
	s2.Add(v4entry(9))
	s2.Flush()
	_, reply, _ := r.Handle(deliver(t, s2.Done()))
	if len(reply) != 1 || reply[0].Type != MsgNack || reply[0].Seq != 1 || reply[0].Last != 1 || r.Synced() {
		t.Fatalf("done of an unseen run: %+v synced %v, want NACK 1-1 and not synced", reply, r.Synced())
	}
	// An empty table: synced at once.
	r2 := NewReceiver(51, 16)
	r2.Handle(deliver(t, NewSender(51, 300, 16).Done()))
	if !r2.Synced() {
		t.Error("done of an empty table did not sync")
	}
	// The sender resends an unacknowledged tail; an ACK stops it.
	if m, ok := s.Tail(); !ok || m.Seq != 3 {
		t.Fatalf("tail %+v %v, want message 3", m, ok)
	}
	s.Handle(Message{Type: MsgAck, SyncID: 51, Epoch: 100, Seq: 3})
	if _, ok := s.Tail(); ok {
		t.Error("tail resent after its ACK")
	}
}
