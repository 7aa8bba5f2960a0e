// Package nslab builds the health-check test topology on lbcore/testkit's
// namespaces: a checker namespace and a server namespace joined by a veth
// pair on the lab's Internal segment (198.51.100.0/24: checker .2, members
// .11-.49), and runs code, listeners and processes inside them. For tests
// only; needs root (testkit.Require: a skip locally, a failure in CI).
package nslab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/vishvananda/netlink"
)

// CheckerAddr is the checker's (the appliance's Internal self IP) address.
const CheckerAddr = "198.51.100.2"

// Lab is a checker namespace and a server namespace on one veth link,
// hcc<Suffix> in the checker and hcs<Suffix> in the server.
type Lab struct {
	Checker *testkit.NS
	Server  *testkit.NS
	Suffix  string
}

// New makes the lab, with the checker at .2 (plus extra checker addresses)
// and the server holding serverAddrs (e.g. "198.51.100.11"). Everything is
// released when the test ends.
func New(t testing.TB, checkerExtra []string, serverAddrs ...string) *Lab {
	t.Helper()
	return build(t, -1, -1, checkerExtra, serverAddrs)
}

// NewSplitCPU is New with receive packet steering on the veth pair: what
// the server receives is processed on serverCPU and what the checker
// receives on checkerCPU. With the checker pinned to checkerCPU, the
// servers' kernel work (SYN handling, accept) then stays off the checker's
// CPU, as it does on a real network, instead of running inside the
// checker's send calls as veth and loopback do by default.
func NewSplitCPU(t testing.TB, checkerCPU, serverCPU int, serverAddrs ...string) *Lab {
	t.Helper()
	return build(t, checkerCPU, serverCPU, nil, serverAddrs)
}

func cidrs(addrs []string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a + "/24"
	}
	return out
}

func build(t testing.TB, checkerCPU, serverCPU int, checkerExtra, serverAddrs []string) *Lab {
	t.Helper()
	l := &Lab{Suffix: testkit.Suffix()}
	l.Checker = testkit.NewNS(t, "checker")
	l.Server = testkit.NewNS(t, "server")
	cName, sName := "hcc"+l.Suffix, "hcs"+l.Suffix
	if checkerCPU < 0 {
		testkit.Veth(t, l.Checker, cName, "", l.Server, sName, "")
	} else {
		// Steering is set through sysfs, which shows the devices of the
		// namespace it was mounted in (the test's own): make the pair
		// there, steer it, then move each end.
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: cName}, PeerName: sName}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatalf("nslab: veth: %v", err)
		}
		for _, end := range []struct {
			name string
			cpu  int
			ns   *testkit.NS
		}{{cName, checkerCPU, l.Checker}, {sName, serverCPU, l.Server}} {
			rps := fmt.Sprintf("/sys/class/net/%s/queues/rx-0/rps_cpus", end.name)
			if err := os.WriteFile(rps, []byte(fmt.Sprintf("%x\n", uint64(1)<<end.cpu)), 0o644); err != nil {
				netlink.LinkDel(veth)
				t.Fatalf("nslab: steer %s to CPU %d: %v", end.name, end.cpu, err)
			}
			link, err := netlink.LinkByName(end.name)
			if err == nil {
				err = netlink.LinkSetNsFd(link, end.ns.Fd())
			}
			if err != nil {
				netlink.LinkDel(veth)
				t.Fatalf("nslab: move %s: %v", end.name, err)
			}
		}
		for _, end := range []struct {
			ns   *testkit.NS
			name string
		}{{l.Checker, cName}, {l.Server, sName}} {
			link, err := end.ns.Netlink().LinkByName(end.name)
			if err == nil {
				err = end.ns.Netlink().LinkSetUp(link)
			}
			if err != nil {
				t.Fatalf("nslab: up %s: %v", end.name, err)
			}
			end.ns.WaitOperUp(t, end.name)
		}
	}
	for _, a := range cidrs(append([]string{CheckerAddr}, checkerExtra...)) {
		l.Checker.AddAddr(t, cName, a)
	}
	for _, a := range cidrs(serverAddrs) {
		l.Server.AddAddr(t, sName, a)
	}
	return l
}

// Do runs fn with the calling thread switched into ns, and switches back.
func (l *Lab) Do(ns *testkit.NS, fn func() error) error { return ns.Do(fn) }

// InChecker is a health.SocketEnv: it makes the check's socket in the
// checker namespace.
func (l *Lab) InChecker(fn func() error) error { return l.Checker.Do(fn) }

// Dial connects from the checker namespace.
func (l *Lab) Dial(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := l.Checker.Do(func() error {
		var err error
		conn, err = d.DialContext(ctx, network, address)
		return err
	})
	return conn, err
}

// Listen opens a TCP listener in the server ns.
func (l *Lab) Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := l.Server.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("nslab: listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Start starts cmd inside the server ns and kills it by PID when the test
// ends.
func (l *Lab) Start(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	l.Server.Start(t, cmd)
}

// WaitTCP waits (at most timeout, failing the test then) until addr
// accepts connections from the checker ns.
func (l *Lab) WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	testkit.Eventually(t, timeout, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		c, err := l.Dial(ctx, &net.Dialer{}, "tcp", addr)
		if err != nil {
			return fmt.Errorf("nslab: %s not reachable: %w", addr, err)
		}
		c.Close()
		return nil
	})
}

// AddrPort parses "a.b.c.d:port".
func AddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
