//go:build guest

package ipvs_test

// Kernel-level IPVS tests. They need a kernel with ip_vs (the host's has
// none), so they are built only with the "guest" tag, which qemu/guesttest
// sets when it compiles them for a QEMU guest booted with ip_vs, nf_tables,
// veth and bridge available (qemu TestIPVSBehaviourOnTheRealKernel); a host
// run does not see them at all. Each
// test builds its own topology of anonymous namespaces:
//
//	client ns  lbc0 203.0.113.10 (+.11)  ─┐
//	inet ns    lbi0 203.0.113.50         ─┤ bridge lbext 203.0.113.2/24 (+ VIPs)   LB ns
//	member ns  lbm0 198.51.100.1N        ─┤ bridge lbint 198.51.100.2/24 (+ local addresses)
//	...                                   ┘
//
// The LB namespace plays the appliance: IPVS through moby/ipvs bound to it,
// the nftables table through lbcore/kernel/nat, both applied by lbcore/lbapply.

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nat"
	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/sirupsen/logrus"
)

func requireIPVS(t testing.TB) {
	t.Helper()
	testkit.Require(t, testkit.Root, testkit.Path("/proc/net/ip_vs", "a kernel with IPVS (run in the QEMU guest)"))
}

type guestLab struct {
	t       testing.TB
	lb      *testkit.NS
	client  *testkit.NS
	inet    *testkit.NS
	members map[string]*testkit.NS // by address
	rec     *ipvs.Reconciler
	nat     *nat.Manager
	applier *lbapply.Applier
}

const labNetwork = `
version: 1
network:
  failover: {bond: lbfo, members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {bond: lbint, members: [eth2], addresses: [198.51.100.2/24]}
  external: {bond: lbext, members: [eth3], addresses: [203.0.113.2/24]}
local_address_pools:
  la: {addresses: [198.51.100.201-209]}
snat:
  ipools:
    out: {addresses: [203.0.113.200-203.0.113.209]}
  rules:
    - {source: 198.51.100.0/24, ipool: out}
`

func discard() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// newGuestLab builds the LB, client and internet namespaces and members at
// the given addresses (each in its own namespace, serving TCP on :8080 and
// :80 and UDP on :5353, answering "<name> <seen-source>"). routeBack gives
// members a default route through the LB (NAT and DR need it; FullNAT must
// work without).
func newGuestLab(t testing.TB, members []string, routeBack bool, opt ipvs.Options) *guestLab {
	requireIPVS(t)
	l := &guestLab{t: t, members: map[string]*testkit.NS{}}
	l.lb = testkit.NewNS(t, "lb")
	l.client = testkit.NewNS(t, "lbclient")
	l.inet = testkit.NewNS(t, "lbinet")
	l.lb.Bridge(t, "lbext", "203.0.113.2/24")
	l.lb.Bridge(t, "lbint", "198.51.100.2/24")
	for i := 100; i <= 105; i++ { // VIPs (VRRP's job on the appliance)
		l.lb.AddAddr(t, "lbext", fmt.Sprintf("203.0.113.%d/32", i))
	}
	for i := 200; i <= 209; i++ { // SNAT pool
		l.lb.AddAddr(t, "lbext", fmt.Sprintf("203.0.113.%d/32", i))
	}
	for i := 201; i <= 209; i++ { // FullNAT local addresses (netsetup's job)
		l.lb.AddAddr(t, "lbint", fmt.Sprintf("198.51.100.%d/32", i))
	}
	l.lb.Sysctl(t, "net.ipv4.ip_forward", "1")
	l.lb.Sysctl(t, "net.ipv4.vs.conntrack", "1")
	l.lb.Sysctl(t, "net.ipv4.vs.expire_nodest_conn", "1")
	l.lb.Sysctl(t, "net.ipv4.conf.all.rp_filter", "0")
	testkit.Veth(t, l.client, "lbc0", "203.0.113.10/24", l.lb, "lbpc", "")
	l.client.AddAddr(t, "lbc0", "203.0.113.11/24")
	l.client.Route(t, "default", "203.0.113.2")
	l.lb.Enslave(t, "lbpc", "lbext")
	testkit.Veth(t, l.inet, "lbi0", "203.0.113.50/24", l.lb, "lbpi", "")
	l.lb.Enslave(t, "lbpi", "lbext")
	l.inet.Serve(t, "internet", "203.0.113.50:8080")
	for i, a := range members {
		ns := testkit.NewNS(t, "lbm"+a)
		peer := fmt.Sprintf("lbpm%d", i)
		testkit.Veth(t, ns, "lbm0", a+"/24", l.lb, peer, "")
		l.lb.Enslave(t, peer, "lbint")
		if routeBack {
			ns.Route(t, "default", "198.51.100.2")
		}
		name := "m" + a[strings.LastIndex(a, ".")+1:]
		ns.Serve(t, name, "0.0.0.0:8080")
		ns.Serve(t, name, "0.0.0.0:80")
		ns.ServeUDP(t, name, "0.0.0.0:5353")
		l.members[a] = ns
	}
	h, err := ipvs.Open(l.lb.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	l.rec = ipvs.NewReconciler(h, discard(), opt)
	l.nat = nat.NewManager(l.lb.Fd(), discard())
	l.applier = &lbapply.Applier{IPVS: l.rec, NAT: l.nat, Log: discard()}
	return l
}

func (l *guestLab) apply(doc string) *ipvs.Plan {
	l.t.Helper()
	cfg, err := config.Parse([]byte(labNetwork + doc))
	if err != nil {
		l.t.Fatalf("config: %v", err)
	}
	d, err := engine.Build(cfg, engine.Overrides{}, nil)
	if err != nil {
		l.t.Fatalf("desired state: %v", err)
	}
	res, err := l.applier.Apply(context.Background(), d)
	if err != nil {
		l.t.Fatalf("apply: %v", err)
	}
	p, _ := res["ipvs"].Detail.(*ipvs.Plan)
	if p == nil {
		p = &ipvs.Plan{}
	}
	return p
}

func (l *guestLab) ask(src, addr string) (name, seen string) {
	l.t.Helper()
	line, err := l.client.Ask(src, addr, 3*time.Second)
	if err != nil {
		l.t.Fatalf("client %s -> %s: %v", src, addr, err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		l.t.Fatalf("bad greeting %q", line)
	}
	return f[0], f[1]
}

func TestGuestRoundRobinSpreadsEvenly(t *testing.T) {
	l := newGuestLab(t, []string{"198.51.100.11", "198.51.100.12", "198.51.100.13"}, true, ipvs.Options{})
	l.apply(`
virtual_servers: [{name: web, vip: 203.0.113.100, port: 80, pool: web, scheduler: rr, persistence: {enabled: false}}]
pools: {web: {members: [{address: 198.51.100.11, port: 8080}, {address: 198.51.100.12, port: 8080}, {address: 198.51.100.13, port: 8080}]}}
`)
	count := map[string]int{}
	for i := 0; i < 30; i++ {
		name, _ := l.ask("", "203.0.113.100:80")
		count[name]++
	}
	if count["m11"] != 10 || count["m12"] != 10 || count["m13"] != 10 {
		t.Fatalf("rr over 3 members, 30 connections: %v (want 10 each)", count)
	}
}

func TestGuestNATMemberSeesClient(t *testing.T) {
	l := newGuestLab(t, []string{"198.51.100.11"}, true, ipvs.Options{})
	l.apply(`
virtual_servers: [{name: web, vip: 203.0.113.100, port: 80, pool: web}]
pools: {web: {members: [{address: 198.51.100.11, port: 8080}]}}
`)
	if name, seen := l.ask("203.0.113.10", "203.0.113.100:80"); name != "m11" || seen != "203.0.113.10" {
		t.Fatalf("NAT: member %s saw %s, want m11 seeing the client 203.0.113.10", name, seen)
	}
}

func TestGuestPersistenceKeepsClientAndExpires(t *testing.T) {
	l := newGuestLab(t, []string{"198.51.100.11", "198.51.100.12"}, true, ipvs.Options{})
	l.apply(`
virtual_servers:
  - {name: tcp, vip: 203.0.113.100, port: 80, pool: tcp, scheduler: rr}
  - {name: dns, vip: 203.0.113.101, port: 53, protocol: udp, pool: udp, scheduler: rr, persistence: {timeout: 2s}}
pools:
  tcp: {members: [{address: 198.51.100.11, port: 8080}, {address: 198.51.100.12, port: 8080}]}
  udp: {members: [{address: 198.51.100.11, port: 5353}, {address: 198.51.100.12, port: 5353}]}
ipvs_timeouts: {udp: 1s}
`)
	first, _ := l.ask("203.0.113.10", "203.0.113.100:80")
	for i := 0; i < 10; i++ {
		if name, _ := l.ask("203.0.113.10", "203.0.113.100:80"); name != first {
			t.Fatalf("persistence (default on, 600s): connection %d went to %s, the first to %s", i+2, name, first)
		}
	}
	// Another client is scheduled on its own (rr moves on).
	if other, _ := l.ask("203.0.113.11", "203.0.113.100:80"); other == first {
		t.Fatalf("second client went to the same member %s; rr should pick the other one", other)
	}
	// UDP with a 2 s persistence timeout and 1 s udp timeout: sticks,
	// then expires and rr moves on.
	askUDP := func() string {
		ans, err := l.client.AskUDP("203.0.113.101:53", 3*time.Second)
		if err != nil {
			t.Fatalf("udp: %v", err)
		}
		return strings.Fields(ans)[0]
	}
	u := askUDP()
	for i := 0; i < 5; i++ {
		if n := askUDP(); n != u {
			t.Fatalf("udp persistence: datagram %d went to %s, first to %s", i+2, n, u)
		}
	}
	// Every use re-arms the template, so stay idle longer than the udp
	// timeout plus the persistence timeout before asking again.
	for try := 1; ; try++ {
		time.Sleep(5 * time.Second)
		if askUDP() != u {
			break // the template expired and rr moved on
		}
		if try == 4 {
			t.Fatal("udp persistence template never expired (timeout 2s, udp 1s, 5s idle between tries)")
		}
	}
}

func TestGuestFullNATMemberSeesLocalAddress(t *testing.T) {
	l := newGuestLab(t, []string{"198.51.100.21"}, false, ipvs.Options{})
	l.apply(`
virtual_servers:
  - {name: api, vip: 203.0.113.101, port: 80, pool: api, mode: fullnat, local_address_pool: la}
  - {name: east, vip: 198.51.100.150, port: 80, pool: api, mode: fullnat, local_address_pool: la, internal: true}
pools: {api: {members: [{address: 198.51.100.21, port: 8080}]}}
`)
	name, seen := l.ask("", "203.0.113.101:80")
	if name != "m21" || !strings.HasPrefix(seen, "198.51.100.20") {
		t.Fatalf("FullNAT: member %s saw %s, want a local address 198.51.100.201-209 (the member has no route back)", name, seen)
	}
	// Internal (east-west) VIP: a member reaches another through the LB.
	l.lb.AddAddr(t, "lbint", "198.51.100.150/32")
	line, err := l.members["198.51.100.21"].Ask("", "198.51.100.150:80", 3*time.Second)
	if err != nil || !strings.HasPrefix(line, "m21 198.51.100.20") {
		t.Fatalf("internal fullnat VIP from a member: %q %v", line, err)
	}
	// And the config layer rejects internal with any mode but fullnat.
	_, err = config.Parse([]byte(labNetwork + `
virtual_servers: [{name: east, vip: 198.51.100.150, port: 80, pool: api, mode: nat, internal: true}]
pools: {api: {members: [{address: 198.51.100.21, port: 8080}]}}
`))
	if err == nil || !strings.Contains(err.Error(), "needs mode fullnat") {
		t.Fatalf("internal nat VS accepted: %v", err)
	}
}

func TestGuestSNATOutbound(t *testing.T) {
	l := newGuestLab(t, []string{"198.51.100.11"}, true, ipvs.Options{})
	l.apply(`
virtual_servers: [{name: web, vip: 203.0.113.100, port: 80, pool: web}]
pools: {web: {members: [{address: 198.51.100.11, port: 8080}]}}
`)
	line, err := l.members["198.51.100.11"].Ask("", "203.0.113.50:8080", 3*time.Second)
	if err != nil {
		t.Fatalf("member -> internet host: %v", err)
	}
	if !strings.HasPrefix(line, "internet 203.0.113.20") {
		t.Fatalf("internet host saw %q, want a SNAT IPool address 203.0.113.200-209", line)
	}
	// Balanced traffic is not SNATed: the member still sees the client.
	if _, seen := l.ask("203.0.113.10", "203.0.113.100:80"); seen != "203.0.113.10" {
		t.Fatalf("balanced connection was SNATed: member saw %s", seen)
	}
}

func TestGuestDirectRouting(t *testing.T) {
	l := newGuestLab(t, []string{"198.51.100.31"}, true, ipvs.Options{})
	m := l.members["198.51.100.31"]
	// What a DR member needs: the VIP on lo, and not answering ARP for it.
	m.AddAddr(t, "lo", "203.0.113.102/32")
	m.Sysctl(t, "net.ipv4.conf.all.arp_ignore", "1")
	m.Sysctl(t, "net.ipv4.conf.all.arp_announce", "2")
	// Replies from the VIP come back through the LB as a plain router here;
	// it must accept packets whose source is one of its own addresses.
	l.lb.Sysctl(t, "net.ipv4.conf.all.accept_local", "1")
	l.lb.Sysctl(t, "net.ipv4.conf.lbint.accept_local", "1")
	l.lb.Sysctl(t, "net.ipv4.conf.lbint.rp_filter", "0")
	l.apply(`
virtual_servers: [{name: dr, vip: 203.0.113.102, port: 80, pool: dr, mode: dr}]
pools: {dr: {members: [{address: 198.51.100.31}]}}
`)
	if name, seen := l.ask("203.0.113.10", "203.0.113.102:80"); name != "m31" || seen != "203.0.113.10" {
		t.Fatalf("DR: member %s saw %s, want m31 seeing the client", name, seen)
	}
}

func TestGuestReconcileLeavesOtherVSConnection(t *testing.T) {
	l := newGuestLab(t, []string{"198.51.100.11", "198.51.100.12", "198.51.100.13"}, true, ipvs.Options{DrainTimeout: time.Minute})
	base := `
virtual_servers:
  - {name: a, vip: 203.0.113.100, port: 80, pool: a}
  - {name: b, vip: 203.0.113.101, port: 80, pool: b}
pools:
  a: {members: [{address: 198.51.100.11, port: 8080}]}
  b: {members: [{address: 198.51.100.13, port: 8080}]}
`
	l.apply(base)
	c, greet, err := l.client.Dial("", "203.0.113.101:80", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !strings.HasPrefix(greet, "m13") {
		t.Fatalf("greeting %q", greet)
	}
	p := l.apply(strings.Replace(base, "a: {members: [{address: 198.51.100.11, port: 8080}]}", "a: {members: [{address: 198.51.100.12, port: 8080}]}", 1))
	for _, op := range p.Ops {
		if strings.Contains(op.String(), "203.0.113.101") {
			t.Fatalf("changing VS a touched VS b: %s", op)
		}
	}
	if len(p.Ops) != 2 {
		t.Fatalf("plan %s, want add .12 and drain .11", p)
	}
	echo(t, c, "still here")
}

func echo(t *testing.T, c io.ReadWriter, msg string) {
	t.Helper()
	if cc, ok := c.(interface{ SetDeadline(time.Time) error }); ok {
		cc.SetDeadline(time.Now().Add(3 * time.Second))
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write on established connection: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("established connection broke: read %q, %v", buf, err)
	}
}

func TestGuestDrainedMemberFinishesConnection(t *testing.T) {
	l := newGuestLab(t, []string{"198.51.100.11", "198.51.100.12"}, true, ipvs.Options{DrainTimeout: time.Minute})
	both := `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: a, scheduler: rr, persistence: {enabled: false}}]
pools: {a: {members: [{address: 198.51.100.11, port: 8080}, {address: 198.51.100.12, port: 8080}]}}
`
	l.apply(both)
	c, greet, err := l.client.Dial("", "203.0.113.100:80", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	victim := strings.Fields(greet)[0] // m11 or m12
	victimAddr := "198.51.100." + strings.TrimPrefix(victim, "m")
	keep := strings.Replace(both, fmt.Sprintf("{address: %s, port: 8080}, ", victimAddr), "", 1)
	keep = strings.Replace(keep, fmt.Sprintf(", {address: %s, port: 8080}", victimAddr), "", 1)
	p := l.apply(keep)
	if p.Counts()["drain"] != 1 {
		t.Fatalf("removing %s: plan %s, want a drain", victimAddr, p)
	}
	for i := 0; i < 4; i++ {
		if name, _ := l.ask("", "203.0.113.100:80"); name == victim {
			t.Fatalf("draining member %s got a new connection", victim)
		}
	}
	if n, err := l.rec.DrainOnce(); err != nil || n != 0 {
		t.Fatalf("member with an open connection deleted: n=%d err=%v", n, err)
	}
	echo(t, c, "finishing")
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := l.rec.DrainOnce()
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("drained member not deleted after its connection closed")
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, err := l.rec.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		for k := range s.Dests {
			if k.Addr.String() == victimAddr {
				t.Fatalf("%s still in the kernel", victimAddr)
			}
		}
	}
}

func TestGuestTunnel(t *testing.T) {
	l := newGuestLab(t, []string{"198.51.100.41"}, true, ipvs.Options{})
	m := l.members["198.51.100.41"]
	// What a TUN member needs: the ipip fallback device tunl0 up (module
	// ipip), the VIP on lo, no ARP for it, rp_filter off on tunl0.
	tunl, err := m.Netlink().LinkByName("tunl0")
	if err != nil {
		testkit.Missing(t, "no tunl0 in the member namespace (ipip module not loaded?): %v", err)
	}
	if err := m.Netlink().LinkSetUp(tunl); err != nil {
		t.Fatal(err)
	}
	m.AddAddr(t, "lo", "203.0.113.103/32")
	m.Sysctl(t, "net.ipv4.conf.all.arp_ignore", "1")
	m.Sysctl(t, "net.ipv4.conf.all.arp_announce", "2")
	m.Sysctl(t, "net.ipv4.conf.all.rp_filter", "0")
	m.Sysctl(t, "net.ipv4.conf.tunl0.rp_filter", "0")
	l.lb.Sysctl(t, "net.ipv4.conf.all.accept_local", "1")
	l.lb.Sysctl(t, "net.ipv4.conf.lbint.accept_local", "1")
	l.lb.Sysctl(t, "net.ipv4.conf.lbint.rp_filter", "0")
	l.apply(`
virtual_servers: [{name: tun, vip: 203.0.113.103, port: 80, pool: tun, mode: tun}]
pools: {tun: {members: [{address: 198.51.100.41}]}}
`)
	if name, seen := l.ask("203.0.113.10", "203.0.113.103:80"); name != "m41" || seen != "203.0.113.10" {
		t.Fatalf("TUN: member %s saw %s, want m41 seeing the client", name, seen)
	}
}

// TestGuestSeedDefaultsOnTheKernel: the seed's defaults as the kernel holds
// them after an apply (TCP established timeout 90 s, persistence 600 s on
// by default), and an idle established connection leaving the kernel's
// table at the configured TCP timeout: not before, and soon after.
func TestGuestSeedDefaultsOnTheKernel(t *testing.T) {
	l := newGuestLab(t, []string{"198.51.100.11"}, true, ipvs.Options{})
	vs := `
virtual_servers: [{name: web, vip: 203.0.113.100, port: 80, pool: web}]
pools: {web: {members: [{address: 198.51.100.11, port: 8080}]}}
`
	l.apply(vs)
	st, err := l.rec.Read()
	if err != nil {
		t.Fatal(err)
	}
	if st.Timeouts.TCP != 90*time.Second {
		t.Errorf("kernel TCP established timeout %s, want the seed's 90s", st.Timeouts.TCP)
	}
	if len(st.Services) != 1 {
		t.Fatalf("%d services", len(st.Services))
	}
	for k, s := range st.Services {
		if s.Flags&ipvs.FlagPersistent == 0 || s.Timeout != 600 {
			t.Errorf("%s: flags %#x persistence %d s, want persistent 600 s by default", k, s.Flags, s.Timeout)
		}
	}
	const idle = 4 * time.Second
	l.apply(vs + "ipvs_timeouts: {tcp: 4s}\n")
	if st, err = l.rec.Read(); err != nil || st.Timeouts.TCP != idle {
		t.Fatalf("TCP timeout after apply: %v %v", st.Timeouts, err)
	}
	c, _, err := l.client.Dial("", "203.0.113.100:80", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opened := time.Now()
	active := func() int {
		st, err := l.rec.Read()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, s := range st.Services {
			for _, d := range s.Dests {
				n += d.Active
			}
		}
		return n
	}
	if n := active(); n != 1 {
		t.Fatalf("%d active connections after the dial, want 1", n)
	}
	time.Sleep(idle / 2)
	if n := active(); n != 1 {
		t.Fatalf("idle connection gone after %s, before its %s timeout", time.Since(opened).Round(time.Millisecond), idle)
	}
	deadline := opened.Add(idle + 4*time.Second)
	for active() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle connection still in the table %s after opening (timeout %s)", time.Since(opened).Round(time.Millisecond), idle)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("idle connection expired %s after opening (tcp timeout %s)", time.Since(opened).Round(100*time.Millisecond), idle)
}
