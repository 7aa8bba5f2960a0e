package packet

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"reflect"
	"testing"
)

var (
	src4 = netip.MustParseAddr("192.0.2.1")
	dst4 = GroupIPv4
	src6 = netip.MustParseAddr("fe80::1")
	dst6 = GroupIPv6
)

// A VRRPv2 advert as commonly captured: VRID 1, priority 100, 192.168.0.1,
// 1 s, no authentication, checksum 0xba52.
const knownV2 = "21016401 0001ba52 c0a80001 00000000 00000000"

func TestKnownV2Packet(t *testing.T) {
	b, err := hex.DecodeString(stripSpaces(knownV2))
	if err != nil {
		t.Fatal(err)
	}
	a, err := Parse(b, src4, dst4)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	want := &Advert{Version: 2, VRID: 1, Priority: 100, Interval: 100, Addrs: []netip.Addr{netip.MustParseAddr("192.168.0.1")}}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("got %+v, want %+v", a, want)
	}
	out, err := a.Marshal(src4, dst4)
	if err != nil || !bytes.Equal(out, b) {
		t.Errorf("marshal = %x, %v; want %x", out, err, b)
	}
}

func stripSpaces(s string) string { return string(bytes.ReplaceAll([]byte(s), []byte(" "), nil)) }

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name     string
		a        Advert
		src, dst netip.Addr
		wantLen  int
	}{
		{"v3 ipv4", Advert{Version: 3, VRID: 51, Priority: 150, Interval: 20, Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.100"), netip.MustParseAddr("198.51.100.1")}}, src4, dst4, 16},
		{"v3 ipv4 unicast", Advert{Version: 3, VRID: 51, Priority: 0, Interval: 4095, Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.100")}}, src4, netip.MustParseAddr("192.0.2.2"), 12},
		{"v3 ipv6", Advert{Version: 3, VRID: 7, Priority: 255, Interval: 1, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::100")}}, src6, dst6, 24},
		{"v2", Advert{Version: 2, VRID: 255, Priority: 1, Interval: 300, Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.100")}}, src4, dst4, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.a.Marshal(tc.src, tc.dst)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != tc.wantLen {
				t.Errorf("length %d, want %d", len(b), tc.wantLen)
			}
			got, err := Parse(b, tc.src, tc.dst)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.a) {
				t.Errorf("got %+v, want %+v", *got, tc.a)
			}
			if tc.a.Version == 3 {
				// the pseudo-header is part of the checksum: another
				// destination must not verify
				other := netip.MustParseAddr("192.0.2.9")
				if tc.src.Is6() {
					other = netip.MustParseAddr("fe80::9")
				}
				if _, err := Parse(b, tc.src, other); ReasonOf(err) != ReasonChecksum {
					t.Errorf("parse with another destination: %v, want a checksum error", err)
				}
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	good, err := (&Advert{Version: 3, VRID: 51, Priority: 100, Interval: 20, Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.100")}}).Marshal(src4, dst4)
	if err != nil {
		t.Fatal(err)
	}
	v2, err := (&Advert{Version: 2, VRID: 51, Priority: 100, Interval: 100, Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.100")}}).Marshal(src4, dst4)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(b []byte, f func([]byte) []byte) []byte { return f(append([]byte(nil), b...)) }
	// fix recomputes a v3 IPv4 checksum after a change, so only the intended
	// defect remains.
	fix := func(b []byte) []byte {
		b[6], b[7] = 0, 0
		s := checksum(b, pseudoHeader(src4, dst4, len(b)))
		b[6], b[7] = byte(s>>8), byte(s)
		return b
	}
	fix2 := func(b []byte) []byte {
		b[6], b[7] = 0, 0
		s := checksum(b, nil)
		b[6], b[7] = byte(s>>8), byte(s)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		src  netip.Addr
		want Reason
	}{
		{"empty", nil, src4, ReasonTruncated},
		{"short header", good[:7], src4, ReasonTruncated},
		{"truncated addresses", mod(good, func(b []byte) []byte { b[3] = 2; return fix(b) }), src4, ReasonTruncated},
		{"extra bytes", mod(good, func(b []byte) []byte { return fix(append(b, 0, 0, 0, 0)) }), src4, ReasonAddrCount},
		{"zero addresses", mod(good, func(b []byte) []byte { b[3] = 0; return fix(b[:8]) }), src4, ReasonAddrCount},
		{"version 4", mod(good, func(b []byte) []byte { b[0] = 0x41; return fix(b) }), src4, ReasonVersion},
		{"version 1", mod(good, func(b []byte) []byte { b[0] = 0x11; return fix(b) }), src4, ReasonVersion},
		{"type 2", mod(good, func(b []byte) []byte { b[0] = 0x32; return fix(b) }), src4, ReasonType},
		{"bad checksum", mod(good, func(b []byte) []byte { b[7] ^= 1; return b }), src4, ReasonChecksum},
		{"flipped priority", mod(good, func(b []byte) []byte { b[2] = 255; return b }), src4, ReasonChecksum},
		{"vrid 0", mod(good, func(b []byte) []byte { b[1] = 0; return fix(b) }), src4, ReasonType},
		{"v3 as ipv6", good, src6, ReasonTruncated},
		{"v2 auth", mod(v2, func(b []byte) []byte { b[4] = 1; return fix2(b) }), src4, ReasonAuth},
		{"v2 bad checksum", mod(v2, func(b []byte) []byte { b[9] ^= 0x40; return b }), src4, ReasonChecksum},
		{"v2 without auth data", mod(v2, func(b []byte) []byte { return fix2(b[:12]) }), src4, ReasonTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := dst4
			if tc.src.Is6() {
				dst = dst6
			}
			a, err := Parse(tc.b, tc.src, dst)
			if got := ReasonOf(err); got != tc.want {
				t.Errorf("Parse = %+v, %v; want reason %q", a, err, tc.want)
			}
		})
	}
	if _, err := Parse(good, src4, dst6); ReasonOf(err) != ReasonFamily {
		t.Errorf("mixed families: %v", err)
	}
}

func TestMarshalRejects(t *testing.T) {
	a4 := []netip.Addr{netip.MustParseAddr("203.0.113.100")}
	for _, tc := range []struct {
		name     string
		a        Advert
		src, dst netip.Addr
	}{
		{"no addrs", Advert{Version: 3, VRID: 1, Interval: 20}, src4, dst4},
		{"interval", Advert{Version: 3, VRID: 1, Interval: 4096, Addrs: a4}, src4, dst4},
		{"v2 interval", Advert{Version: 2, VRID: 1, Interval: 150, Addrs: a4}, src4, dst4},
		{"v2 ipv6", Advert{Version: 2, VRID: 1, Interval: 100, Addrs: []netip.Addr{netip.MustParseAddr("2001:db8::1")}}, src6, dst6},
		{"family", Advert{Version: 3, VRID: 1, Interval: 20, Addrs: a4}, src6, dst6},
		{"mixed header", Advert{Version: 3, VRID: 1, Interval: 20, Addrs: a4}, src4, dst6},
		{"vrid 0", Advert{Version: 3, VRID: 0, Interval: 20, Addrs: a4}, src4, dst4},
	} {
		if b, err := tc.a.Marshal(tc.src, tc.dst); err == nil {
			t.Errorf("%s: Marshal = %x, want an error", tc.name, b)
		}
	}
}

// FuzzParse feeds arbitrary payloads to Parse as IPv4 and IPv6. Parse must
// never panic, and whatever it accepts must survive a marshal/parse round
// trip unchanged. The seed corpus in testdata/fuzz/FuzzParse runs on every
// `go test`.
func FuzzParse(f *testing.F) {
	good, _ := (&Advert{Version: 3, VRID: 51, Priority: 100, Interval: 20, Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.100")}}).Marshal(src4, dst4)
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, hdr := range [][2]netip.Addr{{src4, dst4}, {src6, dst6}} {
			a, err := Parse(b, hdr[0], hdr[1])
			if err != nil {
				if ReasonOf(err) == "" {
					t.Fatalf("error without a reason: %v", err)
				}
				continue
			}
			out, err := a.Marshal(hdr[0], hdr[1])
			if err != nil {
				t.Fatalf("accepted %x but cannot marshal %+v: %v", b, a, err)
			}
			again, err := Parse(out, hdr[0], hdr[1])
			if err != nil || !reflect.DeepEqual(a, again) {
				t.Fatalf("round trip of %x: %+v, %v; want %+v", b, again, err, a)
			}
		}
	})
}
