package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The typed values below parse themselves while the document is decoded, so
// consumers never parse strings. A value that does not parse becomes an
// error naming its field path and line (see Parse); the document is then
// rejected before validation.

// decodeError reports a value that does not parse, at the node's position
// (Parse turns the position into the field path).
func decodeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d column %d: %s", n.Line, n.Column, fmt.Sprintf(format, args...))}}
}

// scalar returns the text of a scalar node.
func scalar(n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", decodeError(n, "%s must be a single value", what)
	}
	return strings.TrimSpace(n.Value), nil
}

// decodeScalar reads a scalar node into out with parse; a parse error is
// reported at the node.
func decodeScalar[T any](n *yaml.Node, what string, out *T, parse func(string) (T, error)) error {
	s, err := scalar(n, what)
	if err != nil {
		return err
	}
	v, err := parse(s)
	if err != nil {
		return decodeError(n, "%v", err)
	}
	*out = v
	return nil
}

// Duration is a time.Duration written with a unit: "5s", "500ms", "1m30s".
// A bare 0 means zero; any other bare number is rejected, so "5" can never
// silently mean seconds in one section and nanoseconds in another.
type Duration time.Duration

// UnmarshalYAML reads a duration with a unit.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "a duration", d, func(s string) (Duration, error) {
		v, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration with a unit (write 5s, 500ms or 1m30s)", s)
		}
		return Duration(v), nil
	})
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// Port is a TCP/UDP port; 0 means "not set" where a field allows it.
type Port uint16

// UnmarshalYAML reads 0..65535.
func (p *Port) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "a port", p, func(s string) (Port, error) {
		v, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("%q is not a port (1..65535, or 0 for unset)", s)
		}
		return Port(v), nil
	})
}

// PortRange is one port (From == To) or an inclusive range.
type PortRange struct{ From, To uint16 }

// UnmarshalYAML reads "80" or "8000-8010".
func (r *PortRange) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "a port", r, ParsePortRange)
}

// ParsePortRange parses "80" or "8000-8010".
func ParsePortRange(s string) (PortRange, error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	from, err := parsePort(a)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{from, from}, nil
	}
	to, err := parsePort(b)
	if err != nil {
		return PortRange{}, err
	}
	if to < from {
		return PortRange{}, fmt.Errorf("range %q ends before it starts", s)
	}
	return PortRange{from, to}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (1..65535)", s)
	}
	return uint16(n), nil
}

// IsRange reports whether the range covers more than one port.
func (r PortRange) IsRange() bool { return r.From != r.To }

// Overlaps reports whether two ranges share a port.
func (r PortRange) Overlaps(o PortRange) bool { return r.From <= o.To && o.From <= r.To }

func (r PortRange) String() string {
	if r.From == r.To {
		return strconv.Itoa(int(r.From))
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// IP is an IP address without a zone.
type IP struct{ netip.Addr }

// UnmarshalYAML reads an IPv4 or IPv6 address.
func (a *IP) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "an IP address", a, func(s string) (IP, error) {
		v, err := netip.ParseAddr(s)
		if err != nil || v.Zone() != "" {
			return IP{}, fmt.Errorf("%q is not an IP address", s)
		}
		return IP{v}, nil
	})
}

// Prefix is an address with its prefix length ("198.51.100.2/24"); the
// address keeps its host bits.
type Prefix struct{ netip.Prefix }

// UnmarshalYAML reads CIDR notation.
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "an address in CIDR form", p, func(s string) (Prefix, error) {
		v, err := netip.ParsePrefix(s)
		if err != nil {
			return Prefix{}, fmt.Errorf("%q is not an address in CIDR form (e.g. 198.51.100.2/24)", s)
		}
		return Prefix{v}, nil
	})
}

// HostPrefix is a prefix that may be written as a bare address, which means
// the host route (/32 or /128): the floating addresses of VRRP instances.
type HostPrefix struct{ netip.Prefix }

// UnmarshalYAML reads "a.b.c.d/nn", "a.b.c.d" or the IPv6 forms.
func (p *HostPrefix) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "an address", &p.Prefix, ParseHostPrefix)
}

// ParseHostPrefix reads "a.b.c.d/nn", "a.b.c.d" (→ /32) or the IPv6 forms.
func ParseHostPrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// RoutePrefix is a route destination: CIDR or "default" (0.0.0.0/0).
type RoutePrefix struct{ netip.Prefix }

// UnmarshalYAML reads CIDR notation or "default".
func (p *RoutePrefix) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "a route destination", &p.Prefix, func(s string) (netip.Prefix, error) {
		if s == "default" {
			return netip.MustParsePrefix("0.0.0.0/0"), nil
		}
		v, err := netip.ParsePrefix(s)
		if err != nil {
			return v, fmt.Errorf("%q is not a CIDR prefix or \"default\"", s)
		}
		return v, nil
	})
}

// AddrPort is address:port with a port other than 0.
type AddrPort struct{ netip.AddrPort }

// UnmarshalYAML reads "198.51.100.9:80" or "[2001:db8::9]:80".
func (a *AddrPort) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "address:port", &a.AddrPort, func(s string) (netip.AddrPort, error) {
		v, err := netip.ParseAddrPort(s)
		if err != nil || v.Port() == 0 {
			return v, fmt.Errorf("%q is not address:port", s)
		}
		return v, nil
	})
}

// AddrRange is one address or an inclusive range of IPv4 addresses.
type AddrRange struct{ First, Last netip.Addr }

// UnmarshalYAML reads "a.b.c.d", "a.b.c.d-a.b.c.e" or "a.b.c.d-e".
func (r *AddrRange) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "an address range", r, ParseAddressRange)
}

// ParseAddressRange parses one address or a range of IPv4 addresses
// ("a.b.c.d-a.b.c.e" or "a.b.c.d-e").
func ParseAddressRange(s string) (AddrRange, error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	first, err := netip.ParseAddr(a)
	if err != nil {
		return AddrRange{}, fmt.Errorf("%q is not an address or address range", s)
	}
	if !isRange {
		return AddrRange{first, first}, nil
	}
	if !first.Is4() {
		return AddrRange{}, fmt.Errorf("%q: ranges are IPv4 only", s)
	}
	var last netip.Addr
	if !strings.Contains(b, ".") {
		n, err := strconv.Atoi(b)
		if err != nil || n < 0 || n > 255 {
			return AddrRange{}, fmt.Errorf("%q is not an address range", s)
		}
		o := first.As4()
		o[3] = byte(n)
		last = netip.AddrFrom4(o)
	} else if last, err = netip.ParseAddr(b); err != nil || !last.Is4() {
		return AddrRange{}, fmt.Errorf("%q is not an address range", s)
	}
	if last.Less(first) {
		return AddrRange{}, fmt.Errorf("range %q ends before it starts", s)
	}
	return AddrRange{first, last}, nil
}

func (r AddrRange) String() string {
	if r.First == r.Last {
		return r.First.String()
	}
	return r.First.String() + "-" + r.Last.String()
}

// Netmask groups persistent clients: a prefix length, written "24", "/24"
// or (IPv4) "255.255.255.0". The zero value means unset: every client
// address on its own.
type Netmask struct {
	Bits   int
	Set    bool
	Dotted bool // written as a dotted IPv4 mask
}

// UnmarshalYAML reads a prefix length or a dotted IPv4 netmask.
func (m *Netmask) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "a netmask", m, parseNetmask)
}

func parseNetmask(s string) (Netmask, error) {
	if s == "" {
		return Netmask{}, nil
	}
	if n, err := strconv.Atoi(strings.TrimPrefix(s, "/")); err == nil {
		if n < 0 || n > 128 {
			return Netmask{}, fmt.Errorf("prefix length %d is out of range (0..128)", n)
		}
		return Netmask{Bits: n, Set: true}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return Netmask{}, fmt.Errorf("%q is not a netmask (255.255.255.0 or /24)", s)
	}
	o := a.As4()
	m := uint32(o[0])<<24 | uint32(o[1])<<16 | uint32(o[2])<<8 | uint32(o[3])
	bits := 0
	for m&0x80000000 != 0 {
		bits++
		m <<= 1
	}
	if m != 0 {
		return Netmask{}, fmt.Errorf("%q is not a contiguous netmask", s)
	}
	return Netmask{Bits: bits, Set: true, Dotted: true}, nil
}

// Len is the prefix length for an address family (the full length when unset).
func (m Netmask) Len(v6 bool) int {
	switch {
	case m.Set:
		return m.Bits
	case v6:
		return 128
	}
	return 32
}

// check reports a netmask that does not fit the family.
func (m Netmask) check(v6 bool) error {
	switch {
	case !m.Set:
		return nil
	case v6 && m.Dotted:
		return fmt.Errorf("give an IPv6 netmask as a prefix length")
	case !v6 && m.Bits > 32:
		return fmt.Errorf("prefix length %d is out of range (0..32)", m.Bits)
	}
	return nil
}

// enum reads a scalar into a string-kinded value that must be one of allowed.
func enum[T ~string](n *yaml.Node, out *T, what string, allowed []T) error {
	return decodeScalar(n, what, out, func(s string) (T, error) {
		if v := T(strings.ToLower(s)); slices.Contains(allowed, v) {
			return v, nil
		}
		return "", fmt.Errorf("unknown %s %q (one of %s)", what, s, strings.Join(strings.Fields(fmt.Sprint(allowed)[1:len(fmt.Sprint(allowed))-1]), ", "))
	})
}

// Protocol is a virtual server's transport protocol.
type Protocol string

// Protocols.
const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// UnmarshalYAML accepts tcp or udp.
func (p *Protocol) UnmarshalYAML(n *yaml.Node) error {
	return enum(n, p, "protocol", []Protocol{TCP, UDP})
}

// Mode is a virtual server's forwarding mode.
type Mode string

// Forwarding modes of a virtual server.
const (
	ModeNAT     Mode = "nat"     // IPVS masquerade; members route back through the appliance
	ModeFullNAT Mode = "fullnat" // IPVS masquerade + SNAT to a local address pool
	ModeDR      Mode = "dr"      // direct routing; members hold the VIP on lo and answer clients directly
	ModeTUN     Mode = "tun"     // IP-in-IP tunnel; members decapsulate and answer clients directly
	ModeHTTP    Mode = "http"    // L7: the L7 proxy daemon (l7d) terminates HTTP on the VIP
	ModeHTTPS   Mode = "https"   // L7: l7d terminates TLS (certificates by SNI) and HTTP
)

// Modes lists the accepted virtual server modes.
var Modes = []Mode{ModeNAT, ModeFullNAT, ModeDR, ModeTUN, ModeHTTP, ModeHTTPS}

// L7 reports whether the mode is served by the L7 proxy rather than IPVS.
func (m Mode) L7() bool { return m == ModeHTTP || m == ModeHTTPS }

// UnmarshalYAML accepts one of Modes.
func (m *Mode) UnmarshalYAML(n *yaml.Node) error { return enum(n, m, "mode", Modes) }

// Scheduler is an IPVS scheduler name.
type Scheduler string

// Schedulers lists the mainline IPVS schedulers.
var Schedulers = []Scheduler{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

// UnmarshalYAML accepts one of Schedulers.
func (s *Scheduler) UnmarshalYAML(n *yaml.Node) error { return enum(n, s, "scheduler", Schedulers) }

// Percent is a share from 0 to 100, written "50%" (or 50).
type Percent int

// UnmarshalYAML reads a percentage.
func (p *Percent) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "a percentage", p, func(s string) (Percent, error) {
		v, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%")))
		if err != nil || v < 0 || v > 100 {
			return 0, fmt.Errorf("%q is not a percentage from 0%% to 100%% (write 50%%)", s)
		}
		return Percent(v), nil
	})
}

func (p Percent) String() string { return strconv.Itoa(int(p)) + "%" }
