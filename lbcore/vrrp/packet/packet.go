// Package packet encodes and decodes VRRP advertisements: VRRPv3 (RFC 5798)
// for IPv4 and IPv6, with the checksum over the IP pseudo-header, and VRRPv2
// (RFC 3768, authentication type 0 only) for interoperation.
//
// Parse checks everything a VRRP packet carries in itself (version, type,
// length against the address count, checksum, authentication type). The TTL /
// hop limit of 255 and the VRID/address list are checked by the receiver,
// which knows them.
package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Protocol is the IP protocol number of VRRP.
const Protocol = 112

// TTL is the only TTL / hop limit a VRRP packet may be sent and received with.
const TTL = 255

// Multicast groups adverts are sent to by default.
var (
	GroupIPv4 = netip.MustParseAddr("224.0.0.18")
	GroupIPv6 = netip.MustParseAddr("ff02::12")
)

const (
	typeAdvertisement = 1
	headerLen         = 8
	authLenV2         = 8
	maxIntervalV3     = 0x0fff // centiseconds, 12 bits
)

// Advert is one VRRP advertisement.
type Advert struct {
	Version  int   // 2 or 3
	VRID     uint8 // 1..255
	Priority uint8 // 0 = master resigns, 255 = address owner
	// Interval is the advertisement interval in centiseconds. VRRPv2 carries
	// whole seconds: Parse converts to centiseconds, Marshal requires a
	// multiple of 100.
	Interval int
	// AuthType is VRRPv2's authentication type (only 0, none, is accepted).
	AuthType uint8
	// Addrs are the virtual addresses; all of the family of the IP header.
	Addrs []netip.Addr
}

// Reason classifies why a packet was rejected, for drop counters.
type Reason string

// Reasons a packet is rejected.
const (
	ReasonTruncated Reason = "truncated"
	ReasonVersion   Reason = "version"
	ReasonType      Reason = "type"
	ReasonChecksum  Reason = "checksum"
	ReasonAddrCount Reason = "address-count"
	ReasonAuth      Reason = "auth"
	ReasonFamily    Reason = "family"
)

// Error is a rejected packet.
type Error struct {
	Reason Reason
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("vrrp packet: %s: %s", e.Reason, e.Msg) }

func reject(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the reason of a Parse error ("" if err is not one).
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Marshal encodes the advert as sent from src to dst (the addresses of the
// IP header, needed for the VRRPv3 checksum).
func (a *Advert) Marshal(src, dst netip.Addr) ([]byte, error) {
	v6 := src.Is6() && !src.Is4In6()
	if v6 != (dst.Is6() && !dst.Is4In6()) {
		return nil, fmt.Errorf("vrrp marshal: source %s and destination %s differ in family", src, dst)
	}
	alen := 4
	if v6 {
		alen = 16
	}
	if len(a.Addrs) == 0 || len(a.Addrs) > 255 {
		return nil, fmt.Errorf("vrrp marshal: %d addresses (1..255)", len(a.Addrs))
	}
	n := headerLen + alen*len(a.Addrs)
	switch a.Version {
	case 3:
		if a.Interval < 1 || a.Interval > maxIntervalV3 {
			return nil, fmt.Errorf("vrrp marshal: interval %d cs out of range (1..%d)", a.Interval, maxIntervalV3)
		}
	case 2:
		if v6 {
			return nil, errors.New("vrrp marshal: VRRPv2 is IPv4 only")
		}
		if a.Interval < 100 || a.Interval > 25500 || a.Interval%100 != 0 {
			return nil, fmt.Errorf("vrrp marshal: VRRPv2 interval %d cs is not whole seconds (1..255 s)", a.Interval)
		}
		n += authLenV2
	default:
		return nil, fmt.Errorf("vrrp marshal: version %d (2 or 3)", a.Version)
	}
	if a.VRID == 0 {
		return nil, errors.New("vrrp marshal: VRID 0")
	}
	b := make([]byte, n)
	b[0] = byte(a.Version)<<4 | typeAdvertisement
	b[1] = a.VRID
	b[2] = a.Priority
	b[3] = byte(len(a.Addrs))
	if a.Version == 3 {
		binary.BigEndian.PutUint16(b[4:], uint16(a.Interval))
	} else {
		b[4] = a.AuthType
		b[5] = byte(a.Interval / 100)
	}
	off := headerLen
	for _, ad := range a.Addrs {
		ad = ad.Unmap()
		if ad.Is4() == v6 {
			return nil, fmt.Errorf("vrrp marshal: address %s is not of the header's family", ad)
		}
		copy(b[off:], ad.AsSlice())
		off += alen
	}
	var sum uint16
	if a.Version == 3 {
		sum = checksum(b, pseudoHeader(src, dst, len(b)))
	} else {
		sum = checksum(b, nil)
	}
	binary.BigEndian.PutUint16(b[6:], sum)
	return b, nil
}

// Parse decodes the VRRP payload b of an IP packet from src to dst.
func Parse(b []byte, src, dst netip.Addr) (*Advert, error) {
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, reject(ReasonFamily, "source %s and destination %s are not one family", src, dst)
	}
	v6 := src.Is6()
	if len(b) < headerLen {
		return nil, reject(ReasonTruncated, "%d bytes, the header alone is %d", len(b), headerLen)
	}
	a := &Advert{Version: int(b[0] >> 4), VRID: b[1], Priority: b[2]}
	if t := b[0] & 0x0f; t != typeAdvertisement {
		return nil, reject(ReasonType, "type %d (only 1, advertisement, exists)", t)
	}
	alen := 4
	if v6 {
		alen = 16
	}
	count := int(b[3])
	want := headerLen + alen*count
	switch a.Version {
	case 3:
		a.Interval = int(binary.BigEndian.Uint16(b[4:]) & maxIntervalV3)
	case 2:
		if v6 {
			return nil, reject(ReasonVersion, "VRRPv2 over IPv6")
		}
		a.AuthType = b[4]
		a.Interval = int(b[5]) * 100
		want += authLenV2
	default:
		return nil, reject(ReasonVersion, "version %d (2 or 3)", a.Version)
	}
	if count == 0 {
		return nil, reject(ReasonAddrCount, "no addresses")
	}
	if len(b) < want {
		return nil, reject(ReasonTruncated, "%d bytes, %d addresses need %d", len(b), count, want)
	}
	if len(b) > want {
		return nil, reject(ReasonAddrCount, "%d bytes, but %d addresses make %d", len(b), count, want)
	}
	var sum uint16
	if a.Version == 3 {
		sum = checksum(b, pseudoHeader(src, dst, len(b)))
	} else {
		sum = checksum(b, nil)
	}
	if sum != 0 {
		return nil, reject(ReasonChecksum, "checksum 0x%04x does not verify", binary.BigEndian.Uint16(b[6:]))
	}
	if a.Version == 2 && a.AuthType != 0 {
		return nil, reject(ReasonAuth, "authentication type %d (only 0, none, is supported)", a.AuthType)
	}
	if a.VRID == 0 {
		return nil, reject(ReasonType, "VRID 0")
	}
	if a.Interval == 0 {
		return nil, reject(ReasonType, "advert interval 0")
	}
	a.Addrs = make([]netip.Addr, count)
	for i := range count {
		off := headerLen + i*alen
		if v6 {
			a.Addrs[i] = netip.AddrFrom16([16]byte(b[off : off+16]))
		} else {
			a.Addrs[i] = netip.AddrFrom4([4]byte(b[off : off+4]))
		}
	}
	return a, nil
}

// pseudoHeader builds the IPv4 or IPv6 pseudo-header for the VRRPv3 checksum.
func pseudoHeader(src, dst netip.Addr, n int) []byte {
	src, dst = src.Unmap(), dst.Unmap()
	if src.Is4() {
		p := make([]byte, 12)
		s, d := src.As4(), dst.As4()
		copy(p[0:], s[:])
		copy(p[4:], d[:])
		p[9] = Protocol
		binary.BigEndian.PutUint16(p[10:], uint16(n))
		return p
	}
	p := make([]byte, 40)
	s, d := src.As16(), dst.As16()
	copy(p[0:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint32(p[32:], uint32(n))
	p[39] = Protocol
	return p
}

// checksum is the Internet checksum (RFC 1071) over pseudo then b. Computing
// it over data that includes a correct checksum gives 0.
func checksum(b, pseudo []byte) uint16 {
	var s uint32
	add := func(d []byte) {
		for len(d) >= 2 {
			s += uint32(d[0])<<8 | uint32(d[1])
			d = d[2:]
		}
		if len(d) == 1 {
			s += uint32(d[0]) << 8
		}
	}
	add(pseudo)
	add(b)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
