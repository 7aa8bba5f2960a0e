package nat

import (
	"context"

	"encoding/binary"
	"fmt"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nftable"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/stage"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Chain names inside the table.
const (
	ChainMark = "mark"        // filter, prerouting, priority mangle: VS marks
	ChainSNAT = "postrouting" // nat, postrouting, priority srcnat: FullNAT and SNAT all-in-one
)

// Set names inside the table.
const (
	SetMarks         = "marks"   // map ip daddr . l4proto . dport -> mark, single-port VSs
	SetFullNATPrefix = "fullnat" // fullnat0, fullnat1...: marks SNATed to one local address range
)

// ipsDstNAT is IPS_DST_NAT in a conntrack's status.
const ipsDstNAT = 1 << 5

func table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
}

func markChain(t *nftables.Table) *nftables.Chain {
	return &nftables.Chain{Name: ChainMark, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle}
}

func snatChain(t *nftables.Table) *nftables.Chain {
	return &nftables.Chain{Name: ChainSNAT, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource}
}

// Expression building blocks (all on register 1 unless said).

func l4proto(p uint8) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func ip4(a netip.Addr) []byte { b := a.As4(); return b[:] }

func port(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

func portMatch(from, to uint16) expr.Any {
	if from == to {
		return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port(from)}
	}
	return &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: port(from), ToData: port(to)}
}

func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

func comment(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

// snatTo loads first/last into registers 1/2 and SNATs to that range.
func snatTo(first, last netip.Addr, persistent bool) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: ip4(first)},
		&expr.Immediate{Register: 2, Data: ip4(last)},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 2, Persistent: persistent},
	}
}

// markRule: ip daddr VIP, l4proto, th dport in range -> meta mark set MARK.
func markRule(m Mark) []expr.Any {
	e := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip4(m.VIP)},
	}
	e = append(e, l4proto(m.Proto)...)
	e = append(e,
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		portMatch(m.From, m.To),
		&expr.Immediate{Register: 1, Data: binary.NativeEndian.AppendUint32(nil, m.Mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Counter{},
	)
	return e
}

// fullNATRule: meta mark in set -> snat to the local address range.
func fullNATRule(set string, first, last netip.Addr) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: set},
		&expr.Counter{},
	}
	return append(e, snatTo(first, last, false)...)
}

// markKeyType is the key of the marks map: ip daddr . meta l4proto . th
// dport, each field padded to a 32-bit register as nft concatenates them.
var markKeyType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)

// markKey is a marks map key: VIP, protocol and port, each padded to 4
// bytes.
func markKey(vip netip.Addr, proto uint8, p uint16) []byte {
	k := make([]byte, 12)
	copy(k[0:4], ip4(vip))
	k[4] = proto
	binary.BigEndian.PutUint16(k[8:10], p)
	return k
}

// markMapRule: meta mark set ip daddr . meta l4proto . th dport map @marks.
// The key is built in the consecutive 32-bit registers 1 (= NFT_REG32_00),
// 9 and 10; a packet whose key is not in the map keeps its mark.
func markMapRule() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 9},
		&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: SetMarks},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Counter{},
	}
}

// snatRule: ip saddr in Source, oifname Out, not dst-NATed -> snat to the
// IPool (persistent).
func snatRule(s SNAT) []expr.Any {
	bits := s.Source.Bits()
	m := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-bits))
	if bits == 0 {
		m = []byte{0, 0, 0, 0}
	}
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(s.OutIface)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip4(s.Source.Addr())},
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, ipsDstNAT), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Counter{},
	}
	return append(e, snatTo(s.First, s.Last, true)...)
}

// Manager applies rulesets to the table of one network namespace and can
// put the previous one back (stage.Change.Undo).
type Manager struct {
	tbl nftable.Table
	log logrus.FieldLogger

	mu  sync.Mutex
	cur *nftable.Snapshot // what the last Apply installed
}

// NewManager returns a manager for the namespace open at nsFd (-1 for the
// current namespace). The fd must stay open while the manager is used.
func NewManager(nsFd int, log logrus.FieldLogger) *Manager {
	return &Manager{tbl: nftable.Table{NsFd: nsFd, Name: TableName, Family: nftables.TableFamilyIPv4}, log: log}
}

func build(rs *Ruleset) *nftable.Snapshot {
	if rs.Empty() {
		return nil
	}
	t := table()
	s := &nftable.Snapshot{Rules: map[string][]*nftables.Rule{}}
	mc, sc := markChain(t), snatChain(t)
	s.Chains = []*nftables.Chain{mc, sc}
	// Single-port marks: one map lookup per packet, however many virtual
	// servers there are. Port ranges keep a rule each (few; a hash map
	// cannot hold a range).
	var single []nftables.SetElement
	var ranged []Mark
	for _, mk := range rs.Marks {
		if mk.From != mk.To {
			ranged = append(ranged, mk)
			continue
		}
		single = append(single, nftables.SetElement{Key: markKey(mk.VIP, mk.Proto, mk.From), Val: binary.NativeEndian.AppendUint32(nil, mk.Mark)})
	}
	if len(single) > 0 {
		s.Sets = append(s.Sets, nftable.Set{Set: &nftables.Set{Table: t, Name: SetMarks, IsMap: true, KeyType: markKeyType, DataType: nftables.TypeMark}, Elements: single})
		s.Rules[ChainMark] = append(s.Rules[ChainMark], &nftables.Rule{Table: t, Chain: mc, Exprs: markMapRule(),
			UserData: comment(fmt.Sprintf("fwmark of %d virtual servers (map %s)", len(single), SetMarks))})
	}
	for _, mk := range ranged {
		s.Rules[ChainMark] = append(s.Rules[ChainMark], &nftables.Rule{Table: t, Chain: mc, Exprs: markRule(mk),
			UserData: comment(fmt.Sprintf("fwmark vs %s", mk.VS))})
	}
	// FullNAT: one rule per local address range, matching the marks of
	// all its virtual servers in a set (only a connection's first packet
	// meets the nat chain, but with a rule per VS it walked them all).
	type group struct {
		first, last netip.Addr
		marks       []nftables.SetElement
		seen        map[uint32]bool
	}
	var groups []*group
	for _, f := range rs.FullNAT {
		var g *group
		for _, h := range groups {
			if h.first == f.First && h.last == f.Last {
				g = h
			}
		}
		if g == nil {
			g = &group{first: f.First, last: f.Last, seen: map[uint32]bool{}}
			groups = append(groups, g)
		}
		if !g.seen[f.Mark] { // two VSs may share a mark (FWMark, or the derived one): one element, or the kernel refuses the batch
			g.seen[f.Mark] = true
			g.marks = append(g.marks, nftables.SetElement{Key: binary.NativeEndian.AppendUint32(nil, f.Mark)})
		}
	}
	for i, g := range groups {
		name := fmt.Sprintf("%s%d", SetFullNATPrefix, i)
		s.Sets = append(s.Sets, nftable.Set{Set: &nftables.Set{Table: t, Name: name, KeyType: nftables.TypeMark}, Elements: g.marks})
		s.Rules[ChainSNAT] = append(s.Rules[ChainSNAT], &nftables.Rule{Table: t, Chain: sc, Exprs: fullNATRule(name, g.first, g.last),
			UserData: comment(fmt.Sprintf("fullnat of %d virtual servers to %s-%s", len(g.marks), g.first, g.last))})
	}
	for _, sn := range rs.SNAT {
		s.Rules[ChainSNAT] = append(s.Rules[ChainSNAT], &nftables.Rule{Table: t, Chain: sc, Exprs: snatRule(sn),
			UserData: comment(fmt.Sprintf("snat %s via %s", sn.Source, sn.OutIface))})
	}
	return s
}

func (m *Manager) install(s *nftable.Snapshot) error { return m.tbl.Install(s) }

// Apply replaces the table with rs in one batch (an empty ruleset removes
// the table); the change's Undo installs what the table held before.
func (m *Manager) Apply(_ context.Context, rs *Ruleset) (stage.Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	before := m.cur
	if before == nil {
		var err error
		if before, err = m.tbl.Read(); err != nil {
			return stage.Change{}, err
		}
	}
	next := build(rs)
	if err := m.install(next); err != nil {
		return stage.Change{}, err
	}
	m.cur = next
	m.log.WithFields(logrus.Fields{"marks": len(rs.Marks), "fullnat": len(rs.FullNAT), "snat": len(rs.SNAT)}).Info("nftables: table replaced")
	undo := func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if err := m.install(before); err != nil {
			return fmt.Errorf("nftables rollback: %w", err)
		}
		m.cur = before
		return nil
	}
	return stage.Change{Summary: fmt.Sprintf("table replaced (%d marks, %d fullnat, %d snat)", len(rs.Marks), len(rs.FullNAT), len(rs.SNAT)), Undo: undo}, nil
}

// Rules returns the table's rules as the kernel reports them, by chain
// (nil when there is no table).
func (m *Manager) Rules() (map[string][]*nftables.Rule, error) {
	s, err := m.tbl.Read()
	if err != nil || s == nil {
		return nil, err
	}
	return s.Rules, nil
}

// Sets returns the table's named sets and maps with their elements as the
// kernel reports them, by name (nil when there is no table).
func (m *Manager) Sets() (map[string][]nftables.SetElement, error) {
	s, err := m.tbl.Read()
	if err != nil || s == nil {
		return nil, err
	}
	out := map[string][]nftables.SetElement{}
	for _, st := range s.Sets {
		out[st.Set.Name] = st.Elements
	}
	return out, nil
}
