// Package ipvs keeps the kernel's IPVS table equal to the appliance config:
// it builds the desired services and destinations from the config, reads
// what the kernel has, diffs the two into a minimal ordered plan, applies it
// with an undo log (a failed apply leaves the kernel as it was) and drains
// removed members (weight 0, deleted when their active connections reach 0
// or a drain timeout passes).
//
// The kernel is reached through github.com/moby/ipvs. That library runs
// `modprobe ip_vs` the first time a handle is made if the module is not
// loaded; on the appliance init loads ip_vs (and its dependencies) before
// the LB daemon starts, so the modprobe is never needed there.
package ipvs

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// Service flags (include/uapi/linux/ip_vs.h).
const (
	FlagPersistent = 0x0001
	flagHashed     = 0x0002 // set by the kernel on every service; not ours to compare
)

// Forwarding methods of a destination.
const (
	FwdMasq   = mobyipvs.ConnectionFlagMasq
	FwdTunnel = mobyipvs.ConnectionFlagTunnel
	FwdDR     = mobyipvs.ConnectionFlagDirectRoute
)

// ServiceKey identifies an IPVS service: protocol+address+port, or a
// firewall mark.
type ServiceKey struct {
	Family   uint16 // unix.AF_INET or unix.AF_INET6
	Protocol uint16 // unix.IPPROTO_TCP / IPPROTO_UDP; 0 for fwmark services
	Addr     netip.Addr
	Port     uint16
	FWMark   uint32
}

func (k ServiceKey) String() string {
	if k.FWMark != 0 {
		return fmt.Sprintf("fwmark:%#x", k.FWMark)
	}
	return fmt.Sprintf("%s:%s", protoName(k.Protocol), netip.AddrPortFrom(k.Addr, k.Port))
}

func protoName(p uint16) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	}
	return fmt.Sprintf("proto%d", p)
}

func (k ServiceKey) less(o ServiceKey) bool {
	if k.FWMark != o.FWMark {
		return k.FWMark < o.FWMark
	}
	if c := k.Addr.Compare(o.Addr); c != 0 {
		return c < 0
	}
	if k.Protocol != o.Protocol {
		return k.Protocol < o.Protocol
	}
	return k.Port < o.Port
}

// DestKey identifies a destination within a service.
type DestKey struct {
	Addr netip.Addr
	Port uint16
}

func (k DestKey) String() string { return netip.AddrPortFrom(k.Addr, k.Port).String() }

// Dest is one real server of a service.
type Dest struct {
	Key    DestKey
	Weight int
	Fwd    uint32 // FwdMasq, FwdTunnel or FwdDR
	// Read from the kernel only:
	Active, Inactive int
}

func (d Dest) sameConfig(o Dest) bool { return d.Weight == o.Weight && d.Fwd == o.Fwd }

// Service is one IPVS virtual service with its destinations.
type Service struct {
	Key       ServiceKey
	Name      string // the virtual server's name (desired state only)
	Scheduler string
	Flags     uint32
	Timeout   uint32 // persistence timeout, seconds
	Netmask   uint32 // in the form the kernel takes: be32 mask (IPv4) or prefix length (IPv6)
	Dests     map[DestKey]*Dest
}

func (s *Service) sameConfig(o *Service) bool {
	return s.Scheduler == o.Scheduler && s.Flags&^flagHashed == o.Flags&^flagHashed &&
		s.Timeout == o.Timeout && s.Netmask == o.Netmask
}

// SortedDests returns the destinations in address order.
func (s *Service) SortedDests() []*Dest {
	out := make([]*Dest, 0, len(s.Dests))
	for _, d := range s.Dests {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if c := out[i].Key.Addr.Compare(out[j].Key.Addr); c != 0 {
			return c < 0
		}
		return out[i].Key.Port < out[j].Key.Port
	})
	return out
}

func (s *Service) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s sched=%s", s.Key, s.Scheduler)
	if s.Flags&FlagPersistent != 0 {
		fmt.Fprintf(&b, " persistent=%ds", s.Timeout)
	}
	return b.String()
}

// Timeouts are the global IPVS connection timeouts; 0 leaves one unchanged.
type Timeouts struct {
	TCP, TCPFin, UDP time.Duration
}

// State is a whole IPVS table.
type State struct {
	Services map[ServiceKey]*Service
	// Timeouts to set; nil leaves the kernel's alone.
	Timeouts *Timeouts
	// Unhealthy lists destinations left out of the desired state because
	// their health check failed (desired state only): Diff deletes them at
	// once rather than draining them.
	Unhealthy map[DrainRef]bool
}

// NewState returns an empty state.
func NewState() *State { return &State{Services: map[ServiceKey]*Service{}} }

// SortedServices returns the services in key order.
func (st *State) SortedServices() []*Service {
	out := make([]*Service, 0, len(st.Services))
	for _, s := range st.Services {
		out = append(out, s)
	}
	sortServices(out)
	return out
}

func sortServices(s []*Service) {
	sort.Slice(s, func(i, j int) bool { return s[i].Key.less(s[j].Key) })
}

// NetmaskV4 converts a prefix length to the kernel's be32 netmask as moby/ipvs
// carries it (a native-endian uint32 of the network-order bytes).
func NetmaskV4(bits int) uint32 {
	var m [4]byte
	binary.BigEndian.PutUint32(m[:], ^uint32(0)<<(32-bits))
	if bits == 0 {
		m = [4]byte{}
	}
	return binary.NativeEndian.Uint32(m[:])
}

// toKernel converts the service (without destinations) to moby/ipvs form.
func (s *Service) toKernel() *mobyipvs.Service {
	ks := &mobyipvs.Service{
		AddressFamily: s.Key.Family,
		FWMark:        s.Key.FWMark,
		SchedName:     s.Scheduler,
		Flags:         s.Flags &^ flagHashed,
		Timeout:       s.Timeout,
		Netmask:       s.Netmask,
	}
	if s.Key.FWMark == 0 {
		ks.Address = net.IP(s.Key.Addr.AsSlice())
		ks.Protocol = s.Key.Protocol
		ks.Port = s.Key.Port
	}
	return ks
}

func (d *Dest) toKernel() *mobyipvs.Destination {
	fam := uint16(unix.AF_INET)
	if d.Key.Addr.Is6() {
		fam = unix.AF_INET6
	}
	return &mobyipvs.Destination{
		Address:         net.IP(d.Key.Addr.AsSlice()),
		Port:            d.Key.Port,
		Weight:          d.Weight,
		ConnectionFlags: d.Fwd,
		AddressFamily:   fam,
	}
}

func ipToAddr(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil {
		return netip.AddrFrom4([4]byte(v4))
	}
	a, _ := netip.AddrFromSlice(ip)
	return a
}

// serviceFromKernel converts a kernel service (without destinations).
func serviceFromKernel(ks *mobyipvs.Service) *Service {
	k := ServiceKey{Family: ks.AddressFamily, FWMark: ks.FWMark}
	if ks.FWMark == 0 {
		k.Protocol = ks.Protocol
		k.Addr = ipToAddr(ks.Address)
		k.Port = ks.Port
	}
	return &Service{
		Key:       k,
		Scheduler: ks.SchedName,
		Flags:     ks.Flags &^ flagHashed,
		Timeout:   ks.Timeout,
		Netmask:   ks.Netmask,
		Dests:     map[DestKey]*Dest{},
	}
}

func destFromKernel(kd *mobyipvs.Destination) *Dest {
	return &Dest{
		Key:      DestKey{Addr: ipToAddr(kd.Address), Port: kd.Port},
		Weight:   kd.Weight,
		Fwd:      kd.ConnectionFlags & mobyipvs.ConnectionFlagFwdMask,
		Active:   kd.ActiveConnections,
		Inactive: kd.InactiveConnections,
	}
}
