//go:build guest

package ctnl_test

// Kernel tests: they need nf_nat and ctnetlink of the appliance guest's
// kernel, so they are built only with the "guest" tag (qemu/guesttest
// sets it); qemu's TestConntrackSyncOnTheRealKernel runs them there.
//
//	client ns 198.51.100.11 ── 198.51.100.2  A (master: SNAT to 203.0.113.200)  203.0.113.2 ── 203.0.113.50 server ns
//	B (backup): an empty namespace the entry is installed into

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/ctsync"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ctnl"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Which address an SNAT rule matches: the IPv4 header offset of the
// source or the destination.
const (
	snatBySrc = 12
	snatByDst = 16
)

// snatRule SNATs to the address to what ns sends from (snatBySrc) or to
// (snatByDst) the address match.
func snatRule(t *testing.T, ns *testkit.NS, by uint32, match, to netip.Addr) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	tb := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "ctsynctest"})
	ch := c.AddChain(&nftables.Chain{Name: "post", Table: tb, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: by, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: match.AsSlice()},
		&expr.Immediate{Register: 1, Data: to.AsSlice()},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("nft snat rule: %v", err)
	}
}

func find(es []ctsync.Entry, src netip.Addr, sport uint16) (ctsync.Entry, bool) {
	for _, e := range es {
		if e.Orig.Src == src && e.Orig.SrcPort == sport {
			return e, true
		}
	}
	return ctsync.Entry{}, false
}

// TestGuestSNATEntryInstalledWithItsBinding: the SNAT entry of a real
// connection through A, read from A's table, sent through the sync
// protocol and installed into B, is in B's table with the same tuples and
// the SNAT status (the kernel set up the binding, so it would translate);
// installing it again refreshes it; a delete removes it.
func TestGuestSNATEntryInstalledWithItsBinding(t *testing.T) {
	testkit.Require(t, testkit.Root, testkit.Path("/proc/net/ip_vs", "the appliance guest's kernel (nf_nat, ctnetlink)"))
	a, b := testkit.NewNS(t, "ct-master"), testkit.NewNS(t, "ct-backup")
	client, server := testkit.NewNS(t, "ct-client"), testkit.NewNS(t, "ct-server")
	testkit.Veth(t, client, "ctc0", "198.51.100.11/24", a, "cti", "198.51.100.2/24")
	testkit.Veth(t, server, "cts0", "203.0.113.50/24", a, "ctx", "203.0.113.2/24")
	a.AddAddr(t, "ctx", "203.0.113.200/32")
	a.Sysctl(t, "net.ipv4.ip_forward", "1")
	client.Route(t, "default", "198.51.100.2")
	pool := netip.MustParseAddr("203.0.113.200")
	snatRule(t, a, snatBySrc, netip.MustParseAddr("198.51.100.11"), pool)
	server.Serve(t, "inet", "0.0.0.0:8080")

	conn, greeting, err := client.Dial("198.51.100.11", "203.0.113.50:8080", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if !strings.HasSuffix(greeting, " 203.0.113.200") {
		t.Fatalf("server saw %q: SNAT to the pool address did not happen", greeting)
	}
	sport := uint16(conn.LocalAddr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port())
	src := netip.MustParseAddr("198.51.100.11")

	ca, err := ctnl.Open(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := ctnl.Open(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()

	dumped, err := ca.Dump(ctnl.NATOnly)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := find(dumped, src, sport)
	if !ok {
		t.Fatalf("A's NAT entries lack 198.51.100.11:%d: %+v", sport, dumped)
	}
	if e.Reply.Dst != pool || e.Reply.Src != netip.MustParseAddr("203.0.113.50") || e.Status&ctnl.StatusSrcNAT == 0 || e.Proto != unix.IPPROTO_TCP {
		t.Fatalf("A's entry is not the SNAT'd connection: %+v", e)
	}
	t.Logf("master: %+v", e)

	// Through the wire protocol, as the backup would get it.
	s, r := ctsync.NewSender(51, 1, 0), ctsync.NewReceiver(51, 0)
	r.Join()
	s.Add(e)
	b1, err := s.Flush()[0].Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ctsync.Parse(b1)
	if err != nil {
		t.Fatal(err)
	}
	apply, _, err := r.Handle(m)
	if err != nil || len(apply) != 1 {
		t.Fatalf("receiver: %d entries, %v", len(apply), err)
	}
	for i := 0; i < 2; i++ { // the second time is a refresh of an existing entry
		if err := cb.Install(apply[0]); err != nil {
			t.Fatalf("install #%d: %v", i+1, err)
		}
	}
	got, err := cb.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	g, ok := find(got, src, sport)
	if !ok {
		t.Fatalf("B's table lacks the installed entry: %+v", got)
	}
	t.Logf("backup: %+v", g)
	if g.Orig != e.Orig || g.Reply != e.Reply {
		t.Errorf("B's tuples %+v / %+v differ from A's %+v / %+v", g.Orig, g.Reply, e.Orig, e.Reply)
	}
	if g.Status&ctnl.StatusSrcNAT == 0 {
		t.Errorf("B's entry has no SNAT binding (status %#x)", g.Status)
	}
	if g.TCPState != e.TCPState || g.Timeout == 0 || g.Timeout > e.Timeout+5 {
		t.Errorf("B's state %d timeout %d, A's %d / %d", g.TCPState, g.Timeout, e.TCPState, e.Timeout)
	}
	del := apply[0]
	del.Op = ctsync.OpDelete
	if err := cb.Install(del); err != nil {
		t.Fatal(err)
	}
	got, err = cb.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := find(got, src, sport); ok {
		t.Fatal("delete left the entry in B")
	}
	if err := cb.Install(del); err != nil {
		t.Fatalf("deleting what is gone: %v", err)
	}
}
