// Package filter owns the appliance's input filter: its own nftables table
// ("inet fulcrum_filter") with a default-drop input chain and one chain per
// NIC-group zone, keyed by the zone's interface (the group's bond, the
// management NIC). A packet addressed to the appliance itself is accepted
// only when its zone admits it: External the VIP services, Internal the
// internal-side VIP services and the API when it listens there, Failover
// VRRP, the sync ports and ping from the peer(s), the management NIC the API
// and DHCP replies. Loopback is always accepted, and IPv6 neighbour discovery
// (router/neighbour solicitation and advertisement) on every interface.
//
// Order inside a zone chain: ICMP echo requests first (accepted under a rate
// limit where the zone allows ping, otherwise dropped), then "ct state
// established,related accept" (replies to the appliance's own connections:
// health checks, DHCP renewals, DNS, syslog; ICMP errors), then the zone's
// services. The echo rules come before the conntrack rule because a ping
// flood with one ICMP id is "established" after the first reply and would
// otherwise bypass the limit. Single-port services are one lookup in a
// set per zone and family (svc4_<zone>, svc6_<zone>: daddr . l4proto .
// dport, each element commented with its service), so a new connection's
// cost does not grow with the number of virtual servers; port ranges keep
// a rule each.
//
// IPVS: a client's packets to a VIP are addressed to a local address, so they
// pass the input hook (priority filter, 0) before IPVS takes them at its
// LOCAL_IN hooks (priority ~98-99); that is why the VIP services are admitted
// here. What IPVS forwards (NAT to members, members' replies) takes the
// forward path and never meets this table; FullNAT replies from members to a
// local address are conntrack replies (established).
//
// The table is replaced as a whole in one netlink batch, so the kernel has
// either the old policy or the new one; Rollback puts back exactly what the
// table held before the last Apply (as read back from the kernel).
//
// The package has its own typed desired state (Policy); lbapply translates
// the appliance config into it.
package filter

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"

	"golang.org/x/sys/unix"
)

// TableName is the filter's nftables table (family inet).
const TableName = "fulcrum_filter"

// Proto is a layer-4 protocol number.
type Proto uint8

// Protocols the policy knows by name.
const (
	TCP  Proto = unix.IPPROTO_TCP
	UDP  Proto = unix.IPPROTO_UDP
	VRRP Proto = 112
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case VRRP:
		return "vrrp"
	}
	return fmt.Sprintf("proto %d", uint8(p))
}

// hasPorts reports whether the protocol has ports the policy can match.
func (p Proto) hasPorts() bool { return p == TCP || p == UDP }

// Service is a virtual service admitted by destination: address, protocol
// and an inclusive port range (From == To for one port).
type Service struct {
	Name     string // for the rule comment
	Addr     netip.Addr
	Proto    Proto
	From, To uint16
}

// Port is a local port admitted on any of the appliance's addresses of the
// zone, optionally only from one source port (DHCP: 67 -> 68).
type Port struct {
	Name    string // for the rule comment
	Proto   Proto
	Port    uint16
	SrcPort uint16 // 0: any
}

// PeerRule admits a protocol (and, for TCP/UDP, a destination port; 0 =
// any) from the zone's peers only.
type PeerRule struct {
	Name  string
	Proto Proto
	Port  uint16
}

// Zone is what one interface admits.
type Zone struct {
	// Name names the zone's chain ("external"); lower case letters, digits,
	// '_' and '-'.
	Name string
	// Iface is the interface packets arrive on (a bond, the management NIC).
	Iface string
	// Ping admits ICMP/ICMPv6 echo requests under the policy's rate limit;
	// PeerPing admits them from the Peers only (each peer its own limit).
	// Otherwise they are dropped.
	Ping     bool
	PeerPing bool
	Services []Service
	Ports    []Port
	// Peers are the sources PeerRules admit (single addresses or prefixes).
	Peers     []netip.Prefix
	PeerRules []PeerRule
}

// Policy is the whole input filter.
type Policy struct {
	Zones []Zone
	// PingRate is the echo requests admitted per second per zone, PingBurst
	// the burst above it (defaults 10 and 20).
	PingRate  uint32
	PingBurst uint32
}

// Default ping limits.
const (
	DefaultPingRate  = 10
	DefaultPingBurst = 20
)

var zoneName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,23}$`)

// Validate checks the policy as a whole; the error names every problem.
func (p *Policy) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	names, ifaces := map[string]bool{}, map[string]bool{}
	for i := range p.Zones {
		z := &p.Zones[i]
		switch {
		case !zoneName.MatchString(z.Name):
			bad("zone %d: name %q is not lower-case letters, digits, '_' or '-' (1-24)", i, z.Name)
		case names[z.Name]:
			bad("zone %s: defined twice", z.Name)
		}
		names[z.Name] = true
		switch {
		case z.Iface == "" || len(z.Iface) >= unix.IFNAMSIZ:
			bad("zone %s: interface %q is not an interface name", z.Name, z.Iface)
		case z.Iface == "lo":
			bad("zone %s: loopback is always accepted and cannot be a zone", z.Name)
		case ifaces[z.Iface]:
			bad("zone %s: interface %s is in two zones", z.Name, z.Iface)
		}
		ifaces[z.Iface] = true
		for _, s := range z.Services {
			switch {
			case !s.Addr.IsValid():
				bad("zone %s: service %s: no address", z.Name, s.Name)
			case !s.Proto.hasPorts():
				bad("zone %s: service %s: %s is not tcp or udp", z.Name, s.Name, s.Proto)
			case s.From == 0 || s.To < s.From:
				bad("zone %s: service %s: port range %d-%d is empty or starts at 0", z.Name, s.Name, s.From, s.To)
			}
		}
		for _, pt := range z.Ports {
			if !pt.Proto.hasPorts() || pt.Port == 0 {
				bad("zone %s: port %s: %s/%d is not a tcp or udp port", z.Name, pt.Name, pt.Proto, pt.Port)
			}
		}
		for _, pr := range z.Peers {
			if !pr.IsValid() {
				bad("zone %s: invalid peer prefix", z.Name)
			}
		}
		for _, r := range z.PeerRules {
			if r.Port != 0 && !r.Proto.hasPorts() {
				bad("zone %s: peer rule %s: %s has no ports", z.Name, r.Name, r.Proto)
			}
		}
		if (len(z.PeerRules) > 0 || z.PeerPing) && len(z.Peers) == 0 {
			bad("zone %s: peer rules but no peers", z.Name)
		}
	}
	return errors.Join(errs...)
}

func (p *Policy) rate() (uint32, uint32) {
	r, b := p.PingRate, p.PingBurst
	if r == 0 {
		r = DefaultPingRate
	}
	if b == 0 {
		b = DefaultPingBurst
	}
	return r, b
}
