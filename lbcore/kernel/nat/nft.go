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

// fullNATRule: meta mark == MARK -> snat to the local address range.
func fullNATRule(f FullNAT) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, f.Mark)},
		&expr.Counter{},
	}
	return append(e, snatTo(f.First, f.Last, false)...)
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
	for _, mk := range rs.Marks {
		s.Rules[ChainMark] = append(s.Rules[ChainMark], &nftables.Rule{Table: t, Chain: mc, Exprs: markRule(mk),
			UserData: comment(fmt.Sprintf("fwmark vs %s", mk.VS))})
	}
	for _, f := range rs.FullNAT {
		s.Rules[ChainSNAT] = append(s.Rules[ChainSNAT], &nftables.Rule{Table: t, Chain: sc, Exprs: fullNATRule(f),
			UserData: comment(fmt.Sprintf("fullnat vs %s", f.VS))})
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
