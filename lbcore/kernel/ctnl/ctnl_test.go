package ctnl

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/ctsync"
)

// The create message's byte layout, from the kernel's ctnetlink
// attributes (host-order headers, big-endian values).
func TestNewMessageByteLayout(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("expected bytes are written for a little-endian host")
	}
	e := ctsync.Entry{Op: ctsync.OpUpdate, Proto: 17, Status: StatusSrcNAT | StatusSeenReply | 0x100, Timeout: 30,
		Orig:  ctsync.Tuple{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: 1000, DstPort: 53},
		Reply: ctsync.Tuple{Src: netip.MustParseAddr("10.0.0.2"), Dst: netip.MustParseAddr("10.0.0.9"), SrcPort: 53, DstPort: 2000}}
	got, err := NewMessage(e, true)
	if err != nil {
		t.Fatal(err)
	}
	tuple := func(typ byte, s, d [4]byte, sp, dp uint16) []byte {
		return append([]byte{52, 0, typ, 0x80,
			20, 0, 1, 0x80, 8, 0, 1, 0, s[0], s[1], s[2], s[3], 8, 0, 2, 0, d[0], d[1], d[2], d[3],
			28, 0, 2, 0x80, 5, 0, 1, 0, 17, 0, 0, 0, 6, 0, 2, 0, byte(sp >> 8), byte(sp), 0, 0},
			6, 0, 3, 0, byte(dp>>8), byte(dp), 0, 0)
	}
	want := []byte{2, 0, 0, 0}
	want = append(want, tuple(1, [4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 1000, 53)...)
	// the untranslated reply: the kernel derives 10.0.0.9:2000 from CTA_NAT_SRC
	want = append(want, tuple(2, [4]byte{10, 0, 0, 2}, [4]byte{10, 0, 0, 1}, 53, 1000)...)
	want = append(want, 40, 0, 6, 0x80, // CTA_NAT_SRC
		8, 0, 1, 0, 10, 0, 0, 9, 8, 0, 2, 0, 10, 0, 0, 9, // min = max = 10.0.0.9
		20, 0, 3, 0x80, 6, 0, 1, 0, 0x07, 0xd0, 0, 0, 6, 0, 2, 0, 0x07, 0xd0, 0, 0) // port 2000
	want = append(want, 8, 0, 7, 0, 0, 0, 0, 30)  // CTA_TIMEOUT 30
	want = append(want, 8, 0, 3, 0, 0, 0, 0, 0xa) // CTA_STATUS: CONFIRMED|SEEN_REPLY (NAT bits come from the binding)
	if !bytes.Equal(got, want) {
		t.Fatalf("NEW\n got % x\nwant % x", got, want)
	}
	upd, _ := NewMessage(e, false)
	if bytes.Contains(upd, []byte{40, 0, 6, 0x80}) {
		t.Error("an update carries the NAT binding (the kernel refuses NAT changes)")
	}
	if !bytes.Contains(upd, tuple(2, [4]byte{10, 0, 0, 2}, [4]byte{10, 0, 0, 9}, 53, 2000)) {
		t.Error("an update does not carry the translated reply tuple")
	}
	if _, err := NewMessage(ctsync.Entry{Proto: 1, Orig: e.Orig, Reply: e.Reply}, true); err == nil {
		t.Error("ICMP entry encoded")
	}
}

// The reply tuple a created entry starts from: SNAT undone, DNAT undone,
// and an IPVS-masqueraded (FullNAT) reply keeps its member source, so the
// backup's entry matches the member's replies to the local address.
func TestUntranslated(t *testing.T) {
	a := netip.MustParseAddr
	client, vip, member, local := a("203.0.113.10"), a("203.0.113.101"), a("198.51.100.11"), a("198.51.100.201")
	fullnat := ctsync.Entry{Proto: 6, Status: StatusSrcNAT | StatusSeenReply,
		Orig:  ctsync.Tuple{Src: client, Dst: vip, SrcPort: 40000, DstPort: 80},
		Reply: ctsync.Tuple{Src: member, Dst: local, SrcPort: 80, DstPort: 61000}}
	if got, want := Untranslated(fullnat), (ctsync.Tuple{Src: member, Dst: client, SrcPort: 80, DstPort: 40000}); got != want {
		t.Errorf("fullnat: %+v, want %+v", got, want)
	}
	dnat := ctsync.Entry{Proto: 6, Status: StatusDstNAT,
		Orig:  ctsync.Tuple{Src: client, Dst: vip, SrcPort: 40000, DstPort: 80},
		Reply: ctsync.Tuple{Src: member, Dst: client, SrcPort: 8080, DstPort: 40000}}
	if got, want := Untranslated(dnat), (ctsync.Tuple{Src: vip, Dst: client, SrcPort: 80, DstPort: 40000}); got != want {
		t.Errorf("dnat: %+v, want %+v", got, want)
	}
	plain := dnat
	plain.Status = 0
	if got := Untranslated(plain); got != plain.Reply {
		t.Errorf("no NAT: %+v, want the reply unchanged", got)
	}
}
