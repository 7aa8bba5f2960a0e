package dhcp_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/netsetup/dhcp"
	"github.com/fulcrum-lb/fulcrum/netsetup/dhcp/dhcptest"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Management plan addresses (DESIGN.md): the lab's DHCP server and the
// address it hands out.
var (
	serverIP = net.IPv4(192, 0, 2, 254).To4()
	offerIP  = net.IPv4(192, 0, 2, 140).To4()
	mask25   = net.CIDRMask(25, 32)
)

type nsPair struct {
	srv, cli     *testkit.NS
	srvNL, cliNL *netlink.Handle
}

// inNS runs fn with the thread in ns; an error fails the test.
func inNS(t *testing.T, ns *testkit.NS, fn func() error) {
	t.Helper()
	if err := ns.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// topology: namespaces dhs (eth0 192.0.2.254/25, DHCP server) and dhc
// (eth0, unconfigured) joined by a veth pair.
func topology(t *testing.T) nsPair {
	t.Helper()
	p := nsPair{srv: testkit.NewNS(t, "dhs"), cli: testkit.NewNS(t, "dhc")}
	p.srvNL, p.cliNL = p.srv.Netlink(), p.cli.Netlink()
	testkit.Veth(t, p.srv, "eth0", (&net.IPNet{IP: serverIP, Mask: mask25}).String(), p.cli, "eth0", "")
	return p
}

func startServer(t *testing.T, p nsPair, lease time.Duration) *dhcptest.Server {
	t.Helper()
	var s *dhcptest.Server
	inNS(t, p.srv, func() error {
		var err error
		s, err = dhcptest.Start(dhcptest.Config{Interface: "eth0", ServerIP: serverIP, Mask: mask25, Offer: offerIP,
			Router: serverIP, DNS: []net.IP{serverIP}, LeaseTime: lease})
		return err
	})
	t.Cleanup(s.Close)
	return s
}

func openClient(t *testing.T, p nsPair, resolv string) *dhcp.Client {
	t.Helper()
	log := logrus.New()
	log.SetLevel(logrus.DebugLevel)
	var c *dhcp.Client
	inNS(t, p.cli, func() error {
		var err error
		c, err = dhcp.Open(dhcp.Options{Interface: "eth0", Handle: p.cliNL, ResolvConf: resolv, Log: log.WithField("test", t.Name())})
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// leaseAddr is the client's 192.0.2.140 address (nil if absent).
func leaseAddr(t *testing.T, p nsPair) *netlink.Addr {
	t.Helper()
	eth, err := p.cliNL.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := p.cliNL.AddrList(eth, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IP.Equal(offerIP) {
			return &a
		}
	}
	return nil
}

func dhcpDefaultRoute(t *testing.T, p nsPair) *netlink.Route {
	t.Helper()
	routes, err := p.cliNL.RouteList(nil, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(serverIP) {
			return &r
		}
	}
	return nil
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	testkit.Eventually(t, timeout, 50*time.Millisecond, func() error {
		if !ok() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

// TestLeaseAppliedRenewedAndReleased runs the client's lease loop against a
// server4 DHCP server across a veth pair: the client namespace gets the
// address (with the lease time as lifetime), a default route via the router
// at metric 1024 beside a static default route, and the DNS server in its
// resolv.conf; the lease is renewed at T1; stopping releases it and removes
// address and route.
func TestLeaseAppliedRenewedAndReleased(t *testing.T) {
	p := topology(t)
	srv := startServer(t, p, 4*time.Second)
	// A static default route (as the config's routes would install) that
	// the DHCP route must not replace.
	eth, _ := p.cliNL.LinkByName("eth0")
	if err := p.cliNL.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 200).To4(), Mask: mask25}}); err != nil {
		t.Fatal(err)
	}
	static := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IPv4(192, 0, 2, 201).To4()}
	if err := p.cliNL.RouteAdd(static); err != nil {
		t.Fatal(err)
	}
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	c := openClient(t, p, resolv)

	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var leases []*dhcp.Lease
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- c.Run(ctx, func(l *dhcp.Lease) { mu.Lock(); leases = append(leases, l); mu.Unlock() })
	}()
	nLeases := func() int { mu.Lock(); defer mu.Unlock(); return len(leases) }
	waitFor(t, "first lease", 15*time.Second, func() bool { return nLeases() >= 1 })
	t.Logf("DISCOVER → lease applied: %v", time.Since(start).Round(time.Millisecond))

	a := leaseAddr(t, p)
	if a == nil {
		t.Fatalf("client namespace has no %s after the lease", offerIP)
	}
	if ones, _ := a.Mask.Size(); ones != 25 {
		t.Errorf("lease address mask /%d, want /25", ones)
	}
	if a.ValidLft <= 0 || a.ValidLft > 4 {
		t.Errorf("address valid lifetime %ds, want the 4 s lease", a.ValidLft)
	}
	r := dhcpDefaultRoute(t, p)
	if r == nil {
		t.Fatal("no default route via the DHCP router")
	}
	if r.Priority != dhcp.RouteMetric {
		t.Errorf("DHCP default route metric %d, want %d", r.Priority, dhcp.RouteMetric)
	}
	routes, _ := p.cliNL.RouteList(nil, unix.AF_INET)
	staticThere := false
	for _, r := range routes {
		if r.Gw.Equal(static.Gw) && r.Priority == 0 {
			staticThere = true
		}
	}
	if !staticThere {
		t.Errorf("the static default route via %s was replaced: %v", static.Gw, routes)
	}
	b, err := os.ReadFile(resolv)
	if err != nil || !strings.Contains(string(b), "nameserver 192.0.2.254\n") {
		t.Errorf("resolv.conf %q (%v), want nameserver 192.0.2.254", b, err)
	}

	// T1 is 2 s: the loop renews, the server sees a REQUEST from the
	// bound address, and the address stays.
	waitFor(t, "a renewal", 10*time.Second, func() bool { return srv.Counts().Renew >= 1 && nLeases() >= 2 })
	if leaseAddr(t, p) == nil {
		t.Error("address gone after renewal")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	waitFor(t, "the RELEASE", 5*time.Second, func() bool { return srv.Counts().Release == 1 })
	if leaseAddr(t, p) != nil {
		t.Error("address still there after release")
	}
	if dhcpDefaultRoute(t, p) != nil {
		t.Error("DHCP default route still there after release")
	}
	t.Logf("server saw %+v", srv.Counts())
}

// TestNakDropsTheLeaseAndStartsOver: a server refusing the renewal makes
// the client remove the address and run DISCOVER again.
func TestNakDropsTheLeaseAndStartsOver(t *testing.T) {
	p := topology(t)
	srv := startServer(t, p, 4*time.Second)
	c := openClient(t, p, filepath.Join(t.TempDir(), "resolv.conf"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "first lease", 15*time.Second, func() bool { return leaseAddr(t, p) != nil })
	srv.SetNak(true)
	waitFor(t, "the address to go after the NAK", 10*time.Second, func() bool { return leaseAddr(t, p) == nil })
	if srv.Counts().Discover < 2 {
		// The loop starts over at once; give its DISCOVER a moment.
		waitFor(t, "a new DISCOVER", 5*time.Second, func() bool { return srv.Counts().Discover >= 2 })
	}
	srv.SetNak(false)
	waitFor(t, "the lease back", 15*time.Second, func() bool { return leaseAddr(t, p) != nil })
}

// TestNoServerNoLease: without a server Obtain fails when its context ends,
// naming the interface, and changes nothing.
func TestNoServerNoLease(t *testing.T) {
	p := topology(t)
	c := openClient(t, p, filepath.Join(t.TempDir(), "resolv.conf"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	l, err := c.Obtain(ctx)
	if err == nil {
		t.Fatalf("got a lease %v with no server", l)
	}
	if el := time.Since(start); el > 6*time.Second {
		t.Errorf("Obtain took %v past a 3 s context", el)
	}
	if !strings.Contains(err.Error(), "dhcp eth0: no lease") {
		t.Errorf("error %q does not say there was no lease on eth0", err)
	}
	if leaseAddr(t, p) != nil {
		t.Error("an address appeared without a lease")
	}
}

func TestEnabled(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		m    *config.Management
		want bool
	}{
		{nil, false},
		{&config.Management{Interface: "eth6"}, true},
		{&config.Management{Interface: "eth6", Address: config.Prefix{Prefix: netip.MustParsePrefix("192.0.2.130/25")}}, false},
		{&config.Management{Interface: "eth6", DHCP: &yes}, true},
		{&config.Management{Interface: "eth6", DHCP: &no}, false},
	} {
		if got := dhcp.Enabled(c.m); got != c.want {
			t.Errorf("Enabled(%+v) = %v, want %v", c.m, got, c.want)
		}
	}
}
