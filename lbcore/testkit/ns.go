package testkit

// The namespace lab: small network topologies out of anonymous network
// namespaces and veth pairs for tests that send real packets. Namespaces are
// anonymous (never in /var/run/netns, so nothing leaks when a test dies),
// interface names carry the caller's suffix, and everything is released
// through t.Cleanup, even on failure.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is one anonymous network namespace.
type NS struct {
	Name string // for messages only
	h    netns.NsHandle
	nl   *netlink.Handle
}

// NewNS creates a namespace with lo up; it is closed at cleanup. It
// requires root (see Require).
func NewNS(t testing.TB, name string) *NS {
	t.Helper()
	Require(t, Root)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatalf("netns get: %v", err)
	}
	defer orig.Close()
	h, err := netns.New()
	if err != nil {
		t.Fatalf("netns new %s: %v", name, err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatalf("netns restore: %v", err) // thread stays locked (and dies) on failure
	}
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	n := &NS{Name: name, h: h, nl: nl}
	t.Cleanup(func() { nl.Close(); h.Close() })
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("%s: lo up: %v", name, err)
	}
	return n
}

// Fd is the namespace's file descriptor.
func (n *NS) Fd() int { return int(n.h) }

// Path is a path that opens the namespace (for APIs that take one).
func (n *NS) Path() string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), n.Fd()) }

// Handle is the namespace handle (for APIs that enter the namespace
// themselves); it stays owned by the NS.
func (n *NS) Handle() netns.NsHandle { return n.h }

// Netlink is a netlink handle inside the namespace.
func (n *NS) Netlink() *netlink.Handle { return n.nl }

// Do runs f on the calling goroutine's thread switched into the namespace,
// and switches back. Sockets f creates stay in the namespace after Do
// returns; goroutines f starts do not run in it.
func (n *NS) Do(f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%s: current netns: %w", n.Name, err)
	}
	defer orig.Close()
	if err := netns.Set(n.h); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("%s: setns: %w", n.Name, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine rather than
		// running other goroutines in the wrong namespace.
		return fmt.Errorf("%s: setns back: %w", n.Name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// Start starts cmd inside the namespace (the child inherits the namespace
// of the thread that forks it) and kills it by PID when the test ends.
func (n *NS) Start(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if err := n.Do(cmd.Start); err != nil {
		t.Fatalf("%s: start %s: %v", n.Name, cmd.Path, err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
}

// Sysctl writes a /proc/sys value inside the namespace ("net.ipv4.ip_forward").
func (n *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if err := n.Do(func() error { return os.WriteFile(p, []byte(value), 0o644) }); err != nil {
		t.Fatalf("%s: sysctl %s=%s: %v", n.Name, key, value, err)
	}
}

// Veth connects a and b with a veth pair named aIf (in a) and bIf (in b),
// both up, with the given CIDR addresses ("" for none).
func Veth(t testing.TB, a *NS, aIf, aAddr string, b *NS, bIf, bAddr string) {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aIf}, PeerName: bIf, PeerNamespace: netlink.NsFd(b.Fd())}
	if err := a.nl.LinkAdd(v); err != nil {
		t.Fatalf("veth %s(%s)-%s(%s): %v", aIf, a.Name, bIf, b.Name, err)
	}
	for _, side := range []struct {
		ns        *NS
		ifn, cidr string
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		l, err := side.ns.nl.LinkByName(side.ifn)
		if err != nil {
			t.Fatalf("%s: %s: %v", side.ns.Name, side.ifn, err)
		}
		if side.cidr != "" {
			side.ns.AddAddr(t, side.ifn, side.cidr)
		}
		if err := side.ns.nl.LinkSetUp(l); err != nil {
			t.Fatalf("%s: %s up: %v", side.ns.Name, side.ifn, err)
		}
	}
	a.WaitOperUp(t, aIf)
	b.WaitOperUp(t, bIf)
}

// WaitOperUp waits until link ifn is operationally up: until the kernel's
// link watcher has run, a new veth has the noop qdisc and drops what is sent.
func (n *NS) WaitOperUp(t testing.TB, ifn string) {
	t.Helper()
	Eventually(t, 3*time.Second, 5*time.Millisecond, func() error {
		l, err := n.nl.LinkByName(ifn)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", n.Name, ifn, err)
		}
		if s := l.Attrs().OperState; s != netlink.OperUp {
			return fmt.Errorf("%s: %s is operationally %s", n.Name, ifn, s)
		}
		return nil
	})
}

// Bridge creates a bridge named name in n, up, with an optional CIDR
// address; Veth peers can then be enslaved with Enslave.
func (n *NS) Bridge(t testing.TB, name, cidr string) {
	t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := n.nl.LinkAdd(br); err != nil {
		t.Fatalf("%s: bridge %s: %v", n.Name, name, err)
	}
	if cidr != "" {
		n.AddAddr(t, name, cidr)
	}
	if err := n.nl.LinkSetUp(br); err != nil {
		t.Fatalf("%s: %s up: %v", n.Name, name, err)
	}
}

// Enslave puts interface ifn of n into bridge br of n.
func (n *NS) Enslave(t testing.TB, ifn, br string) {
	t.Helper()
	l, err := n.nl.LinkByName(ifn)
	if err != nil {
		t.Fatalf("%s: %s: %v", n.Name, ifn, err)
	}
	b, err := n.nl.LinkByName(br)
	if err != nil {
		t.Fatalf("%s: %s: %v", n.Name, br, err)
	}
	if err := n.nl.LinkSetMaster(l, b); err != nil {
		t.Fatalf("%s: %s into %s: %v", n.Name, ifn, br, err)
	}
}

// Exec runs a command inside the namespace (test tooling only) and returns
// its combined output.
func (n *NS) Exec(name string, args ...string) (string, error) {
	var out []byte
	err := n.Do(func() error {
		var err error
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	return string(out), err
}

// AddAddr adds a CIDR address to an interface.
func (n *NS) AddAddr(t testing.TB, ifn, cidr string) {
	t.Helper()
	l, err := n.nl.LinkByName(ifn)
	if err != nil {
		t.Fatalf("%s: %s: %v", n.Name, ifn, err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatalf("%s: address %s: %v", n.Name, cidr, err)
	}
	a.Flags |= 0x80 // IFA_F_NODAD: usable at once (IPv6)
	if err := n.nl.AddrAdd(l, a); err != nil {
		t.Fatalf("%s: add %s to %s: %v", n.Name, cidr, ifn, err)
	}
}

// Route adds a route to dst ("default" or CIDR) via gw.
func (n *NS) Route(t testing.TB, dst, gw string) {
	t.Helper()
	r := &netlink.Route{Gw: net.ParseIP(gw)}
	if dst != "default" {
		_, d, err := net.ParseCIDR(dst)
		if err != nil {
			t.Fatalf("%s: route %s: %v", n.Name, dst, err)
		}
		r.Dst = d
	}
	if err := n.nl.RouteAdd(r); err != nil {
		t.Fatalf("%s: route %s via %s: %v", n.Name, dst, gw, err)
	}
}

// Serve starts a TCP server in the namespace on addr. Each connection gets
// one line "<name> <remote-ip>\n", then everything the client sends is
// echoed back until it closes (so tests can hold connections open and check
// they still work). Stopped at cleanup.
func (n *NS) Serve(t testing.TB, name, addr string) {
	t.Helper()
	var ln net.Listener
	if err := n.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("%s: listen %s: %v", n.Name, addr, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				fmt.Fprintf(c, "%s %s\n", name, host)
				buf := make([]byte, 256)
				for {
					c.SetReadDeadline(time.Now().Add(60 * time.Second))
					k, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:k]); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// ServeUDP answers every datagram on addr with "<name> <remote-ip>".
func (n *NS) ServeUDP(t testing.TB, name, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := n.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatalf("%s: listen udp %s: %v", n.Name, addr, err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(from.String())
			pc.WriteTo([]byte(name+" "+host), from)
		}
	}()
}

// Dial opens a TCP connection from the namespace (optionally from a fixed
// local address, "" for any) and reads the server's greeting line. The
// caller closes the connection.
func (n *NS) Dial(local, addr string, timeout time.Duration) (net.Conn, string, error) {
	var c net.Conn
	err := n.Do(func() error {
		d := net.Dialer{Timeout: timeout}
		if local != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, "", fmt.Errorf("read greeting from %s: %w", addr, err)
	}
	return c, strings.TrimSpace(line), nil
}

// Ask dials, reads the greeting and closes: "<name> <seen-source>".
func (n *NS) Ask(local, addr string, timeout time.Duration) (string, error) {
	c, line, err := n.Dial(local, addr, timeout)
	if err != nil {
		return "", err
	}
	c.Close()
	return line, nil
}

// AskUDP sends one datagram and returns the answer.
func (n *NS) AskUDP(addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	if err := n.Do(func() error {
		var err error
		c, err = net.DialTimeout("udp", addr, timeout)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("hi")); err != nil {
		return "", err
	}
	buf := make([]byte, 256)
	k, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:k]), nil
}

// Suffix returns a short unique suffix for interface names.
func Suffix() string {
	return fmt.Sprintf("%04x", uint16(time.Now().UnixNano()>>10)^uint16(os.Getpid()))
}
