package health

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
)

// The SYN's IPv4 checksum verifies: summed with the pseudo-header and the
// checksum field in place, the ones' complement total is all ones.
func TestSYNSegmentChecksum(t *testing.T) {
	src, dst := netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.11")
	seg := synSegment(src, dst, 40000, 80, 0x01020304)
	if seg[13] != tcpSYN || binary.BigEndian.Uint32(seg[4:]) != 0x01020304 || binary.BigEndian.Uint16(seg[2:]) != 80 {
		t.Fatalf("segment % x", seg)
	}
	stored := binary.BigEndian.Uint16(seg[16:])
	binary.BigEndian.PutUint16(seg[16:], 0)
	if got := tcpChecksum4(src, dst, seg); got != stored {
		t.Fatalf("checksum %#04x, recomputed %#04x", stored, got)
	}
	// one changed bit of the source address must change the checksum
	if tcpChecksum4(netip.MustParseAddr("198.51.100.3"), dst, seg) == stored {
		t.Fatal("checksum does not cover the source address")
	}
}

// The socket filter passes segments to our held ports only, for IPv4 (which
// sees the IP header, of any length) and IPv6 (which starts at TCP).
func TestPortFilter(t *testing.T) {
	ports := []uint16{40001, 40007, 51234}
	for _, v6 := range []bool{false, true} {
		raw, err := portFilter(v6, ports)
		if err != nil {
			t.Fatal(err)
		}
		prog := make([]bpf.Instruction, len(raw))
		for i, r := range raw {
			prog[i] = r.Disassemble()
		}
		vm, err := bpf.NewVM(prog)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			dport   uint16
			ihl     int // IPv4 header words
			passing bool
		}{{40001, 5, true}, {51234, 5, true}, {40007, 6, true}, {80, 5, false}, {40002, 6, false}} {
			tcp := make([]byte, 20)
			binary.BigEndian.PutUint16(tcp[0:], 8080)
			binary.BigEndian.PutUint16(tcp[2:], tc.dport)
			pkt := tcp
			if !v6 {
				ip := make([]byte, 4*tc.ihl)
				ip[0] = 0x40 | byte(tc.ihl)
				pkt = append(ip, tcp...)
			}
			n, err := vm.Run(pkt)
			if err != nil {
				t.Fatal(err)
			}
			if (n > 0) != tc.passing {
				t.Errorf("v6=%v port %d ihl %d: filter returned %d", v6, tc.dport, tc.ihl, n)
			}
		}
	}
}

// Replies are matched by member, ports and acknowledged sequence number;
// anything else, garbage included, is ignored without harm.
func TestDeliverMatchesOnlyAnswers(t *testing.T) {
	s := &synSocket{waiting: map[probeKey]*probe{}}
	member := netip.MustParseAddr("198.51.100.11")
	k := probeKey{member: member, port: 80, ours: 40001}
	results := make(chan Result, 2)
	p := &probe{isn: 1000, done: func(r Result) { results <- r }}
	s.waiting[k] = p
	seg := func(sport, dport uint16, ack uint32, flags byte) []byte {
		b := make([]byte, 20)
		binary.BigEndian.PutUint16(b[0:], sport)
		binary.BigEndian.PutUint16(b[2:], dport)
		binary.BigEndian.PutUint32(b[8:], ack)
		b[13] = flags
		return b
	}
	from := &net.IPAddr{IP: member.AsSlice()}
	other := &net.IPAddr{IP: net.ParseIP("198.51.100.12")}
	for _, bad := range []struct {
		b    []byte
		from *net.IPAddr
	}{
		{seg(80, 40001, 1000, tcpSYN|tcpACK), from},  // wrong ack
		{seg(81, 40001, 1001, tcpSYN|tcpACK), from},  // wrong member port
		{seg(80, 40002, 1001, tcpSYN|tcpACK), from},  // wrong own port
		{seg(80, 40001, 1001, tcpSYN|tcpACK), other}, // wrong member
		{seg(80, 40001, 1001, tcpSYN), from},         // no ACK flag
		{seg(80, 40001, 1001, tcpACK), from},         // neither SYN nor RST
		{seg(80, 40001, 1001, tcpSYN|tcpACK)[:19], from},
		{nil, from},
	} {
		s.deliver(bad.b, bad.from)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		b := make([]byte, rng.IntN(60))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		s.deliver(b, from)
	}
	select {
	case r := <-results:
		t.Fatalf("a non-answer completed the probe (%+v)", r)
	default:
	}
	s.deliver(seg(80, 40001, 1001, tcpRST|tcpACK), from)
	if r := <-results; r.OK || r.Reason != "connection refused (syn)" {
		t.Fatalf("RST gave %+v", r)
	}
	// completed once: a second answer finds nothing waiting
	s.deliver(seg(80, 40001, 1001, tcpSYN|tcpACK), from)
	select {
	case r := <-results:
		t.Fatalf("probe completed twice (%+v)", r)
	default:
	}
}
