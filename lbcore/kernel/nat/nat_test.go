package nat

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Test topology (all inside namespaces this test creates):
//
//	member ns  lbm0 198.51.100.11,.12 ──  router ns lbint 198.51.100.2 (+ local addrs .201-.209)
//	client ns  lbc0 203.0.113.10     ──  router ns lbext 203.0.113.2
//	internet   lbi0 203.0.113.50     ──  (same External segment through a second router port)
//
// The router ns plays the appliance: its bonds are named lbint/lbext in the
// config below.
// The test ruleset: what lbcore/engine makes of a config with a nat VS
// (no rules), a FullNAT VS api (mark apiMark) and a FullNAT UDP port range
// games (fwmark 0x77), both to local addresses 198.51.100.201-209, and SNAT
// all-in-one of snatSource out of lbext (the router ns's External bond) to
// 203.0.113.200-209. engine's tests check that translation.
const apiMark = 0x100101

var ctx = context.Background()

func testRuleset(snatSource string) *Ruleset {
	a := netip.MustParseAddr
	return &Ruleset{
		Marks: []Mark{
			{VS: "api", VIP: a("203.0.113.101"), Proto: unix.IPPROTO_TCP, From: 80, To: 80, Mark: apiMark},
			{VS: "games", VIP: a("203.0.113.102"), Proto: unix.IPPROTO_UDP, From: 7000, To: 7010, Mark: 0x77},
		},
		FullNAT: []FullNAT{
			{VS: "api", Mark: apiMark, First: a("198.51.100.201"), Last: a("198.51.100.209")},
			{VS: "games", Mark: 0x77, First: a("198.51.100.201"), Last: a("198.51.100.209")},
		},
		SNAT: []SNAT{{Source: netip.MustParsePrefix(snatSource), OutIface: "lbext", First: a("203.0.113.200"), Last: a("203.0.113.209")}},
	}
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// render turns kernel rule expressions into nft-like text, so tests check
// what the kernel holds rather than what we meant to send.
func render(exprs []expr.Any) string {
	var out []string
	var pending string
	var loaded []string // loads since the last comparison or lookup (a concatenated key)
	var imm [3][]byte
	fromSet := map[uint32]string{}
	for _, e := range exprs {
		switch e := e.(type) {
		case *expr.Meta:
			if e.SourceRegister {
				if s, ok := fromSet[e.Register]; ok {
					out = append(out, fmt.Sprintf("meta-set:%s=%s", metaName(e.Key), s))
				} else {
					out = append(out, fmt.Sprintf("meta-set:%s=%x", metaName(e.Key), imm[e.Register]))
				}
			} else {
				pending = metaName(e.Key)
				loaded = append(loaded, fmt.Sprintf("%s>r%d", pending, e.Register))
			}
		case *expr.Payload:
			pending = fmt.Sprintf("payload:%d/%d+%d", e.Base, e.Offset, e.Len)
			loaded = append(loaded, fmt.Sprintf("%s>r%d", pending, e.DestRegister))
		case *expr.Ct:
			pending = "ct:" + ctName(e.Key)
		case *expr.Bitwise:
			pending = fmt.Sprintf("%s&%x", pending, e.Mask)
		case *expr.Cmp:
			out = append(out, fmt.Sprintf("%s==%s", pending, value(pending, e.Data)))
			loaded = nil
		case *expr.Range:
			out = append(out, fmt.Sprintf("%s in %s-%s", pending, value(pending, e.FromData), value(pending, e.ToData)))
			loaded = nil
		case *expr.Lookup:
			l := fmt.Sprintf("(%s) in @%s from r%d", strings.Join(loaded, " . "), e.SetName, e.SourceRegister)
			if e.IsDestRegSet {
				l += fmt.Sprintf(" into r%d", e.DestRegister)
				fromSet[e.DestRegister] = "@" + e.SetName
			}
			out = append(out, l)
			loaded = nil
		case *expr.Immediate:
			if e.Register < 3 {
				imm[e.Register] = e.Data
			}
		case *expr.NAT:
			out = append(out, fmt.Sprintf("snat to %s-%s persistent=%v", value("daddr", imm[e.RegAddrMin]), value("daddr", imm[e.RegAddrMax]), e.Persistent))
		case *expr.Counter:
			out = append(out, "counter")
		default:
			out = append(out, fmt.Sprintf("%T", e))
		}
	}
	return strings.Join(out, " ")
}

// renderSets is the table's sets and maps as text: name, key and data
// types, and elements (map values as marks in hex).
func renderSets(t *testing.T, m *Manager) []string {
	t.Helper()
	s, err := m.tbl.Read()
	if err != nil {
		t.Fatal(err)
	}
	if s == nil {
		return nil
	}
	var out []string
	for _, st := range s.Sets {
		var el []string
		for _, e := range st.Elements {
			k := fmt.Sprintf("%x", e.Key)
			if len(e.Key) == 12 { // ip . proto . port
				k = fmt.Sprintf("%s . %d . %d", netip.AddrFrom4([4]byte(e.Key[0:4])), e.Key[4], binary.BigEndian.Uint16(e.Key[8:10]))
			}
			if st.Set.IsMap {
				k += fmt.Sprintf(" : %x", e.Val)
			}
			el = append(el, k)
		}
		sort.Strings(el)
		out = append(out, fmt.Sprintf("%s %s map=%v {%s}", st.Set.Name, st.Set.KeyType.Name, st.Set.IsMap, strings.Join(el, ", ")))
	}
	sort.Strings(out)
	return out
}

func metaName(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyL4PROTO:
		return "l4proto"
	case expr.MetaKeyMARK:
		return "mark"
	case expr.MetaKeyOIFNAME:
		return "oifname"
	}
	return fmt.Sprintf("meta%d", k)
}

func ctName(k expr.CtKey) string {
	switch k {
	case expr.CtKeyDST:
		return "daddr"
	case expr.CtKeyPROTODST:
		return "proto-dst"
	case expr.CtKeySTATUS:
		return "status"
	}
	return fmt.Sprintf("ct%d", k)
}

func value(ctx string, b []byte) string {
	switch {
	case ctx == "oifname":
		return strings.TrimRight(string(b), "\x00")
	case len(b) == 4 && (ctx == "daddr" || strings.HasPrefix(ctx, "payload:1/")):
		return netip.AddrFrom4([4]byte(b)).String()
	case len(b) == 2:
		return fmt.Sprint(binary.BigEndian.Uint16(b))
	case len(b) == 1:
		return fmt.Sprint(b[0])
	}
	return fmt.Sprintf("%x", b)
}

func newRouterNS(t *testing.T) *testkit.NS {
	return testkit.NewNS(t, "lbr"+testkit.Suffix())
}

// TestRulesInKernel applies the ruleset in a fresh namespace and reads the
// rules back from the kernel.
func TestRulesInKernel(t *testing.T) {
	ns := newRouterNS(t)
	m := NewManager(ns.Fd(), quiet())
	if _, err := m.Apply(ctx, testRuleset("198.51.100.11/32")); err != nil {
		t.Fatal(err)
	}
	rules, err := m.Rules()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ch := range []string{ChainMark, ChainSNAT} {
		for _, r := range rules[ch] {
			got = append(got, ch+": "+render(r.Exprs))
		}
	}
	api := fmt.Sprintf("%x", binary.NativeEndian.AppendUint32(nil, apiMark))
	want := []string{
		"mark: (payload:1/16+4>r1 . l4proto>r9 . payload:2/2+2>r10) in @marks from r1 into r1 meta-set:mark=@marks counter",
		"mark: payload:1/16+4==203.0.113.102 l4proto==17 payload:2/2+2 in 7000-7010 meta-set:mark=77000000 counter",
		"postrouting: (mark>r1) in @fullnat0 from r1 counter snat to 198.51.100.201-198.51.100.209 persistent=false",
		"postrouting: oifname==lbext payload:1/12+4&ffffffff==198.51.100.11 ct:status&20000000==00000000 counter snat to 203.0.113.200-203.0.113.209 persistent=true",
		"set fullnat0 mark map=false {" + api + ", 77000000}",
		"set marks ipv4_addr . inet_proto . inet_service map=true {203.0.113.101 . 6 . 80 : " + api + "}",
	}
	for _, st := range renderSets(t, m) {
		got = append(got, "set "+st)
	}
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 { // big-endian host: marks/status read differently
		t.Skip("expected strings assume a little-endian host")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("kernel rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The chains hook where they must.
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	hooks := map[string]string{}
	for _, ch := range chains {
		hooks[ch.Name] = fmt.Sprintf("%s/%d/%d", ch.Type, *ch.Hooknum, *ch.Priority)
	}
	if hooks[ChainMark] != "filter/0/-150" || hooks[ChainSNAT] != "nat/4/100" {
		t.Fatalf("chain hooks = %v", hooks)
	}
}

func TestApplyIsAtomicAndRollsBack(t *testing.T) {
	ns := newRouterNS(t)
	m := NewManager(ns.Fd(), quiet())
	first := testRuleset("198.51.100.11/32")
	if _, err := m.Apply(ctx, first); err != nil {
		t.Fatal(err)
	}
	snap := func() string {
		rules, err := m.Rules()
		if err != nil {
			t.Fatal(err)
		}
		var s []string
		for _, ch := range []string{ChainMark, ChainSNAT} {
			for _, r := range rules[ch] {
				s = append(s, render(r.Exprs))
			}
		}
		s = append(s, renderSets(t, m)...)
		return strings.Join(s, "\n")
	}
	before := snap()
	// A batch the kernel refuses part-way (a new good ruleset followed by
	// one rule with an unknown meta key) must leave the old table in place
	// untouched: nothing half-applied.
	refused := build(testRuleset("198.51.100.0/24"))
	last := refused.Rules[ChainSNAT][len(refused.Rules[ChainSNAT])-1]
	refused.Rules[ChainSNAT] = append(refused.Rules[ChainSNAT], &nftables.Rule{Table: last.Table, Chain: last.Chain,
		Exprs: []expr.Any{&expr.Meta{Key: 250, Register: 1}}})
	if err := m.install(refused); err == nil {
		t.Fatal("kernel accepted a rule with meta key 250")
	}
	if after := snap(); after != before {
		t.Fatalf("table changed by a refused batch:\n%s\nwas:\n%s", after, before)
	}
	// Rollback after a good apply restores the previous content.
	next := testRuleset("198.51.100.0/24")
	next.Marks = append(next.Marks, Mark{VS: "tls", VIP: netip.MustParseAddr("203.0.113.103"), Proto: unix.IPPROTO_TCP, From: 443, To: 443, Mark: 0x100102})
	next.FullNAT = append(next.FullNAT, FullNAT{VS: "tls", Mark: 0x100102, First: netip.MustParseAddr("198.51.100.210"), Last: netip.MustParseAddr("198.51.100.211")})
	ch, err := m.Apply(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	if snap() == before {
		t.Fatal("second apply changed nothing")
	}
	if err := ch.Undo(); err != nil {
		t.Fatal(err)
	}
	if after := snap(); after != before {
		t.Fatalf("rollback did not restore:\n%s\nwant:\n%s", after, before)
	}
	// An empty ruleset removes the table; rollback brings it back.
	ch, err = m.Apply(ctx, &Ruleset{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := m.Rules(); err != nil || r != nil {
		t.Fatalf("empty ruleset left a table: %v %v", r, err)
	}
	if err := ch.Undo(); err != nil {
		t.Fatal(err)
	}
	if snap() != before {
		t.Fatal("rollback from empty did not restore")
	}
}

// TestRollbackOfUnknownTable: a manager that starts on a namespace whose
// table was written by an earlier run restores that table from the kernel's
// own description of it.
func TestRollbackOfUnknownTable(t *testing.T) {
	ns := newRouterNS(t)
	if _, err := NewManager(ns.Fd(), quiet()).Apply(ctx, testRuleset("198.51.100.11/32")); err != nil {
		t.Fatal(err)
	}
	m := NewManager(ns.Fd(), quiet()) // a restarted daemon
	old, _ := m.Rules()
	oldSets := renderSets(t, m)
	if len(oldSets) == 0 {
		t.Fatal("the earlier run's table has no sets")
	}
	ch, err := m.Apply(ctx, &Ruleset{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Undo(); err != nil {
		t.Fatal(err)
	}
	now, _ := m.Rules()
	if got := renderSets(t, m); strings.Join(got, "\n") != strings.Join(oldSets, "\n") {
		t.Fatalf("sets restored as\n%s\nhad\n%s", strings.Join(got, "\n"), strings.Join(oldSets, "\n"))
	}
	for _, ch := range []string{ChainMark, ChainSNAT} {
		if len(now[ch]) != len(old[ch]) {
			t.Fatalf("chain %s: %d rules restored, had %d", ch, len(now[ch]), len(old[ch]))
		}
		for i := range old[ch] {
			if render(now[ch][i].Exprs) != render(old[ch][i].Exprs) {
				t.Fatalf("chain %s rule %d: restored %s, had %s", ch, i, render(now[ch][i].Exprs), render(old[ch][i].Exprs))
			}
		}
	}
}

type lab struct {
	router, member, inet *testkit.NS
}

func TestSNATAllInOneRealPackets(t *testing.T) {
	l := &lab{
		router: testkit.NewNS(t, "lbrouter"),
		member: testkit.NewNS(t, "lbmember"),
		inet:   testkit.NewNS(t, "lbinet"),
	}
	testkit.Veth(t, l.member, "lbm0", "198.51.100.11/24", l.router, "lbint", "198.51.100.2/24")
	l.member.AddAddr(t, "lbm0", "198.51.100.12/24")
	testkit.Veth(t, l.inet, "lbi0", "203.0.113.50/24", l.router, "lbext", "203.0.113.2/24")
	l.router.Sysctl(t, "net.ipv4.ip_forward", "1")
	l.member.Route(t, "default", "198.51.100.2")
	// The internet host has no route to 198.51.100.0/24: only SNATed
	// connections can be answered. The router must answer ARP for the pool.
	for i := 200; i <= 209; i++ {
		l.router.AddAddr(t, "lbext", fmt.Sprintf("203.0.113.%d/32", i))
	}
	l.inet.Serve(t, "internet", "203.0.113.50:8080")

	if _, err := l.member.Ask("198.51.100.11", "203.0.113.50:8080", 500*time.Millisecond); err == nil {
		t.Fatal("member reached the internet host before any SNAT rule: the test topology leaks")
	}
	m := NewManager(l.router.Fd(), quiet())
	if _, err := m.Apply(ctx, testRuleset("198.51.100.11/32")); err != nil {
		t.Fatal(err)
	}
	pool := map[string]bool{}
	for i := 200; i <= 209; i++ {
		pool[fmt.Sprintf("203.0.113.%d", i)] = true
	}
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		line, err := l.member.Ask("198.51.100.11", "203.0.113.50:8080", 2*time.Second)
		if err != nil {
			t.Fatalf("member 198.51.100.11 (covered by the SNAT rule) cannot reach the internet host: %v", err)
		}
		f := strings.Fields(line)
		if len(f) != 2 || f[0] != "internet" || !pool[f[1]] {
			t.Fatalf("internet host saw %q, want a SNAT pool address", line)
		}
		seen[f[1]] = true
	}
	if len(seen) != 1 {
		t.Errorf("persistent SNAT gave one member several addresses: %v", seen)
	}
	// .12 is not covered by the rule (source 198.51.100.11/32): not SNATed,
	// so the internet host cannot answer it.
	if line, err := l.member.Ask("198.51.100.12", "203.0.113.50:8080", 500*time.Millisecond); err == nil {
		t.Fatalf("uncovered source was answered (%q): the rule is not selective", line)
	}
	// Removing the rules (empty ruleset) cuts the member off again.
	if _, err := m.Apply(ctx, &Ruleset{}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.member.Ask("198.51.100.11", "203.0.113.50:8080", 500*time.Millisecond); err == nil {
		t.Fatal("member still SNATed after the rules were removed")
	}
}

// fullNATLab builds the FullNAT test topology: a router namespace playing
// the appliance, with a stand-in balancer that DNATs TCP to VIP
// 203.0.113.101 (any port) to member 198.51.100.21:8080 and udp carrying
// fwmark 0x77 to the member; the member has no route back to the client.
// local holds the answers the member gives a local address.
func fullNATLab(t *testing.T) (router, client *testkit.NS, local map[string]bool) {
	router = testkit.NewNS(t, "lbrouter")
	member := testkit.NewNS(t, "lbmember")
	client = testkit.NewNS(t, "lbclient")
	testkit.Veth(t, member, "lbm0", "198.51.100.21/24", router, "lbint", "198.51.100.2/24")
	local = map[string]bool{}
	for i := 201; i <= 209; i++ { // the local address pool: netsetup's job on the appliance
		router.AddAddr(t, "lbint", fmt.Sprintf("198.51.100.%d/32", i))
		local[fmt.Sprintf("m21 198.51.100.%d", i)] = true
	}
	testkit.Veth(t, client, "lbc0", "203.0.113.10/24", router, "lbext", "203.0.113.2/24")
	router.AddAddr(t, "lbext", "203.0.113.101/32") // the VIPs (VRRP's job on the appliance)
	router.AddAddr(t, "lbext", "203.0.113.102/32")
	router.Sysctl(t, "net.ipv4.ip_forward", "1")
	member.Serve(t, "m21", "198.51.100.21:8080")
	member.ServeUDP(t, "m21", "198.51.100.21:7005")

	// Stand-in balancer: DNAT VIP:80 -> member:8080 and VIP udp 7000-7010
	// -> member (keeping the port) only for packets carrying our fwmark.
	c, err := nftables.New(nftables.WithNetNSFd(router.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	tt := c.AddTable(&nftables.Table{Name: "lbstandin", Family: nftables.TableFamilyIPv4})
	ch := c.AddChain(&nftables.Chain{Name: "pre", Table: tt, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	dnat := func(match []expr.Any, to netip.Addr, port uint16) {
		e := append(match, &expr.Immediate{Register: 1, Data: ip4(to)})
		nat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}
		if port != 0 {
			e = append(e, &expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, port)})
			nat.RegProtoMin = 2
		}
		c.AddRule(&nftables.Rule{Table: tt, Chain: ch, Exprs: append(e, nat)})
	}
	m21 := netip.MustParseAddr("198.51.100.21")
	dnat(append([]expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip4(netip.MustParseAddr("203.0.113.101"))},
	}, l4proto(unix.IPPROTO_TCP)...), m21, 8080)
	dnat([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, 0x77)},
	}, m21, 0)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}

	return router, client, local
}

// TestThousandFullNATVSsAreOneMapLookup: 1000 single-port FullNAT virtual
// servers make one mark rule (a map lookup on VIP . protocol . port) and
// one FullNAT rule (a set of marks per local address range), not a rule
// each, and real packets to the first, a middle and the last of them are
// SNATed to the local addresses, while a port that is no virtual server's
// is not marked.
func TestThousandFullNATVSsAreOneMapLookup(t *testing.T) {
	router, client, local := fullNATLab(t)
	a := netip.MustParseAddr
	rs := testRuleset("198.51.100.11/32")
	var marks []Mark
	var fns []FullNAT
	for i := 0; i < 999; i++ {
		mk := uint32(0x200000 + i)
		marks = append(marks, Mark{VS: fmt.Sprintf("fn-%d", i), VIP: a("203.0.113.101"), Proto: unix.IPPROTO_TCP, From: uint16(10000 + i), To: uint16(10000 + i), Mark: mk})
		fns = append(fns, FullNAT{VS: fmt.Sprintf("fn-%d", i), Mark: mk, First: a("198.51.100.201"), Last: a("198.51.100.209")})
	}
	rs.Marks = append(marks, rs.Marks...) // api (port 80) is the 1000th
	rs.FullNAT = append(fns, rs.FullNAT...)
	// A second VS with fn-0's mark (a shared FWMark): one set element.
	rs.FullNAT = append(rs.FullNAT, FullNAT{VS: "shares-fn-0", Mark: 0x200000, First: a("198.51.100.201"), Last: a("198.51.100.209")})
	m := NewManager(router.Fd(), quiet())
	if _, err := m.Apply(ctx, rs); err != nil {
		t.Fatal(err)
	}
	rules, err := m.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rules[ChainMark]); n != 2 { // the map, and the udp port range's own rule
		t.Errorf("mark chain has %d rules for 1000 single-port VSs and one range, want 2", n)
	}
	if n := len(rules[ChainSNAT]); n != 2 { // FullNAT to one range, SNAT all-in-one
		t.Errorf("postrouting has %d rules for 1001 FullNAT VSs on one local range and one SNAT rule, want 2", n)
	}
	sets, err := m.tbl.Read()
	if err != nil {
		t.Fatal(err)
	}
	size := map[string]int{}
	for _, st := range sets.Sets {
		size[st.Set.Name] = len(st.Elements)
	}
	if size[SetMarks] != 1000 || size[SetFullNATPrefix+"0"] != 1001 {
		t.Errorf("set sizes %v, want %s 1000 and %s0 1001", size, SetMarks, SetFullNATPrefix)
	}
	for _, port := range []string{"10000", "10500", "80"} {
		line, err := client.Ask("", "203.0.113.101:"+port, 2*time.Second)
		if err != nil {
			dumpCounters(t, router)
			t.Fatalf("client -> VIP port %s (a FullNAT VS): %v", port, err)
		}
		if !local[line] {
			t.Fatalf("port %s: member saw %q, want a local address 198.51.100.201-209", port, line)
		}
	}
	if line, err := client.Ask("", "203.0.113.101:9999", 500*time.Millisecond); err == nil {
		t.Fatalf("port 9999 (no VS) was answered (%q): the map marked a packet it does not hold", line)
	}
}

// TestFullNATRuleRealPackets stands in for IPVS with a plain DNAT (which,
// like IPVS with conntrack=1, leaves the original tuple client->VIP) and
// checks the FullNAT rule SNATs the balanced connection to the local
// address, so a member with no route back to the client still answers.
// The real IPVS path is covered by the guest tests in lbcore/kernel/ipvs.
func TestFullNATRuleRealPackets(t *testing.T) {
	router, client, local := fullNATLab(t)
	if _, err := client.Ask("", "203.0.113.101:80", 500*time.Millisecond); err == nil {
		t.Fatal("client reached the member without FullNAT: the member must not have a route back")
	}
	m := NewManager(router.Fd(), quiet())
	if _, err := m.Apply(ctx, testRuleset("198.51.100.11/32")); err != nil {
		t.Fatal(err)
	}
	line, err := client.Ask("", "203.0.113.101:80", 2*time.Second)
	if err != nil {
		dumpCounters(t, router)
		t.Fatalf("client -> VIP with FullNAT rule: %v", err)
	}
	if !local[line] {
		t.Fatalf("member saw %q, want a local address 198.51.100.201-209", line)
	}
	// Port range VS: the mark chain marks udp 7005, the stand-in DNATs on
	// the mark, and FullNAT SNATs it.
	ans, err := client.AskUDP("203.0.113.102:7005", 2*time.Second)
	if err != nil {
		t.Fatalf("udp to port-range VIP: %v", err)
	}
	if !local[ans] {
		t.Fatalf("udp member saw %q, want the local address", ans)
	}
}

// dumpCounters logs every rule of every table in ns with its counters.
func dumpCounters(t *testing.T, ns *testkit.NS) {
	c, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		t.Log(err)
		return
	}
	chains, _ := c.ListChains()
	for _, ch := range chains {
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			t.Logf("%s/%s: %v", ch.Table.Name, ch.Name, err)
			continue
		}
		for _, r := range rules {
			var n uint64
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					n = ctr.Packets
				}
			}
			t.Logf("%s/%s: %s [packets %d]", ch.Table.Name, ch.Name, render(r.Exprs), n)
		}
	}
}

// TestLargeTableGoesInOneBatch: a table far over the netlink socket's
// default send buffer (2000 port-range virtual servers, a mark rule each:
// about 0.6 MB in one batch) installs and reads back whole; with the default
// buffer sendmsg refused it with EMSGSIZE.
func TestLargeTableGoesInOneBatch(t *testing.T) {
	ns := newRouterNS(t)
	m := NewManager(ns.Fd(), quiet())
	a := netip.MustParseAddr
	rs := &Ruleset{}
	for i := 0; i < 2000; i++ {
		mk := uint32(0x300000 + i)
		from := uint16(20000 + 10*i%40000)
		rs.Marks = append(rs.Marks, Mark{VS: fmt.Sprintf("range-%d", i), VIP: netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i/400)}), Proto: unix.IPPROTO_UDP, From: from, To: from + 5, Mark: mk})
		rs.FullNAT = append(rs.FullNAT, FullNAT{VS: fmt.Sprintf("range-%d", i), Mark: mk, First: a("198.51.100.201"), Last: a("198.51.100.209")})
	}
	if _, err := m.Apply(ctx, rs); err != nil {
		t.Fatalf("2000 mark rules in one batch: %v", err)
	}
	rules, err := m.Rules()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(rules[ChainMark]); n != 2000 {
		t.Fatalf("mark chain has %d rules, want 2000", n)
	}
	// 3000 single-port VSs: 3000 elements in the marks map and the
	// FullNAT set, far over one netlink attribute (64 KiB) if sent in one
	// message; the kernel must hold every one.
	rs = &Ruleset{}
	for i := 0; i < 3000; i++ {
		mk := uint32(0x400000 + i)
		vip := netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i/1000)})
		rs.Marks = append(rs.Marks, Mark{VS: fmt.Sprintf("vs-%d", i), VIP: vip, Proto: unix.IPPROTO_TCP, From: uint16(10000 + i%1000), To: uint16(10000 + i%1000), Mark: mk})
		rs.FullNAT = append(rs.FullNAT, FullNAT{VS: fmt.Sprintf("vs-%d", i), Mark: mk, First: a("198.51.100.201"), Last: a("198.51.100.209")})
	}
	if _, err := m.Apply(ctx, rs); err != nil {
		t.Fatalf("3000 map elements: %v", err)
	}
	sets, err := m.Sets()
	if err != nil {
		t.Fatal(err)
	}
	if len(sets[SetMarks]) != 3000 || len(sets[SetFullNATPrefix+"0"]) != 3000 {
		t.Fatalf("the kernel holds %d marks and %d FullNAT marks, want 3000 each", len(sets[SetMarks]), len(sets[SetFullNATPrefix+"0"]))
	}
}
