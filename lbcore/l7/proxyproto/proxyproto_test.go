package proxyproto

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"
)

func TestHeader(t *testing.T) {
	h, err := Header(netip.MustParseAddrPort("203.0.113.10:40000"), netip.MustParseAddrPort("203.0.113.100:80"))
	if err != nil {
		t.Fatal(err)
	}
	// signature, 0x21, 0x11, len 12, src, dst, sport 40000 (9c40), dport 80
	want := "0d0a0d0a000d0a515549540a" + "21" + "11" + "000c" + "cb00710a" + "cb007164" + "9c40" + "0050"
	if got := hex.EncodeToString(h); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	h6, err := Header(netip.MustParseAddrPort("[2001:db8:3::10]:1"), netip.MustParseAddrPort("[2001:db8:3::100]:443"))
	if err != nil || len(h6) != 16+36 || h6[13] != 0x21 || !bytes.Equal(h6[:12], Signature) {
		t.Fatalf("v6 header %x %v", h6, err)
	}
	if _, err := Header(netip.MustParseAddrPort("203.0.113.10:1"), netip.MustParseAddrPort("[2001:db8::1]:80")); err == nil {
		t.Fatal("mixed families accepted")
	}
}
