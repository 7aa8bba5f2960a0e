package nat

import (
	"context"

	"encoding/binary"
	"errors"
	"fmt"
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
	nsFd int // -1: the current namespace
	log  logrus.FieldLogger

	mu  sync.Mutex
	cur *snapshot // what the last Apply installed
}

// NewManager returns a manager for the namespace open at nsFd (-1 for the
// current namespace). The fd must stay open while the manager is used.
func NewManager(nsFd int, log logrus.FieldLogger) *Manager {
	return &Manager{nsFd: nsFd, log: log}
}

func (m *Manager) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if m.nsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(m.nsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: connect: %w", err)
	}
	return c, nil
}

// snapshot is the table's content as the kernel reports it: chains and the
// expressions of their rules. nil means "no table".
type snapshot struct {
	chains []*nftables.Chain
	rules  map[string][]*nftables.Rule
}

func build(rs *Ruleset) *snapshot {
	if rs.Empty() {
		return nil
	}
	t := table()
	s := &snapshot{rules: map[string][]*nftables.Rule{}}
	mc, sc := markChain(t), snatChain(t)
	s.chains = []*nftables.Chain{mc, sc}
	for _, mk := range rs.Marks {
		s.rules[ChainMark] = append(s.rules[ChainMark], &nftables.Rule{Table: t, Chain: mc, Exprs: markRule(mk),
			UserData: comment(fmt.Sprintf("fwmark vs %s", mk.VS))})
	}
	for _, f := range rs.FullNAT {
		s.rules[ChainSNAT] = append(s.rules[ChainSNAT], &nftables.Rule{Table: t, Chain: sc, Exprs: fullNATRule(f),
			UserData: comment(fmt.Sprintf("fullnat vs %s", f.VS))})
	}
	for _, sn := range rs.SNAT {
		s.rules[ChainSNAT] = append(s.rules[ChainSNAT], &nftables.Rule{Table: t, Chain: sc, Exprs: snatRule(sn),
			UserData: comment(fmt.Sprintf("snat %s via %s", sn.Source, sn.OutIface))})
	}
	return s
}

// install replaces the table with s (nil: removes it) in one batch.
func (m *Manager) install(s *snapshot) error {
	c, err := m.conn()
	if err != nil {
		return err
	}
	t := table()
	// add+delete+add: replaces the table whether it existed or not, in the
	// same transaction as the new content.
	c.AddTable(t)
	c.DelTable(t)
	if s != nil {
		c.AddTable(t)
		for _, ch := range s.chains {
			c.AddChain(&nftables.Chain{Name: ch.Name, Table: t, Type: ch.Type, Hooknum: ch.Hooknum, Priority: ch.Priority, Policy: ch.Policy})
		}
		for _, ch := range s.chains {
			for _, r := range s.rules[ch.Name] {
				c.AddRule(&nftables.Rule{Table: t, Chain: &nftables.Chain{Name: ch.Name, Table: t}, Exprs: r.Exprs, UserData: r.UserData})
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: replace table %s: %w", TableName, err)
	}
	return nil
}

// read returns what the kernel's table holds now (nil: no table).
func (m *Manager) read() (*snapshot, error) {
	c, err := m.conn()
	if err != nil {
		return nil, err
	}
	t, err := c.ListTableOfFamily(TableName, nftables.TableFamilyIPv4)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("nftables: read table %s: %w", TableName, err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("nftables: list chains: %w", err)
	}
	s := &snapshot{rules: map[string][]*nftables.Rule{}}
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		s.chains = append(s.chains, ch)
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, fmt.Errorf("nftables: list rules of %s: %w", ch.Name, err)
		}
		s.rules[ch.Name] = rules
	}
	return s, nil
}

// Apply replaces the table with rs in one batch (an empty ruleset removes
// the table); the change's Undo installs what the table held before.
func (m *Manager) Apply(_ context.Context, rs *Ruleset) (stage.Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	before := m.cur
	if before == nil {
		var err error
		if before, err = m.read(); err != nil {
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
	s, err := m.read()
	if err != nil || s == nil {
		return nil, err
	}
	return s.rules, nil
}
