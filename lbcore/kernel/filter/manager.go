package filter

import (
	"context"

	"errors"
	"fmt"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/stage"
	"sync"

	"github.com/google/nftables"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Manager applies policies to the filter table of one network namespace and
// can put the previous table back.
type Manager struct {
	nsFd int // -1: the current namespace
	log  logrus.FieldLogger

	mu sync.Mutex
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

// snapshot is the table's content: chains (base chain first) and the rules
// of each. nil means "no table".
type snapshot struct {
	chains []*nftables.Chain
	rules  map[string][]*nftables.Rule
}

func build(p *Policy) *snapshot {
	t := table()
	s := &snapshot{rules: map[string][]*nftables.Rule{}}
	in := inputChain(t)
	s.chains = append(s.chains, in)
	add := func(ch *nftables.Chain, rs []rule) {
		for _, x := range rs {
			s.rules[ch.Name] = append(s.rules[ch.Name], &nftables.Rule{Table: t, Chain: ch, Exprs: x.exprs, UserData: comment(x.comment)})
		}
	}
	for i := range p.Zones {
		zc := zoneChain(t, p.Zones[i].Name)
		s.chains = append(s.chains, zc)
		add(zc, zoneRules(p, &p.Zones[i]))
	}
	add(in, inputRules(p))
	return s
}

// install replaces the table with s (nil: removes it) in one batch.
func (m *Manager) install(s *snapshot) error {
	c, err := m.conn()
	if err != nil {
		return err
	}
	t := table()
	// add+delete(+add): replaces the table whether it existed or not, in the
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
		return fmt.Errorf("nftables: replace table inet %s: %w", TableName, err)
	}
	return nil
}

// read returns what the kernel's table holds now (nil: no table).
func (m *Manager) read() (*snapshot, error) {
	c, err := m.conn()
	if err != nil {
		return nil, err
	}
	t, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("nftables: read table inet %s: %w", TableName, err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("nftables: list chains: %w", err)
	}
	s := &snapshot{rules: map[string][]*nftables.Rule{}}
	var base, regular []*nftables.Chain
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		if ch.Hooknum != nil {
			base = append(base, ch)
		} else {
			regular = append(regular, ch)
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, fmt.Errorf("nftables: list rules of %s: %w", ch.Name, err)
		}
		s.rules[ch.Name] = rules
	}
	// Regular chains first: base chains' rules jump to them.
	s.chains = append(regular, base...)
	return s, nil
}

// Apply validates p and replaces the table with it in one batch (the stage
// contract: the change's Undo puts back what the table held before, as the
// kernel reported it). An invalid policy changes nothing.
func (m *Manager) Apply(_ context.Context, p *Policy) (stage.Change, error) {
	if err := p.Validate(); err != nil {
		return stage.Change{}, fmt.Errorf("input filter: %w", err)
	}
	return m.replace(build(p), fmt.Sprintf("input filter applied (%d zones)", len(p.Zones)))
}

// Remove deletes the table (input is then unfiltered); Undo puts it back.
func (m *Manager) Remove() (stage.Change, error) {
	return m.replace(nil, "input filter removed")
}

func (m *Manager) replace(next *snapshot, msg string) (stage.Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	before, err := m.read()
	if err != nil {
		return stage.Change{}, err
	}
	if err := m.install(next); err != nil {
		return stage.Change{}, err
	}
	m.log.Info(msg)
	undo := func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if err := m.install(before); err != nil {
			return fmt.Errorf("input filter rollback: %w", err)
		}
		return nil
	}
	return stage.Change{Summary: msg, Undo: undo}, nil
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
