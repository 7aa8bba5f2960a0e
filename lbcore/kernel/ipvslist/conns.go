package ipvslist

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// ConnPath is the kernel's connection table (per network namespace).
const ConnPath = "/proc/net/ip_vs_conn"

// maxConns bounds a listing: beyond it the read stops and says so.
const maxConns = 4 << 20

// Conn is one IPVS connection entry.
type Conn struct {
	Protocol string // TCP, UDP, SCTP; IP for persistence templates
	Client   netip.AddrPort
	Virtual  netip.AddrPort
	Dest     netip.AddrPort
	State    string // ESTABLISHED, FIN_WAIT, NONE, ...
	Expires  int    // seconds until the entry expires
	PEName   string
	PEData   string
}

// ReadConns reads the connection table at path (ConnPath; under
// /proc/thread-self/net for a thread's namespace).
func ReadConns(path string) ([]Conn, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ipvs connections: %w", err)
	}
	defer f.Close()
	return ParseConns(f)
}

// ParseConns parses a /proc/net/ip_vs_conn table: a header line, then
// "Pro FromIP FPrt ToIP TPrt DestIP DPrt State Expires [PEName PEData]",
// IPv4 addresses in hex, IPv6 ones written out, ports in hex.
func ParseConns(r io.Reader) ([]Conn, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), 4096)
	var out []Conn
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if n == 1 || len(f) == 0 {
			continue // the header
		}
		if len(out) == maxConns {
			return out, fmt.Errorf("ipvs connections: more than %d entries, listing stopped", maxConns)
		}
		if len(f) < 9 {
			return nil, fmt.Errorf("ipvs connections: line %d has %d fields, want at least 9: %q", n, len(f), sc.Text())
		}
		c := Conn{Protocol: f[0], State: f[7]}
		var err error
		for i, dst := range []*netip.AddrPort{&c.Client, &c.Virtual, &c.Dest} {
			if *dst, err = parseAddrPort(f[1+2*i], f[2+2*i]); err != nil {
				return nil, fmt.Errorf("ipvs connections: line %d: %w", n, err)
			}
		}
		if c.Expires, err = strconv.Atoi(f[8]); err != nil {
			return nil, fmt.Errorf("ipvs connections: line %d: expires %q: %w", n, f[8], err)
		}
		if len(f) > 9 {
			c.PEName = f[9]
		}
		if len(f) > 10 {
			c.PEData = f[10]
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ipvs connections: %w", err)
	}
	return out, nil
}

func parseAddrPort(addr, port string) (netip.AddrPort, error) {
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q: %w", port, err)
	}
	var a netip.Addr
	if strings.Contains(addr, ":") {
		if a, err = netip.ParseAddr(addr); err != nil {
			return netip.AddrPort{}, fmt.Errorf("address %q: %w", addr, err)
		}
	} else {
		v, err := strconv.ParseUint(addr, 16, 32)
		if err != nil || len(addr) != 8 {
			return netip.AddrPort{}, fmt.Errorf("address %q: not 8 hex digits", addr)
		}
		a = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

// WriteConns prints connections as `ipvsadm -Lnc` does.
func WriteConns(w io.Writer, conns []Conn) error {
	var b strings.Builder
	b.WriteString("IPVS connection entries\n")
	fmt.Fprintf(&b, "pro expire %-11s %-18s %-18s %s\n", "state", "source", "virtual", "destination")
	for _, c := range conns {
		fmt.Fprintf(&b, "%-3s %-6s %-11s %-18s %-18s %s\n", c.Protocol, fmt.Sprintf("%02d:%02d", c.Expires/60, c.Expires%60),
			c.State, addrPort(c.Client.Addr(), c.Client.Port()), addrPort(c.Virtual.Addr(), c.Virtual.Port()),
			addrPort(c.Dest.Addr(), c.Dest.Port()))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
