package ctsync

import (
	"errors"
	"fmt"
)

// Errors the session reports for messages it drops (the caller counts
// them; Counters has them too).
var (
	ErrForeign    = errors.New("conntrack sync: message of another sync id")
	ErrReplay     = errors.New("conntrack sync: replayed or too old message")
	ErrDuplicate  = errors.New("conntrack sync: duplicate message")
	ErrUnexpected = errors.New("conntrack sync: message type not expected on this side")
)

// DefaultWindow is how many sent messages a sender keeps for resending
// and how far back a receiver tracks what it has seen: 1024 messages of
// up to 31 entries, about 1.5 MB on the sender, whatever the peer does.
const DefaultWindow = 1024

// after reports whether serial number a comes after b (RFC 1982 style),
// so numbering survives wrapping.
func after(a, b uint32) bool { return int32(a-b) > 0 }

// Sender is the master's side: it batches entries into numbered data
// messages and keeps the last Window of them to resend on a NACK.
type Sender struct {
	syncID  uint8
	epoch   uint64
	window  []Message // ring by seq % len
	next    uint32
	acked   uint32 // the receiver has everything up to this one
	pending []Entry
	size    int
	C       SenderCounters
}

// SenderCounters count what a Sender did.
type SenderCounters struct {
	Messages, Entries, Resent, ResyncsAsked, Foreign, Stale uint64
}

// NewSender starts a sender run. epoch must grow between runs (the start
// time in nanoseconds): receivers take a lower epoch for a replay.
func NewSender(syncID uint8, epoch uint64, window int) *Sender {
	if window <= 0 {
		window = DefaultWindow
	}
	return &Sender{syncID: syncID, epoch: epoch, window: make([]Message, window), next: 1}
}

// Add queues e; it returns the data message sealed to make room, if any.
func (s *Sender) Add(e Entry) ([]Message, error) {
	if err := validEntry(e); err != nil {
		return nil, err
	}
	var out []Message
	if headerLen+s.size+entryLen(e) > MaxDatagram {
		out = append(out, s.seal())
	}
	s.pending = append(s.pending, e)
	s.size += entryLen(e)
	return out, nil
}

// Flush seals what is queued (call it on a short timer: it bounds the lag).
func (s *Sender) Flush() []Message {
	if len(s.pending) == 0 {
		return nil
	}
	return []Message{s.seal()}
}

func (s *Sender) seal() Message {
	m := Message{Type: MsgData, SyncID: s.syncID, Epoch: s.epoch, Seq: s.next, Entries: s.pending}
	s.window[int(s.next%uint32(len(s.window)))] = m
	s.next++
	if s.next == 0 {
		s.next = 1 // 0 is never a message number
	}
	s.pending, s.size = nil, 0
	s.C.Messages++
	s.C.Entries += uint64(len(m.Entries))
	return m
}

// Tail is the last message sent when the receiver has not acknowledged
// it: sent again on a timer, it makes a receiver that lost the end of a
// burst (nothing after it to show the gap) see the gap and NACK it.
func (s *Sender) Tail() (Message, bool) {
	last := s.next - 1
	if s.next == 1 || last == s.acked {
		return Message{}, false
	}
	m := s.window[int(last%uint32(len(s.window)))]
	if m.Seq != last || m.Epoch != s.epoch {
		return Message{}, false
	}
	s.C.Resent++
	return m, true
}

// Done is the message that ends a resync: the table was dumped into the
// messages up to the last one sealed (call it after Flush).
func (s *Sender) Done() Message {
	last := s.next - 1
	if s.next == 1 {
		last = 0 // nothing sent in this run
	}
	return Message{Type: MsgDone, SyncID: s.syncID, Epoch: s.epoch, Seq: last}
}

// Handle takes a receiver's answer: an ACK needs nothing (the window is a
// ring); a NACK returns the messages to send again, or resync when some
// of them have left the window; a RESYNC asks for the whole table
// (resync true: the caller dumps it through Add).
func (s *Sender) Handle(m Message) (resend []Message, resync bool, err error) {
	if m.SyncID != s.syncID {
		s.C.Foreign++
		return nil, false, ErrForeign
	}
	switch m.Type {
	case MsgResync:
		s.C.ResyncsAsked++
		return nil, true, nil
	case MsgAck:
		if m.Epoch != s.epoch {
			s.C.Stale++
			return nil, false, ErrReplay
		}
		if after(m.Seq, s.acked) && after(s.next, m.Seq) {
			s.acked = m.Seq
		}
		return nil, false, nil
	case MsgNack:
		if m.Epoch != s.epoch {
			s.C.Stale++
			return nil, false, ErrReplay
		}
		if after(m.Seq, m.Last) || m.Last-m.Seq >= uint32(len(s.window)) || !after(s.next, m.Last) {
			s.C.ResyncsAsked++
			return nil, true, nil // a range this sender cannot have, or wider than it keeps
		}
		for q := m.Seq; ; q++ {
			w := s.window[int(q%uint32(len(s.window)))]
			if w.Seq != q || w.Epoch != s.epoch || q == 0 {
				s.C.ResyncsAsked++
				return nil, true, nil // overwritten since: only a resync fills it
			}
			resend = append(resend, w)
			if q == m.Last {
				break
			}
		}
		s.C.Resent += uint64(len(resend))
		return resend, false, nil
	}
	return nil, false, fmt.Errorf("%w: %s to a sender", ErrUnexpected, m.Type)
}

// Receiver is the backup's side: it takes data messages in any order
// once, asks for the gaps, acknowledges, and drops foreign, replayed and
// duplicate messages.
type Receiver struct {
	syncID  uint8
	epoch   uint64
	started bool // has seen a data message of epoch
	highest uint32
	contig  uint32 // every message up to this one arrived
	acked   uint32
	seen    []uint32 // ring by seq % len: seq when seen
	asked   bool     // a resync is asked for and no new epoch has come since
	reack   bool     // a duplicate arrived: the sender missed an ACK
	// done is the last message of the sender's latest resync (MsgDone);
	// synced once every message up to it arrived.
	done, hasDone bool
	doneSeq       uint32
	C             ReceiverCounters
}

// ReceiverCounters count what a Receiver did.
type ReceiverCounters struct {
	Messages, Entries, Duplicates, Replays, Foreign, Unexpected, Gaps, Nacks, Resyncs, Dones uint64
}

// NewReceiver makes a receiver for syncID.
func NewReceiver(syncID uint8, window int) *Receiver {
	if window <= 0 {
		window = DefaultWindow
	}
	return &Receiver{syncID: syncID, seen: make([]uint32, window)}
}

// Join is the message a receiver sends when it (re)joins: a resync
// request, so it gets the whole table before it may take over.
func (r *Receiver) Join() Message {
	r.asked = true
	r.done, r.hasDone = false, false
	r.C.Resyncs++
	return Message{Type: MsgResync, SyncID: r.syncID, Epoch: r.epoch}
}

func (r *Receiver) isSeen(q uint32) bool { return q != 0 && r.seen[int(q%uint32(len(r.seen)))] == q }

// Handle takes one parsed message: it returns the entries to install and
// the answers to send (NACK for a gap, RESYNC for a new sender run or a
// gap too wide). A dropped message is an error (ErrForeign, ErrReplay,
// ErrDuplicate, ErrUnexpected), counted.
func (r *Receiver) Handle(m Message) (apply []Entry, reply []Message, err error) {
	if m.SyncID != r.syncID {
		r.C.Foreign++
		return nil, nil, ErrForeign
	}
	if m.Type == MsgDone {
		return nil, r.handleDone(m), nil
	}
	if m.Type != MsgData {
		r.C.Unexpected++
		return nil, nil, fmt.Errorf("%w: %s to a receiver", ErrUnexpected, m.Type)
	}
	if m.Seq == 0 {
		r.C.Replays++
		return nil, nil, fmt.Errorf("%w: message number 0", ErrReplay)
	}
	W := uint32(len(r.seen))
	switch {
	case r.started && m.Epoch < r.epoch:
		r.C.Replays++
		return nil, nil, fmt.Errorf("%w: epoch %d is older than the sender's %d", ErrReplay, m.Epoch, r.epoch)
	case !r.started || m.Epoch > r.epoch:
		// A sender run not seen before: what it sent earlier is unknown,
		// so its table is asked for in full (unless a join just did).
		r.started, r.epoch = true, m.Epoch
		r.done, r.hasDone = false, false
		clear(r.seen)
		r.highest, r.contig, r.acked = m.Seq, m.Seq, 0
		r.seen[int(m.Seq%W)] = m.Seq
		if !r.asked {
			r.C.Resyncs++
			reply = append(reply, Message{Type: MsgResync, SyncID: r.syncID, Epoch: m.Epoch})
		}
		r.asked = false
	case after(m.Seq, r.highest):
		gap := m.Seq - r.highest - 1
		if gap > 0 {
			r.C.Gaps++
			if gap >= W {
				r.C.Resyncs++
				reply = append(reply, Message{Type: MsgResync, SyncID: r.syncID, Epoch: r.epoch})
				clear(r.seen)
				r.contig = m.Seq // the resync covers what is before
			} else {
				r.C.Nacks++
				reply = append(reply, Message{Type: MsgNack, SyncID: r.syncID, Epoch: r.epoch, Seq: r.highest + 1, Last: m.Seq - 1})
			}
		}
		r.highest = m.Seq
		r.seen[int(m.Seq%W)] = m.Seq
	default: // at or before the highest: a resend filling a gap, or a duplicate
		if r.highest-m.Seq >= W {
			r.C.Replays++
			return nil, nil, fmt.Errorf("%w: message %d is more than %d behind %d", ErrReplay, m.Seq, W, r.highest)
		}
		if r.isSeen(m.Seq) || !after(m.Seq, r.contig) {
			r.C.Duplicates++
			r.reack = true
			return nil, nil, ErrDuplicate
		}
		r.seen[int(m.Seq%W)] = m.Seq
	}
	r.advance()
	r.C.Messages++
	r.C.Entries += uint64(len(m.Entries))
	return m.Entries, reply, nil
}

// Ack is the acknowledgement to send now, if anything arrived since the
// last one (call it on a timer, e.g. every 200 ms).
func (r *Receiver) Ack() (Message, bool) {
	if !r.started || (r.contig == r.acked && !r.reack) {
		return Message{}, false
	}
	r.acked, r.reack = r.contig, false
	return Message{Type: MsgAck, SyncID: r.syncID, Epoch: r.epoch, Seq: r.contig}, true
}

func (r *Receiver) advance() {
	for r.contig != r.highest && r.isSeen(r.contig+1) {
		r.contig++
	}
	if r.hasDone && !after(r.doneSeq, r.contig) {
		r.done = true
	}
}

// handleDone takes the end of a resync. Of the current run, it marks the
// receiver synced once every message up to it arrived (at once, or when
// the NACKed gaps are filled). Of a newer run (the data was all lost, or
// the table was empty), it starts that run with every message up to the
// done missing and asks for them.
func (r *Receiver) handleDone(m Message) []Message {
	if r.started && m.Epoch < r.epoch {
		r.C.Replays++
		return nil
	}
	var reply []Message
	if !r.started || m.Epoch > r.epoch {
		r.started, r.epoch, r.asked = true, m.Epoch, false
		clear(r.seen)
		r.highest, r.contig, r.acked = m.Seq, 0, 0
		if m.Seq != 0 {
			r.C.Gaps++
			if m.Seq >= uint32(len(r.seen)) {
				r.C.Resyncs++
				r.asked = true
				return []Message{{Type: MsgResync, SyncID: r.syncID, Epoch: m.Epoch}}
			}
			r.C.Nacks++
			reply = append(reply, Message{Type: MsgNack, SyncID: r.syncID, Epoch: m.Epoch, Seq: 1, Last: m.Seq})
		}
	} else if after(m.Seq, r.highest) {
		// The done overtook data messages: ask for them.
		r.C.Gaps++
		if m.Seq-r.highest >= uint32(len(r.seen)) {
			r.C.Resyncs++
			return []Message{{Type: MsgResync, SyncID: r.syncID, Epoch: r.epoch}}
		}
		r.C.Nacks++
		reply = append(reply, Message{Type: MsgNack, SyncID: r.syncID, Epoch: r.epoch, Seq: r.highest + 1, Last: m.Seq})
		r.highest = m.Seq
	}
	r.C.Dones++
	r.hasDone, r.doneSeq, r.done = true, m.Seq, false
	r.advance()
	return reply
}

// Synced reports whether the receiver holds the sender's table: the last
// resync ended and every message up to its end arrived, with no newer
// sender run or resync request since.
func (r *Receiver) Synced() bool { return r.done }

// Repair asks again for a gap that is still open (call it on the ACK
// timer): the NACK or the resend may have been lost too.
func (r *Receiver) Repair() (Message, bool) {
	if !r.started || r.contig == r.highest {
		return Message{}, false
	}
	if r.highest-r.contig > uint32(len(r.seen)) {
		r.C.Resyncs++
		clear(r.seen)
		r.contig = r.highest
		r.done, r.hasDone = false, false
		return Message{Type: MsgResync, SyncID: r.syncID, Epoch: r.epoch}, true
	}
	last := r.contig + 1 // the first hole, up to the next message that arrived
	for last != r.highest && !r.isSeen(last+1) {
		last++
	}
	r.C.Nacks++
	return Message{Type: MsgNack, SyncID: r.syncID, Epoch: r.epoch, Seq: r.contig + 1, Last: last}, true
}
