// Package ipvslist is the operator's `ipvsadm -L` view of the kernel: it
// reads the IPVS table (services, destinations, counters and the kernel's
// rate estimates) and the connection entries, and prints them in the
// layouts of `ipvsadm -Ln`, `--stats`, `--rate` and `-c`, so muscle memory
// and scripts written for ipvsadm keep working on the appliance.
//
// The table is read over generic netlink (github.com/moby/ipvs, whose
// counters are the kernel's 32-bit ones for connections and packets); the
// connection entries come from /proc/net/ip_vs_conn, as ipvsadm reads them
// (IPVS has no netlink dump of connections).
package ipvslist

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// Kernel reads the IPVS table (a *mobyipvs.Handle).
type Kernel interface {
	GetServices() ([]*mobyipvs.Service, error)
	GetDestinations(*mobyipvs.Service) ([]*mobyipvs.Destination, error)
}

// Counters are one service's or destination's totals and the kernel's
// rate estimates (per second, averaged over a few seconds by the kernel).
type Counters struct {
	Conns, InPkts, OutPkts, InBytes, OutBytes uint64
	CPS, InPPS, OutPPS, InBPS, OutBPS         uint64
}

// Service is one IPVS virtual service with its destinations.
type Service struct {
	Family    uint16 // unix.AF_INET or AF_INET6
	Protocol  uint16 // IPPROTO_TCP, UDP, SCTP; 0 for fwmark services
	Addr      netip.Addr
	Port      uint16
	FWMark    uint32
	Scheduler string
	Flags     uint32
	Timeout   uint32 // persistence, seconds
	Netmask   uint32 // v4: the kernel's be32 mask as moby carries it; v6: prefix length
	PEName    string
	Stats     Counters
	Dests     []Dest
}

// Dest is one destination (real server).
type Dest struct {
	Family   uint16
	Addr     netip.Addr
	Port     uint16
	Flags    uint32 // connection flags; the forwarding method in the low bits
	Weight   int
	Active   int
	Inactive int
	Stats    Counters
}

// Kernel service flags (include/uapi/linux/ip_vs.h).
const (
	flagPersistent = 0x0001
	flagOnePacket  = 0x0004
)

func counters(s mobyipvs.SvcStats) Counters {
	return Counters{Conns: uint64(s.Connections), InPkts: uint64(s.PacketsIn), OutPkts: uint64(s.PacketsOut),
		InBytes: s.BytesIn, OutBytes: s.BytesOut, CPS: uint64(s.CPS), InPPS: uint64(s.PPSIn), OutPPS: uint64(s.PPSOut),
		InBPS: uint64(s.BPSIn), OutBPS: uint64(s.BPSOut)}
}

func toAddr(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil {
		return netip.AddrFrom4([4]byte(v4))
	}
	a, _ := netip.AddrFromSlice(ip)
	return a
}

// Read reads the whole table, sorted as ipvsadm sorts it (services by
// fwmark, family, protocol, address, port; destinations by family,
// address, port).
func Read(k Kernel) ([]Service, error) {
	kss, err := k.GetServices()
	if err != nil {
		return nil, fmt.Errorf("reading IPVS services: %w", err)
	}
	out := make([]Service, 0, len(kss))
	for _, ks := range kss {
		s := Service{Family: ks.AddressFamily, Protocol: ks.Protocol, Port: ks.Port, FWMark: ks.FWMark,
			Scheduler: ks.SchedName, Flags: ks.Flags, Timeout: ks.Timeout, Netmask: ks.Netmask, PEName: ks.PEName,
			Stats: counters(ks.Stats)}
		if ks.FWMark == 0 {
			s.Addr = toAddr(ks.Address)
		}
		kds, err := k.GetDestinations(ks)
		if err != nil {
			return nil, fmt.Errorf("reading IPVS destinations of %s: %w", s.Name(), err)
		}
		for _, kd := range kds {
			s.Dests = append(s.Dests, Dest{Family: kd.AddressFamily, Addr: toAddr(kd.Address), Port: kd.Port,
				Flags: kd.ConnectionFlags, Weight: kd.Weight, Active: kd.ActiveConnections, Inactive: kd.InactiveConnections,
				Stats: counters(mobyipvs.SvcStats(kd.Stats))})
		}
		sort.Slice(s.Dests, func(i, j int) bool {
			a, b := s.Dests[i], s.Dests[j]
			if a.Family != b.Family {
				return a.Family < b.Family
			}
			if c := a.Addr.Compare(b.Addr); c != 0 {
				return c < 0
			}
			return a.Port < b.Port
		})
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case a.FWMark != b.FWMark:
			return a.FWMark < b.FWMark
		case a.Family != b.Family:
			return a.Family < b.Family
		case a.Protocol != b.Protocol:
			return a.Protocol < b.Protocol
		case a.Addr != b.Addr:
			return a.Addr.Less(b.Addr)
		}
		return a.Port < b.Port
	})
	return out, nil
}

// ProtoName is ipvsadm's protocol name.
func ProtoName(p uint16) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "TCP"
	case unix.IPPROTO_UDP:
		return "UDP"
	case unix.IPPROTO_SCTP:
		return "SCTP"
	}
	return fmt.Sprintf("%d", p)
}

func addrPort(a netip.Addr, port uint16) string {
	if a.Is6() {
		return fmt.Sprintf("[%s]:%d", a, port)
	}
	return fmt.Sprintf("%s:%d", a, port)
}

// Name is the service as ipvsadm names it: "TCP  203.0.113.100:80" or
// "FWM  7".
func (s Service) Name() string {
	if s.FWMark != 0 {
		if s.Family == unix.AF_INET6 {
			return fmt.Sprintf("FWM  %d IPv6", s.FWMark)
		}
		return fmt.Sprintf("FWM  %d", s.FWMark)
	}
	return fmt.Sprintf("%-4s %s", ProtoName(s.Protocol), addrPort(s.Addr, s.Port))
}

// Address is the destination's "addr:port" ("[addr]:port" for IPv6).
func (d Dest) Address() string { return addrPort(d.Addr, d.Port) }

// Forward is ipvsadm's name of the forwarding method.
func (d Dest) Forward() string {
	switch d.Flags & mobyipvs.ConnFwdMask {
	case mobyipvs.ConnectionFlagMasq:
		return "Masq"
	case mobyipvs.ConnectionFlagLocalNode:
		return "Local"
	case mobyipvs.ConnectionFlagTunnel:
		return "Tunnel"
	case mobyipvs.ConnectionFlagDirectRoute:
		return "Route"
	}
	return "Unknown"
}

// Format selects the listing.
type Format int

// The listings of ipvsadm -Ln, -Ln --stats and -Ln --rate.
const (
	List Format = iota
	Stats
	Rate
)

// Options of a listing.
type Options struct {
	Format Format
	// Exact prints whole numbers (--exact) instead of K/M/G/T units.
	Exact bool
	// Header is the first line; "" reads it from /proc/net/ip_vs.
	Header string
}

// DefaultHeader is used when /proc/net/ip_vs cannot be read.
const DefaultHeader = "IP Virtual Server version 1.2.1 (size=4096)"

// ProcHeader is the first line of the ip_vs proc file at path (the
// kernel's version and table size, as ipvsadm prints them).
func ProcHeader(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return DefaultHeader
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if !strings.HasPrefix(first, "IP Virtual Server version") {
		return DefaultHeader
	}
	return first
}

// Write prints services in the chosen layout, byte for byte as ipvsadm
// 1.31 does.
func Write(w io.Writer, svcs []Service, o Options) error {
	if o.Header == "" {
		o.Header = ProcHeader("/proc/net/ip_vs")
	}
	var b strings.Builder
	b.WriteString(o.Header + "\n")
	switch o.Format {
	case Stats:
		fmt.Fprintf(&b, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes")
	case Rate:
		fmt.Fprintf(&b, "%-33s %8s %8s %8s %8s %8s\n  -> RemoteAddress:Port\n", "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS")
	default:
		b.WriteString("Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	}
	for _, s := range svcs {
		writeService(&b, s, o)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeService(b *strings.Builder, s Service, o Options) {
	num := func(v uint64) { b.WriteString(largeNum(v, o.Exact)) }
	switch o.Format {
	case Stats:
		fmt.Fprintf(b, "%-33s", s.Name())
		for _, v := range []uint64{s.Stats.Conns, s.Stats.InPkts, s.Stats.OutPkts, s.Stats.InBytes, s.Stats.OutBytes} {
			num(v)
		}
	case Rate:
		fmt.Fprintf(b, "%-33s", s.Name())
		for _, v := range []uint64{s.Stats.CPS, s.Stats.InPPS, s.Stats.OutPPS, s.Stats.InBPS, s.Stats.OutBPS} {
			num(v)
		}
	default:
		fmt.Fprintf(b, "%s %s", s.Name(), s.Scheduler)
		if s.Flags&flagPersistent != 0 {
			fmt.Fprintf(b, " persistent %d", s.Timeout)
			if s.Family == unix.AF_INET6 {
				if s.Netmask != 128 {
					fmt.Fprintf(b, " mask %d", s.Netmask)
				}
			} else if s.Netmask != 0xffffffff {
				var m [4]byte
				binary.NativeEndian.PutUint32(m[:], s.Netmask)
				fmt.Fprintf(b, " mask %s", netip.AddrFrom4(m))
			}
			if s.PEName != "" {
				fmt.Fprintf(b, " pe %s", s.PEName)
			}
		}
		if s.Flags&flagOnePacket != 0 {
			b.WriteString(" ops")
		}
	}
	b.WriteString("\n")
	for _, d := range s.Dests {
		switch o.Format {
		case Stats:
			fmt.Fprintf(b, "  -> %-28s", d.Address())
			for _, v := range []uint64{d.Stats.Conns, d.Stats.InPkts, d.Stats.OutPkts, d.Stats.InBytes, d.Stats.OutBytes} {
				num(v)
			}
			b.WriteString("\n")
		case Rate:
			fmt.Fprintf(b, "  -> %-28s %8d %8d %8d", d.Address(), d.Stats.CPS, d.Stats.InPPS, d.Stats.OutPPS)
			num(d.Stats.InBPS)
			num(d.Stats.OutBPS)
			b.WriteString("\n")
		default:
			fmt.Fprintf(b, "  -> %-28s %-7s %-6d %-10d %-10d\n", d.Address(), d.Forward(), d.Weight, d.Active, d.Inactive)
		}
	}
}

// largeNum is ipvsadm's print_largenum: a space and at least 8 digits, or
// K/M/G/T units past 100 million (whole numbers with exact).
func largeNum(v uint64, exact bool) string {
	if exact {
		s := fmt.Sprintf("%d", v)
		w := len(s) + 1
		if len(s) <= 8 {
			w = 9
		}
		return fmt.Sprintf("%*d", w, v)
	}
	switch {
	case v < 100_000_000:
		return fmt.Sprintf("%9d", v)
	case v < 1_000_000_000:
		return fmt.Sprintf("%8dK", v/1000)
	case v < 100_000_000_000:
		return fmt.Sprintf("%8dM", v/1_000_000)
	case v < 100_000_000_000_000:
		return fmt.Sprintf("%8dG", v/1_000_000_000)
	}
	return fmt.Sprintf("%8dT", v/1_000_000_000_000)
}
