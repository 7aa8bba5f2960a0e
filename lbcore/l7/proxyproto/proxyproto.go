// Package proxyproto writes PROXY protocol version 2 headers (the binary
// form of haproxy's spec): the first bytes the L7 proxy sends on a
// connection to a member that expects them, naming the client's address
// and the VIP it connected to.
package proxyproto

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Signature starts every v2 header.
var Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// Header returns the v2 PROXY header for a TCP connection from src to dst
// (both of one address family; IPv4-mapped IPv6 counts as IPv4).
func Header(src, dst netip.AddrPort) ([]byte, error) {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if !s.IsValid() || !d.IsValid() || s.Is4() != d.Is4() {
		return nil, fmt.Errorf("proxy protocol: addresses %s and %s are not of one family", src, dst)
	}
	b := append([]byte{}, Signature...)
	b = append(b, 0x21) // version 2, PROXY
	if s.Is4() {
		b = append(b, 0x11, 0, 12) // TCP over IPv4, 12 address bytes
		a, c := s.As4(), d.As4()
		b = append(append(b, a[:]...), c[:]...)
	} else {
		b = append(b, 0x21, 0, 36) // TCP over IPv6
		a, c := s.As16(), d.As16()
		b = append(append(b, a[:]...), c[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	return b, nil
}
