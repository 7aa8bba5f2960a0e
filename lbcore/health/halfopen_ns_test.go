package health_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/health"
	"github.com/fulcrum-lb/fulcrum/lbcore/health/internal/nslab"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IPv6 addresses for the half-open tests, on the lab's veth pair
// (documentation prefix; the lab plan's Internal segment is IPv4 only).
const (
	checkerIPv6 = "2001:db8:51::2"
	serverIPv6  = "2001:db8:51::11"
)

func halfOpenMon(interval, timeout time.Duration, rise, fall int, source string) config.Monitor {
	m := config.Monitor{Type: config.MonitorTCPHalfOpen, Interval: config.Duration(interval),
		Timeout: config.Duration(timeout), Rise: rise, Fall: fall}
	if source != "" {
		m.Source = config.IP{Addr: netip.MustParseAddr(source)}
	}
	m.ApplyDefaults()
	return m
}

// addIPv6 puts an IPv6 address (no duplicate address detection) on the
// lab's veth end in ns.
func addIPv6(t *testing.T, lab *nslab.Lab, ns string, addr string) {
	t.Helper()
	target, link := lab.Checker, "hcc"+lab.Suffix
	if ns == "server" {
		target, link = lab.Server, "hcs"+lab.Suffix
	}
	h := target.Netlink()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := netlink.ParseAddr(addr + "/64")
	a.Flags = unix.IFA_F_NODAD
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("add %s: %v", addr, err)
	}
}

// synSniffer records the sources of TCP SYNs arriving in the server
// namespace, through a raw socket there.
type synSniffer struct {
	mu      sync.Mutex
	sources []netip.Addr
}

func sniffSYNs(t *testing.T, lab *nslab.Lab, port uint16) *synSniffer {
	t.Helper()
	var c net.PacketConn
	if err := lab.Do(lab.Server, func() (err error) { c, err = net.ListenPacket("ip4:tcp", "0.0.0.0"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &synSniffer{}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 20 || binary.BigEndian.Uint16(buf[2:4]) != port || buf[13]&0x12 != 0x02 { // SYN without ACK
				continue
			}
			a, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
			s.mu.Lock()
			s.sources = append(s.sources, a.Unmap())
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *synSniffer) waitFrom(t *testing.T, src string) {
	t.Helper()
	want := netip.MustParseAddr(src)
	testkit.Eventually(t, time.Second, 5*time.Millisecond, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, a := range s.sources {
			if a == want {
				return nil
			}
		}
		return fmt.Errorf("server saw no SYN from %s (saw %v)", src, s.sources)
	})
}

// TestHalfOpenAnswers: a listener answers the SYN (and no connection is
// ever accepted), a closed port resets it, an absent host times out, over
// IPv4 and IPv6.
func TestHalfOpenAnswers(t *testing.T) {
	lab := nslab.New(t, nil, "198.51.100.11")
	addIPv6(t, lab, "checker", checkerIPv6)
	addIPv6(t, lab, "server", serverIPv6)
	srv := startServer(t, lab, "198.51.100.11:80", answerAccept)
	srv6 := startServer(t, lab, "["+serverIPv6+"]:80", answerAccept)
	c, err := health.NewChecker(halfOpenMon(time.Second, 100*time.Millisecond, 1, 1, ""), lab.InChecker)
	if err != nil {
		t.Fatal(err)
	}
	defer c.(interface{ Close() error }).Close()
	checkAnswers(t, c, []answerCase{
		{"198.51.100.11:80", true, "SYN-ACK"},
		{"198.51.100.11:81", false, "connection refused (syn)"},
		{"198.51.100.40:80", false, "timeout after 100ms (syn)"}, // no such host: ARP never answers
		{"[" + serverIPv6 + "]:80", true, "SYN-ACK"},
		{"[" + serverIPv6 + "]:81", false, "connection refused (syn)"},
		{"198.51.100.11:80", true, "SYN-ACK"}, // again: the same 4-tuple is reusable
	})
	time.Sleep(50 * time.Millisecond) // an accept, had there been one, would be in by now
	for _, s := range []*scriptServer{srv, srv6} {
		s.mu.Lock()
		if len(s.remotes) != 0 {
			t.Errorf("%s accepted connections %v: half-open checks must not complete a handshake", s.addr, s.remotes)
		}
		s.mu.Unlock()
	}
}

// TestHalfOpenSource: SYNs leave from the configured source address, and a
// source the appliance does not have fails the check saying so.
func TestHalfOpenSource(t *testing.T) {
	lab := nslab.New(t, []string{"198.51.100.3"}, "198.51.100.11")
	startServer(t, lab, "198.51.100.11:80", answerAccept)
	sniff := sniffSYNs(t, lab, 80)
	target := health.Target{Addr: netip.MustParseAddr("198.51.100.11"), Port: 80}
	for _, src := range []string{"198.51.100.3", "198.51.100.2"} {
		c, err := health.NewChecker(halfOpenMon(time.Second, 200*time.Millisecond, 1, 1, src), lab.InChecker)
		if err != nil {
			t.Fatal(err)
		}
		if r := c.Check(context.Background(), target); !r.OK {
			t.Errorf("source %s: %+v", src, r)
		}
		sniff.waitFrom(t, src)
		c.(interface{ Close() error }).Close()
	}
	c, _ := health.NewChecker(halfOpenMon(time.Second, 200*time.Millisecond, 1, 1, "198.51.100.4"), lab.InChecker)
	defer c.(interface{ Close() error }).Close()
	if r := c.Check(context.Background(), target); r.OK || r.Reason != "source address not available (syn)" {
		t.Errorf("absent source address: %+v", r)
	}
}
