// Package nslab builds the health-check test topology: a checker network
// namespace and a server namespace joined by a veth pair on the lab's
// Internal segment (198.51.100.0/24: checker .2, members .11-.49), and runs
// code, listeners and processes inside them. For tests only; needs root.
package nslab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// CheckerAddr is the checker's (the appliance's Internal self IP) address.
const CheckerAddr = "198.51.100.2"

// Lab is a checker namespace and a server namespace on one veth link.
type Lab struct {
	Host    netns.NsHandle // the namespace the test started in
	Checker netns.NsHandle
	Server  netns.NsHandle
	Suffix  string
}

// New makes the lab, with the checker at .2 (plus extra checker addresses)
// and the server holding serverAddrs (e.g. "198.51.100.11"). It skips the
// test when not root and cleans everything up when the test ends.
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

func build(t testing.TB, checkerCPU, serverCPU int, checkerExtra, serverAddrs []string) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	var b [3]byte
	rand.Read(b[:])
	l := &Lab{Suffix: hex.EncodeToString(b[:])}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	host, err := netns.Get()
	if err != nil {
		t.Fatalf("nslab: current netns: %v", err)
	}
	l.Host = host
	t.Cleanup(func() { l.Host.Close() })
	for _, p := range []*netns.NsHandle{&l.Checker, &l.Server} {
		ns, err := netns.New() // switches this thread
		if err != nil {
			netns.Set(host)
			t.Fatalf("nslab: new netns: %v", err)
		}
		*p = ns
		if err := netns.Set(host); err != nil {
			t.Fatalf("nslab: back to host netns: %v", err)
		}
		t.Cleanup(func() { ns.Close() })
	}

	hc, err := netlink.NewHandleAt(l.Checker)
	if err != nil {
		t.Fatalf("nslab: netlink in checker ns: %v", err)
	}
	defer hc.Close()
	hs, err := netlink.NewHandleAt(l.Server)
	if err != nil {
		t.Fatalf("nslab: netlink in server ns: %v", err)
	}
	defer hs.Close()

	cName, sName := "hcc"+l.Suffix, "hcs"+l.Suffix
	if checkerCPU >= 0 {
		// Steering is set through sysfs, which shows this namespace's
		// devices: make the pair here, steer it, then move each end.
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: cName}, PeerName: sName}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Fatalf("nslab: veth: %v", err)
		}
		for _, end := range []struct {
			name string
			cpu  int
			ns   netns.NsHandle
		}{{cName, checkerCPU, l.Checker}, {sName, serverCPU, l.Server}} {
			rps := fmt.Sprintf("/sys/class/net/%s/queues/rx-0/rps_cpus", end.name)
			if err := os.WriteFile(rps, []byte(fmt.Sprintf("%x\n", uint64(1)<<end.cpu)), 0o644); err != nil {
				netlink.LinkDel(veth)
				t.Fatalf("nslab: steer %s to CPU %d: %v", end.name, end.cpu, err)
			}
			link, err := netlink.LinkByName(end.name)
			if err == nil {
				err = netlink.LinkSetNsFd(link, int(end.ns))
			}
			if err != nil {
				netlink.LinkDel(veth)
				t.Fatalf("nslab: move %s: %v", end.name, err)
			}
		}
	} else {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: cName}, PeerName: sName, PeerNamespace: netlink.NsFd(l.Server)}
		if err := hc.LinkAdd(veth); err != nil { // created inside the checker ns
			t.Fatalf("nslab: veth: %v", err)
		}
	}
	setup := func(h *netlink.Handle, name string, addrs []string) {
		for _, n := range []string{"lo", name} {
			link, err := h.LinkByName(n)
			if err != nil {
				t.Fatalf("nslab: %s: %v", n, err)
			}
			if err := h.LinkSetUp(link); err != nil {
				t.Fatalf("nslab: up %s: %v", n, err)
			}
			if n == "lo" {
				continue
			}
			for _, a := range addrs {
				addr, err := netlink.ParseAddr(a + "/24")
				if err != nil {
					t.Fatalf("nslab: %s: %v", a, err)
				}
				if err := h.AddrAdd(link, addr); err != nil {
					t.Fatalf("nslab: add %s to %s: %v", a, n, err)
				}
			}
		}
	}
	setup(hc, cName, append([]string{CheckerAddr}, checkerExtra...))
	setup(hs, sName, serverAddrs)
	// Until the kernel's link watcher has run, a new veth has the noop qdisc
	// and drops what is sent: wait for both ends to be operationally up.
	for _, end := range []struct {
		h    *netlink.Handle
		name string
	}{{hc, cName}, {hs, sName}} {
		deadline := time.Now().Add(3 * time.Second)
		for {
			link, err := end.h.LinkByName(end.name)
			if err == nil && link.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nslab: %s not operationally up after 3s", end.name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return l
}

// Do runs fn on an OS thread switched into ns, and switches back.
func (l *Lab) Do(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns: %w", err)
	}
	err := fn()
	if serr := netns.Set(l.Host); serr != nil {
		// Leave the thread locked: it dies with this goroutine rather than
		// running other goroutines in the wrong namespace.
		return fmt.Errorf("setns back: %w", serr)
	}
	runtime.UnlockOSThread()
	return err
}

// InChecker is a health.SocketEnv: it makes the check's socket in the
// checker namespace.
func (l *Lab) InChecker(fn func() error) error { return l.Do(l.Checker, fn) }

// Dial connects from the checker namespace.
func (l *Lab) Dial(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error) {
	var conn net.Conn
	err := l.Do(l.Checker, func() error {
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
	if err := l.Do(l.Server, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("nslab: listen %s: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Start starts cmd inside the server ns (the child inherits the thread's
// namespace) and kills it by PID when the test ends.
func (l *Lab) Start(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if err := l.Do(l.Server, cmd.Start); err != nil {
		t.Fatalf("nslab: start %s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
}

// WaitTCP waits (at most timeout) until addr accepts connections from the
// checker ns.
func (l *Lab) WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		var c net.Conn
		c, err = l.Dial(ctx, &net.Dialer{}, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nslab: %s not reachable after %s: %v", addr, timeout, err)
}

// AddrPort parses "a.b.c.d:port".
func AddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
