package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The namespace lab: two appliance nodes (lb1, lb2) and a client namespace
// that also plays the switches: bridge "brf" joins the nodes' "failover"
// links (192.0.2.0/25: lb1 .1, lb2 .2), bridge "bre" their "external" links
// and the client (203.0.113.10). Each node also has an "internal" link
// (198.51.100.2/.3) and a TCP listener on :8080 that answers its name, so
// the client can tell which node holds the VIP 203.0.113.100.

var (
	vip       = netip.MustParseAddr("203.0.113.100")
	clientIP  = "203.0.113.10/24"
	vip6      = netip.MustParseAddr("2001:db8::100")
	clientIP6 = "2001:db8::10/64"
	labPort   = 8080
	nodeNames = [2]string{"lb1", "lb2"}
)

type labNode struct {
	name   string
	nsName string
	ns     netns.NsHandle
	h      *netlink.Handle
	extMAC net.HardwareAddr
}

type lab struct {
	t      testing.TB
	id     string
	nodes  [2]*labNode
	client *labNode
}

func needRoot(t testing.TB) {
	t.Helper()
	// root for namespaces, veth links and raw sockets; iproute2 for the
	// named namespaces keepalived is started in (ip netns exec)
	testkit.Require(t, testkit.Root, testkit.Tool("ip"))
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newNS(t testing.TB, name, role string) *labNode {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	lo, err := h.LinkByName("lo")
	if err == nil {
		h.LinkSetUp(lo)
	}
	return &labNode{name: role, nsName: name, ns: ns, h: h}
}

func (n *labNode) addr(t testing.TB, link, cidr string) {
	t.Helper()
	l, err := n.h.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.h.AddrAdd(l, a); err != nil {
		t.Fatalf("%s: add %s to %s: %v", n.name, cidr, link, err)
	}
}

func (n *labNode) setLink(t testing.TB, link string, up bool) {
	t.Helper()
	l, err := n.h.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	if up {
		err = n.h.LinkSetUp(l)
	} else {
		err = n.h.LinkSetDown(l)
	}
	if err != nil {
		t.Fatalf("%s: set %s up=%v: %v", n.name, link, up, err)
	}
}

// newLab builds the lab for t. Labs are independent (unique names), so
// their tests run in parallel.
func newLab(t *testing.T) *lab {
	needRoot(t)
	t.Parallel()
	return buildLab(t)
}

func buildLab(t testing.TB) *lab {
	needRoot(t)
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	l := &lab{t: t, id: id}
	l.client = newNS(t, "vrc-"+id, "client")
	c := l.client
	noDAD(t, c)
	for _, br := range []string{"brf", "bre"} {
		off := false
		if err := c.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: br}, MulticastSnooping: &off}); err != nil {
			t.Fatalf("bridge %s: %v", br, err)
		}
		c.setLink(t, br, true)
	}
	c.addr(t, "bre", clientIP)
	c.addr(t, "bre", clientIP6)
	for i := range l.nodes {
		n := newNS(t, fmt.Sprintf("vr%d-%s", i+1, id), nodeNames[i])
		noDAD(t, n)
		l.nodes[i] = n
		for _, p := range []struct{ local, peer, br string }{{fmt.Sprintf("f%d", i+1), "failover", "brf"}, {fmt.Sprintf("e%d", i+1), "external", "bre"}} {
			v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.local}, PeerName: p.peer, PeerNamespace: netlink.NsFd(n.ns)}
			if err := c.h.LinkAdd(v); err != nil {
				t.Fatalf("veth %s/%s: %v", p.local, p.peer, err)
			}
			br, _ := c.h.LinkByName(p.br)
			loc, _ := c.h.LinkByName(p.local)
			if err := c.h.LinkSetMaster(loc, br); err != nil {
				t.Fatal(err)
			}
			c.setLink(t, p.local, true)
			n.setLink(t, p.peer, true)
		}
		// the host kernel has no dummy driver: a veth pair stands in for the
		// internal bond
		if err := n.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "internal"}, PeerName: "inpeer"}); err != nil {
			t.Fatal(err)
		}
		n.setLink(t, "inpeer", true)
		n.setLink(t, "internal", true)
		n.addr(t, "failover", fmt.Sprintf("192.0.2.%d/25", i+1))
		n.addr(t, "external", fmt.Sprintf("203.0.113.%d/24", i+2))
		n.addr(t, "internal", fmt.Sprintf("198.51.100.%d/24", i+2))
		n.addr(t, "external", fmt.Sprintf("2001:db8::%d/64", i+2))
		ext, _ := n.h.LinkByName("external")
		n.extMAC = ext.Attrs().HardwareAddr
		l.listen(n)
	}
	return l
}

// noDAD turns off IPv6 duplicate address detection in the namespace so
// link-local and lab addresses are usable at once.
func noDAD(t testing.TB, n *labNode) {
	t.Helper()
	run(t, "ip", "netns", "exec", n.nsName, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
}

// listen serves the node's name on :8080 inside its namespace.
func (l *lab) listen(n *labNode) {
	var ln net.Listener
	err := inNS(n.ns, func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", labPort)) // IPv4 and IPv6
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(n.name))
			c.Close()
		}
	}()
}

// who asks the VIP from the client namespace which node answers ("" if none).
func (l *lab) who(timeout time.Duration) string { return l.whoAt(vip, timeout) }

func (l *lab) whoAt(addr netip.Addr, timeout time.Duration) string {
	var c net.Conn
	err := inNS(l.client.ns, func() (err error) {
		d := net.Dialer{Timeout: timeout}
		c, err = d.Dial("tcp", net.JoinHostPort(addr.String(), fmt.Sprint(labPort)))
		return err
	})
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(timeout))
	b, _ := io.ReadAll(c)
	return string(b)
}

// neighbour is the node whose MAC the client's neighbour entry for the VIP
// holds ("" if none).
func (l *lab) neighbour() string { return l.neighbourOf(vip) }

func (l *lab) neighbourOf(addr netip.Addr) string {
	br, err := l.client.h.LinkByName("bre")
	if err != nil {
		return ""
	}
	fam := netlink.FAMILY_V4
	if addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, _ := l.client.h.NeighList(br.Attrs().Index, fam)
	for _, e := range ns {
		if e.IP.Equal(addr.AsSlice()) {
			for _, n := range l.nodes {
				if bytes.Equal(e.HardwareAddr, n.extMAC) {
					return n.name
				}
			}
		}
	}
	return ""
}

// hasVIP reports whether the node's external link carries the VIP.
func (n *labNode) hasVIP() bool { return n.has(vip) }

func (n *labNode) has(addr netip.Addr) bool {
	l, err := n.h.LinkByName("external")
	if err != nil {
		return false
	}
	as, _ := n.h.AddrList(l, netlink.FAMILY_ALL)
	for _, a := range as {
		if a.IP.Equal(addr.AsSlice()) {
			return true
		}
	}
	return false
}

// labConfig is a vrrp section for the lab: one IPv4 instance, VRID 51,
// carrying the VIP on external and the floating gateway on internal.
func labConfig(prio int, mod func(*config.VRRP)) config.VRRP {
	c := config.VRRP{Priority: prio, Instances: []config.VRRPInstance{{VRID: 51, External: hostPrefixes(vip.String() + "/24"), Internal: hostPrefixes("198.51.100.1/24")}}}
	if mod != nil {
		mod(&c)
	}
	c.ApplyDefaults()
	return c
}

var labIfs = config.VRRPBonds{Heartbeat: "failover", Internal: "internal", External: "external"}

type running struct {
	*Node
	cancel context.CancelFunc
	done   chan error
	events <-chan Event
}

// start runs a node of ours in lab node i.
func (l *lab) start(i int, cfg config.VRRP) *running {
	l.t.Helper()
	return l.startWith(i, Options{Config: cfg})
}

// startWith runs node i with o (its interfaces, log and namespace filled in).
func (l *lab) startWith(i int, o Options) *running {
	l.t.Helper()
	log := logrus.New()
	log.SetLevel(logrus.DebugLevel)
	log.SetOutput(testWriter{l.t, nodeNames[i]})
	o.Interfaces, o.Log, o.NetNS = labIfs, log, l.nodes[i].ns
	n, err := New(o)
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Node: n, cancel: cancel, done: make(chan error, 1)}
	r.events, _ = n.Subscribe(64)
	go func() { r.done <- n.Run(ctx) }()
	l.t.Cleanup(func() { r.stop() })
	return r
}

// stop cancels the node (it resigns) and waits for Run to return.
func (r *running) stop() error {
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(5 * time.Second):
		return fmt.Errorf("node did not stop")
	}
}

func (r *running) state() fsm.State { return r.Status()[0].State }

type testWriter struct {
	t    testing.TB
	name string
}

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s: %s", w.name, strings.TrimSpace(string(b)))
	return len(b), nil
}

// waitFor polls cond every 10 ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	testkit.Eventually(t, timeout, 10*time.Millisecond, func() error {
		if !cond() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
	return time.Since(start)
}

func (l *lab) waitWho(want string, timeout time.Duration) time.Duration {
	l.t.Helper()
	var last string
	d := waitFor(l.t, timeout, "the client to reach "+want, func() bool { last = l.who(100 * time.Millisecond); return last == want })
	_ = last
	return d
}

func hostPrefixes(ss ...string) []config.HostPrefix {
	out := make([]config.HostPrefix, len(ss))
	for i, s := range ss {
		p, err := config.ParseHostPrefix(s)
		if err != nil {
			panic(err)
		}
		out[i] = config.HostPrefix{Prefix: p}
	}
	return out
}
