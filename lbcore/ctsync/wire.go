// Package ctsync is the conntrack sync protocol of issue 13 item 2: the
// conntrack entries IPVS sync does not carry (the nftables SNAT behind
// FullNAT and SNAT) go from the master to the backup over the Failover
// bond in batches, reliably, in the manner of conntrackd's FTFW mode:
// numbered messages, the receiver acknowledges and asks for what it
// missed (NACK), the sender keeps a bounded window of sent messages to
// resend from, and a gap it can no longer fill, a peer that (re)joins or
// a restarted sender turns into a bulk resync of the whole table.
//
// This file is the wire format; session.go the delivery logic (no
// sockets, no clock of its own, so both are tested exactly).
package ctsync

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Message types.
type MsgType uint8

const (
	MsgData   MsgType = 1 // entries, numbered
	MsgAck    MsgType = 2 // everything up to Seq arrived
	MsgNack   MsgType = 3 // resend Seq..Last
	MsgResync MsgType = 4 // send the whole table (receiver (re)joined, or a gap too old)
	// MsgDone ends a resync: the whole table is in the messages up to
	// Seq. A receiver that has them all holds the sender's table (a
	// returning master may then preempt, issue 13 item 4).
	MsgDone MsgType = 5
)

func (t MsgType) String() string {
	switch t {
	case MsgData:
		return "data"
	case MsgAck:
		return "ack"
	case MsgNack:
		return "nack"
	case MsgResync:
		return "resync"
	case MsgDone:
		return "done"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Op is what happened to an entry.
type Op uint8

const (
	OpUpdate Op = 1 // new or changed: install or refresh
	OpDelete Op = 2 // gone on the master
)

// Tuple is one direction of a conntrack entry (for ICMP the ports carry
// the id and type/code as the kernel's tuple does).
type Tuple struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

// Entry is one conntrack entry as synced. The reply tuple carries the NAT
// translation (an SNAT'd flow's reply goes to the pool address).
type Entry struct {
	Op       Op
	Proto    uint8 // IPPROTO_TCP, _UDP, _ICMP, ...
	TCPState uint8 // TCP_CONNTRACK_* (0 for other protocols)
	Status   uint32
	Timeout  uint32 // seconds left on the master: expiry follows the kernel's
	Mark     uint32
	Zone     uint16
	Orig     Tuple
	Reply    Tuple
}

// Message is one datagram.
type Message struct {
	Type   MsgType
	SyncID uint8
	// Epoch identifies the sender's run (its start time): a newer epoch is
	// a restarted sender, an older one a replay.
	Epoch uint64
	Seq   uint32 // data: this message's number; ack: last received; nack: first missing
	Last  uint32 // nack: last missing
	// Entries of a data message.
	Entries []Entry
}

// Wire layout (network byte order):
//
//	magic 'F','C' | version u8 | type u8 | sync id u8 | reserved u8 | count u16
//	epoch u64 | seq u32 | last u32                                    (24 bytes)
//	entries: op u8 | family u8 (4, 6) | proto u8 | tcp state u8 | status u32 |
//	         timeout u32 | mark u32 | zone u16 | reserved u16 |
//	         orig src, orig dst, reply src, reply dst (4 or 16 bytes each) |
//	         orig sport, orig dport, reply sport, reply dport u16
const (
	Version   = 1
	headerLen = 24
	entryHead = 20
	entryLen4 = entryHead + 4*4 + 8
	entryLen6 = entryHead + 4*16 + 8
	// MaxDatagram keeps a message in one Ethernet frame (1500 MTU, IPv4
	// and UDP headers): 31 IPv4 or 15 IPv6 entries.
	MaxDatagram = 1472
	// MaxEntries bounds a parsed message whatever its size.
	MaxEntries = (MaxDatagram - headerLen) / entryLen4
)

var magic = [2]byte{'F', 'C'}

func entryLen(e Entry) int {
	if e.Orig.Src.Is4() {
		return entryLen4
	}
	return entryLen6
}

// validEntry checks that an entry can be encoded: one family throughout.
func validEntry(e Entry) error {
	if e.Op != OpUpdate && e.Op != OpDelete {
		return fmt.Errorf("entry op %d is neither update nor delete", e.Op)
	}
	as := []netip.Addr{e.Orig.Src, e.Orig.Dst, e.Reply.Src, e.Reply.Dst}
	v4 := as[0].Is4()
	for _, a := range as {
		if !a.IsValid() || a.Is4In6() || a.Is4() != v4 || a.Zone() != "" {
			return fmt.Errorf("entry %s: addresses must be all IPv4 or all IPv6 (no zones)", e.Orig.Src)
		}
	}
	return nil
}

// Append encodes m after b. Data messages must fit MaxDatagram (Batch
// makes them so).
func (m Message) Append(b []byte) ([]byte, error) {
	size := headerLen
	for _, e := range m.Entries {
		if err := validEntry(e); err != nil {
			return nil, err
		}
		size += entryLen(e)
	}
	if size > MaxDatagram {
		return nil, fmt.Errorf("conntrack sync message of %d bytes is over %d", size, MaxDatagram)
	}
	if m.Type != MsgData && len(m.Entries) > 0 {
		return nil, fmt.Errorf("%s message with entries", m.Type)
	}
	b = append(b, magic[0], magic[1], Version, byte(m.Type), m.SyncID, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Entries)))
	b = binary.BigEndian.AppendUint64(b, m.Epoch)
	b = binary.BigEndian.AppendUint32(b, m.Seq)
	b = binary.BigEndian.AppendUint32(b, m.Last)
	for _, e := range m.Entries {
		fam := byte(6)
		if e.Orig.Src.Is4() {
			fam = 4
		}
		b = append(b, byte(e.Op), fam, e.Proto, e.TCPState)
		b = binary.BigEndian.AppendUint32(b, e.Status)
		b = binary.BigEndian.AppendUint32(b, e.Timeout)
		b = binary.BigEndian.AppendUint32(b, e.Mark)
		b = binary.BigEndian.AppendUint16(b, e.Zone)
		b = append(b, 0, 0)
		for _, a := range []netip.Addr{e.Orig.Src, e.Orig.Dst, e.Reply.Src, e.Reply.Dst} {
			b = append(b, a.AsSlice()...)
		}
		for _, p := range []uint16{e.Orig.SrcPort, e.Orig.DstPort, e.Reply.SrcPort, e.Reply.DstPort} {
			b = binary.BigEndian.AppendUint16(b, p)
		}
	}
	return b, nil
}

// Parse decodes one datagram. It never panics; anything malformed is an
// error saying what (the caller drops and counts it).
func Parse(b []byte) (Message, error) {
	var m Message
	if len(b) < headerLen {
		return m, fmt.Errorf("conntrack sync: %d bytes, shorter than the %d-byte header", len(b), headerLen)
	}
	if b[0] != magic[0] || b[1] != magic[1] {
		return m, fmt.Errorf("conntrack sync: bad magic %x", b[:2])
	}
	if b[2] != Version {
		return m, fmt.Errorf("conntrack sync: version %d, want %d", b[2], Version)
	}
	m.Type, m.SyncID = MsgType(b[3]), b[4]
	if m.Type < MsgData || m.Type > MsgDone {
		return Message{}, fmt.Errorf("conntrack sync: unknown message type %d", b[3])
	}
	n := int(binary.BigEndian.Uint16(b[6:]))
	m.Epoch = binary.BigEndian.Uint64(b[8:])
	m.Seq = binary.BigEndian.Uint32(b[16:])
	m.Last = binary.BigEndian.Uint32(b[20:])
	if m.Type != MsgData && n != 0 {
		return Message{}, fmt.Errorf("conntrack sync: %s message claims %d entries", m.Type, n)
	}
	if n > MaxEntries {
		return Message{}, fmt.Errorf("conntrack sync: %d entries, more than %d", n, MaxEntries)
	}
	rest := b[headerLen:]
	m.Entries = make([]Entry, 0, n)
	for i := 0; i < n; i++ {
		if len(rest) < entryHead {
			return Message{}, fmt.Errorf("conntrack sync: entry %d truncated", i)
		}
		var e Entry
		e.Op, e.Proto, e.TCPState = Op(rest[0]), rest[2], rest[3]
		if e.Op != OpUpdate && e.Op != OpDelete {
			return Message{}, fmt.Errorf("conntrack sync: entry %d: op %d", i, rest[0])
		}
		alen := 0
		switch rest[1] {
		case 4:
			alen = 4
		case 6:
			alen = 16
		default:
			return Message{}, fmt.Errorf("conntrack sync: entry %d: family %d", i, rest[1])
		}
		e.Status = binary.BigEndian.Uint32(rest[4:])
		e.Timeout = binary.BigEndian.Uint32(rest[8:])
		e.Mark = binary.BigEndian.Uint32(rest[12:])
		e.Zone = binary.BigEndian.Uint16(rest[16:])
		need := entryHead + 4*alen + 8
		if len(rest) < need {
			return Message{}, fmt.Errorf("conntrack sync: entry %d truncated", i)
		}
		p := rest[entryHead:]
		var addrs [4]netip.Addr
		for j := range addrs {
			addrs[j], _ = netip.AddrFromSlice(p[:alen])
			p = p[alen:]
		}
		e.Orig.Src, e.Orig.Dst, e.Reply.Src, e.Reply.Dst = addrs[0], addrs[1], addrs[2], addrs[3]
		e.Orig.SrcPort = binary.BigEndian.Uint16(p[0:])
		e.Orig.DstPort = binary.BigEndian.Uint16(p[2:])
		e.Reply.SrcPort = binary.BigEndian.Uint16(p[4:])
		e.Reply.DstPort = binary.BigEndian.Uint16(p[6:])
		if err := validEntry(e); err != nil { // e.g. an IPv4-mapped address in an IPv6 entry
			return Message{}, fmt.Errorf("conntrack sync: entry %d: %w", i, err)
		}
		m.Entries = append(m.Entries, e)
		rest = rest[need:]
	}
	if len(rest) != 0 {
		return Message{}, fmt.Errorf("conntrack sync: %d bytes after the last entry", len(rest))
	}
	return m, nil
}
