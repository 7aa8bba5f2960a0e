package filter

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/sirupsen/logrus"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Test topology (namespaces this test creates; the "appliance" namespace
// plays the appliance with bonds named lbext/lbint/lbfo):
//
//	client  c0 203.0.113.10  ── appliance lbext 203.0.113.2 (+ VIP 203.0.113.100)
//	member  m0 198.51.100.11 ── appliance lbint 198.51.100.2 (API :8080 here)
//	peer    p0 192.0.2.2     ┐
//	other   o0 192.0.2.3     ┴─ bridge br0 ── appliance lbfo 192.0.2.1
//
// Servers in the appliance namespace: the API on 198.51.100.2:8080 (listen:
// internal), the VIP service on 203.0.113.100:80 (IPVS is not on the host;
// a local listener stands in: its packets take the same input path), and an
// unrelated service on 203.0.113.2:22 that nothing admits.

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

type lab struct {
	app, client, member, peer, other *testkit.NS
}

func newLab(t *testing.T) *lab {
	l := &lab{
		app:    testkit.NewNS(t, "appliance"),
		client: testkit.NewNS(t, "client"),
		member: testkit.NewNS(t, "member"),
		peer:   testkit.NewNS(t, "peer"),
		other:  testkit.NewNS(t, "other"),
	}
	testkit.Veth(t, l.client, "c0", "203.0.113.10/24", l.app, "lbext", "203.0.113.2/24")
	l.app.AddAddr(t, "lbext", "203.0.113.100/32")
	testkit.Veth(t, l.member, "m0", "198.51.100.11/24", l.app, "lbint", "198.51.100.2/24")
	sw := testkit.NewNS(t, "switch")
	sw.Bridge(t, "br0", "")
	testkit.Veth(t, l.app, "lbfo", "192.0.2.1/25", sw, "s0", "")
	testkit.Veth(t, l.peer, "p0", "192.0.2.2/25", sw, "s1", "")
	testkit.Veth(t, l.other, "o0", "192.0.2.3/25", sw, "s2", "")
	for _, p := range []string{"s0", "s1", "s2"} {
		sw.Enslave(t, p, "br0")
	}
	// The client routes everything through the appliance, so it can try
	// the appliance's Internal address from the External side.
	l.client.Route(t, "default", "203.0.113.2")
	l.member.Route(t, "default", "198.51.100.2")
	l.app.Serve(t, "api", "198.51.100.2:8080")
	l.app.Serve(t, "vip", "203.0.113.100:80")
	l.app.Serve(t, "ssh", "203.0.113.2:22")
	return l
}

func labPolicy() *Policy {
	return &Policy{Zones: []Zone{
		{Name: "external", Iface: "lbext", Ping: true,
			Services: []Service{{Name: "web", Addr: netip.MustParseAddr("203.0.113.100"), Proto: TCP, From: 80, To: 80}}},
		{Name: "internal", Iface: "lbint", Ping: true,
			Ports: []Port{{Name: "api", Proto: TCP, Port: 8080}}},
		{Name: "failover", Iface: "lbfo", PeerPing: true,
			Peers:     []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32")},
			PeerRules: []PeerRule{{Name: "vrrp", Proto: VRRP}, {Name: "conntrack-sync", Proto: UDP, Port: 7040}}},
	}}
}

func open(ns *testkit.NS, addr string) bool {
	c, _, err := ns.Dial("", addr, 700*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// vrrpListener counts VRRP (protocol 112) packets the appliance's raw
// socket receives, by source: what passes the input hook.
type vrrpListener struct {
	mu   sync.Mutex
	seen map[string]int
}

func listenVRRP(t *testing.T, ns *testkit.NS) *vrrpListener {
	var pc net.PacketConn
	if err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("ip4:112", "0.0.0.0")
		return err
	}); err != nil {
		t.Fatalf("raw vrrp socket: %v", err)
	}
	v := &vrrpListener{seen: map[string]int{}}
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
			v.mu.Lock()
			v.seen[from.(*net.IPAddr).IP.String()]++
			v.mu.Unlock()
		}
	}()
	return v
}

func (v *vrrpListener) count(src string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seen[src]
}

// sendVRRP sends n protocol-112 packets from ns to dst (content does not
// matter to the filter).
func sendVRRP(t *testing.T, ns *testkit.NS, dst string, n int) {
	t.Helper()
	if err := ns.Do(func() error {
		c, err := net.Dial("ip4:112", dst)
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < n; i++ {
			if _, err := c.Write([]byte{0x31, 1, 100, 1, 0, 20, 0, 0, 203, 0, 113, 100}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("%s: send vrrp: %v", ns.Name, err)
	}
}

// pingFlood sends n echo requests (one id) from ns to dst as fast as it can
// and returns how many replies came back within wait after the last one.
func pingFlood(t *testing.T, ns *testkit.NS, dst string, n int, wait time.Duration) int {
	t.Helper()
	replies := 0
	if err := ns.Do(func() error {
		c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.IPAddr{IP: net.ParseIP(dst)}
		id := os.Getpid() & 0xffff
		for i := 0; i < n; i++ {
			m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: i, Data: []byte("fulcrum")}}
			b, err := m.Marshal(nil)
			if err != nil {
				return err
			}
			if _, err := c.WriteTo(b, to); err != nil {
				return err
			}
		}
		c.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 1500)
		for {
			k, from, err := c.ReadFrom(buf)
			if err != nil {
				return nil // deadline: counting is over
			}
			rm, err := icmp.ParseMessage(1, buf[:k])
			if err == nil && rm.Type == ipv4.ICMPTypeEchoReply && from.String() == dst {
				if e, ok := rm.Body.(*icmp.Echo); ok && e.ID == id {
					replies++
				}
			}
		}
	}); err != nil {
		t.Fatalf("%s: ping %s: %v", ns.Name, dst, err)
	}
	return replies
}

// TestInputFilterRealPackets proves the defect, then each zone's rules with
// real packets.
func TestInputFilterRealPackets(t *testing.T) {
	l := newLab(t)
	vrrp := listenVRRP(t, l.app)

	// Precondition: with nothing filtering input, the API answers a client
	// on External (the defect), and so do unrelated services, VRRP from any
	// host on the failover segment and every echo request.
	if !open(l.client, "198.51.100.2:8080") {
		t.Fatal("precondition: without the filter the API must answer from External (the lab cannot show the defect)")
	}
	if !open(l.client, "203.0.113.2:22") {
		t.Fatal("precondition: without the filter port 22 must answer from External")
	}
	sendVRRP(t, l.other, "192.0.2.1", 3)
	if !waitFor(func() bool { return vrrp.count("192.0.2.3") == 3 }) {
		t.Fatalf("precondition: VRRP from a non-peer must arrive without the filter (got %d)", vrrp.count("192.0.2.3"))
	}
	if got := pingFlood(t, l.client, "203.0.113.2", 200, 500*time.Millisecond); got < 190 {
		t.Fatalf("precondition: %d of 200 echo requests answered without the filter", got)
	}

	m := NewManager(l.app.Fd(), quiet())
	if _, err := m.Apply(ctx, labPolicy()); err != nil {
		t.Fatal(err)
	}

	checks := []struct {
		what string
		from *testkit.NS
		addr string
		want bool
	}{
		{"API from External", l.client, "198.51.100.2:8080", false},
		{"API via the External self IP", l.client, "203.0.113.2:8080", false},
		{"port 22 from External", l.client, "203.0.113.2:22", false},
		{"VIP service from External", l.client, "203.0.113.100:80", true},
		{"API from Internal", l.member, "198.51.100.2:8080", true},
		{"VIP service from Internal (not an internal VS)", l.member, "203.0.113.100:80", false},
		{"API from the failover peer", l.peer, "198.51.100.2:8080", false},
	}
	for _, c := range checks {
		if got := open(c.from, c.addr); got != c.want {
			t.Errorf("%s (%s): open = %v, want %v", c.what, c.addr, got, c.want)
		}
	}

	// VRRP: the peer's adverts pass, a third speaker's do not.
	sendVRRP(t, l.peer, "192.0.2.1", 5)
	sendVRRP(t, l.other, "192.0.2.1", 5)
	if !waitFor(func() bool { return vrrp.count("192.0.2.2") == 5 }) {
		t.Errorf("VRRP from the peer: %d of 5 arrived", vrrp.count("192.0.2.2"))
	}
	time.Sleep(200 * time.Millisecond)
	if got := vrrp.count("192.0.2.3"); got != 3 {
		t.Errorf("VRRP from a non-peer passed the filter: %d packets (3 were from the precondition)", got-3)
	}

	// Echo flood: at most the burst plus the rate over the flood's length.
	start := time.Now()
	got := pingFlood(t, l.client, "203.0.113.2", 300, 500*time.Millisecond)
	allowed := DefaultPingBurst + int(time.Since(start).Seconds()*DefaultPingRate) + 1
	t.Logf("echo flood of 300: %d answered (limit allows %d)", got, allowed)
	if got == 0 || got > allowed {
		t.Errorf("echo flood: %d of 300 answered, want 1..%d", got, allowed)
	}
	// On failover only the peer gets answers to ping.
	if got := pingFlood(t, l.peer, "192.0.2.1", 5, 300*time.Millisecond); got != 5 {
		t.Errorf("ping from the failover peer: %d of 5 answered", got)
	}
	if got := pingFlood(t, l.other, "192.0.2.1", 5, 300*time.Millisecond); got != 0 {
		t.Errorf("ping from a non-peer on failover: %d answered, want 0", got)
	}

	// Remove: everything answers again.
	if _, err := m.Remove(); err != nil {
		t.Fatal(err)
	}
	if !open(l.client, "198.51.100.2:8080") {
		t.Error("after Remove the table must be gone (API unreachable from External)")
	}
}

func waitFor(cond func() bool) bool {
	for i := 0; i < 40; i++ {
		if cond() {
			return true
		}
		time.Sleep(25 * time.Millisecond)
	}
	return cond()
}

// dump renders the table as the kernel reports it (counter values left
// out: traffic changes them), for exact comparisons.
func dump(t *testing.T, m *Manager) string {
	t.Helper()
	rules, err := m.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if rules == nil {
		return "<no table>"
	}
	var chains []string
	for ch := range rules {
		chains = append(chains, ch)
	}
	sort.Strings(chains)
	var b strings.Builder
	for _, ch := range chains {
		fmt.Fprintf(&b, "chain %s\n", ch)
		for _, r := range rules[ch] {
			c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			fmt.Fprintf(&b, "  [%s]", c)
			for _, e := range r.Exprs {
				if _, ok := e.(*expr.Counter); ok {
					b.WriteString(" counter")
					continue
				}
				fmt.Fprintf(&b, " %T%+v", e, e)
			}
			b.WriteString("\n")
		}
	}
	sets, err := m.Sets()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range sets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&b, "set %s\n", n)
		var el []string
		for _, e := range sets[n] {
			el = append(el, fmt.Sprintf("  [%s] %x\n", e.Comment, e.Key))
		}
		sort.Strings(el)
		b.WriteString(strings.Join(el, ""))
	}
	return b.String()
}

var ctx = context.Background()

func TestRollbackRestoresExactly(t *testing.T) {
	ns := testkit.NewNS(t, "appliance")
	m := NewManager(ns.Fd(), quiet())

	// Nothing → A → rollback: no table again.
	ch, err := m.Apply(ctx, labPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Undo(); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, m); got != "<no table>" {
		t.Fatalf("rollback of the first apply left:\n%s", got)
	}

	// A → B → rollback: exactly A.
	if _, err := m.Apply(ctx, labPolicy()); err != nil {
		t.Fatal(err)
	}
	a := dump(t, m)
	if !strings.Contains(a, "[service web 203.0.113.100 tcp/80-80]") || !strings.Contains(a, "[peer vrrp vrrp from 192.0.2.2/32]") {
		t.Fatalf("policy A not in the kernel as expected:\n%s", a)
	}
	b := labPolicy()
	b.Zones[0].Services = append(b.Zones[0].Services, Service{Name: "dns", Addr: netip.MustParseAddr("2001:db8:3::100"), Proto: UDP, From: 53, To: 53})
	b.Zones[2].Peers = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/25")}
	b.PingRate = 1
	ch, err = m.Apply(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	bd := dump(t, m)
	if bd == a || !strings.Contains(bd, "dns 2001:db8:3::100") {
		t.Fatalf("policy B not installed:\n%s", bd)
	}
	if err := ch.Undo(); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, m); got != a {
		t.Fatalf("rollback did not restore A exactly:\nwant:\n%s\ngot:\n%s", a, got)
	}

	// A rejected policy changes nothing.
	bad := labPolicy()
	bad.Zones[1].Iface = "lbext"
	if _, err := m.Apply(ctx, bad); err == nil || !strings.Contains(err.Error(), "interface lbext is in two zones") {
		t.Fatalf("invalid policy: err = %v", err)
	}
	if got := dump(t, m); got != a {
		t.Fatalf("a rejected policy changed the table:\n%s", got)
	}
	// Idempotent: applying A again gives the same table.
	if _, err := m.Apply(ctx, labPolicy()); err != nil {
		t.Fatal(err)
	}
	if got := dump(t, m); got != a {
		t.Fatalf("re-applying A changed the table:\n%s", got)
	}
}

// TestInputFilterIPv6: neighbour discovery passes the default drop (or
// nothing on IPv6 would work at all), an IPv6 VIP service answers, other
// ports on the same addresses are dropped, ping6 is limited like ping.
func TestInputFilterIPv6(t *testing.T) {
	app := testkit.NewNS(t, "appliance")
	client := testkit.NewNS(t, "client")
	testkit.Veth(t, client, "c0", "2001:db8:3::10/64", app, "lbext", "2001:db8:3::2/64")
	app.AddAddr(t, "lbext", "2001:db8:3::100/128")
	app.Serve(t, "vip6", "[::]:80") // the VIP may still be tentative; the filter decides by address
	app.Serve(t, "ssh6", "[::]:22")
	// The addresses may still be tentative (DAD) for a moment.
	if !waitFor(func() bool { return open(client, "[2001:db8:3::2]:22") }) {
		t.Fatal("precondition: without the filter [2001:db8:3::2]:22 must answer")
	}
	// Forget the neighbour entries, so the filtered run needs ND again.
	for _, ns := range []*testkit.NS{app, client} {
		if out, err := ns.Exec("ip", "-6", "neigh", "flush", "all"); err != nil {
			t.Fatalf("%s: neigh flush: %v %s", ns.Name, err, out)
		}
	}
	m := NewManager(app.Fd(), quiet())
	p := &Policy{Zones: []Zone{{Name: "external", Iface: "lbext", Ping: true,
		Services: []Service{{Name: "web6", Addr: netip.MustParseAddr("2001:db8:3::100"), Proto: TCP, From: 80, To: 80}}}}}
	if _, err := m.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if !open(client, "[2001:db8:3::100]:80") {
		t.Error("IPv6 VIP service from External: not open (is neighbour discovery dropped?)")
	}
	if open(client, "[2001:db8:3::2]:22") {
		t.Error("[2001:db8:3::2]:22 answered through the filter")
	}
	got := pingFlood6(t, client, "2001:db8:3::2", 200, 500*time.Millisecond)
	t.Logf("echo6 flood of 200: %d answered", got)
	if got == 0 || got > DefaultPingBurst+DefaultPingRate {
		t.Errorf("echo6 flood: %d of 200 answered, want 1..%d", got, DefaultPingBurst+DefaultPingRate)
	}
}

func pingFlood6(t *testing.T, ns *testkit.NS, dst string, n int, wait time.Duration) int {
	t.Helper()
	replies := 0
	if err := ns.Do(func() error {
		c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.IPAddr{IP: net.ParseIP(dst)}
		id := os.Getpid() & 0xffff
		for i := 0; i < n; i++ {
			m := icmp.Message{Type: ipv6.ICMPTypeEchoRequest, Body: &icmp.Echo{ID: id, Seq: i, Data: []byte("fulcrum")}}
			b, err := m.Marshal(nil)
			if err != nil {
				return err
			}
			if _, err := c.WriteTo(b, to); err != nil {
				return err
			}
		}
		c.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 1500)
		for {
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				return nil // deadline: counting is over
			}
			rm, err := icmp.ParseMessage(58, buf[:k])
			if err == nil && rm.Type == ipv6.ICMPTypeEchoReply {
				if e, ok := rm.Body.(*icmp.Echo); ok && e.ID == id {
					replies++
				}
			}
		}
	}); err != nil {
		t.Fatalf("%s: ping6 %s: %v", ns.Name, dst, err)
	}
	return replies
}
