package filter

import (
	"context"

	"fmt"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nftable"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/stage"
	"sync"

	"github.com/google/nftables"
	"github.com/sirupsen/logrus"
)

// Manager applies policies to the filter table of one network namespace and
// can put the previous table back.
type Manager struct {
	tbl nftable.Table
	log logrus.FieldLogger

	mu sync.Mutex
}

// NewManager returns a manager for the namespace open at nsFd (-1 for the
// current namespace). The fd must stay open while the manager is used.
func NewManager(nsFd int, log logrus.FieldLogger) *Manager {
	return &Manager{tbl: nftable.Table{NsFd: nsFd, Name: TableName, Family: nftables.TableFamilyINet}, log: log}
}

func build(p *Policy) *nftable.Snapshot {
	t := table()
	s := &nftable.Snapshot{Rules: map[string][]*nftables.Rule{}}
	in := inputChain(t)
	s.Chains = append(s.Chains, in)
	add := func(ch *nftables.Chain, rs []rule) {
		for _, x := range rs {
			s.Rules[ch.Name] = append(s.Rules[ch.Name], &nftables.Rule{Table: t, Chain: ch, Exprs: x.exprs, UserData: comment(x.comment)})
		}
	}
	for i := range p.Zones {
		for _, v6 := range []bool{false, true} {
			if el := serviceElements(&p.Zones[i], v6); len(el) > 0 {
				s.Sets = append(s.Sets, nftable.Set{Set: &nftables.Set{Table: t, Name: ServiceSet(p.Zones[i].Name, v6), KeyType: serviceKeyType(v6)}, Elements: el})
			}
		}
		zc := zoneChain(t, p.Zones[i].Name)
		s.Chains = append(s.Chains, zc)
		add(zc, zoneRules(p, &p.Zones[i]))
	}
	add(in, inputRules(p))
	return s
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

func (m *Manager) replace(next *nftable.Snapshot, msg string) (stage.Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	before, err := m.tbl.Read()
	if err != nil {
		return stage.Change{}, err
	}
	if err := m.tbl.Install(next); err != nil {
		return stage.Change{}, err
	}
	m.log.Info(msg)
	undo := func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if err := m.tbl.Install(before); err != nil {
			return fmt.Errorf("input filter rollback: %w", err)
		}
		return nil
	}
	return stage.Change{Summary: msg, Undo: undo}, nil
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

// Sets returns the table's named sets with their elements as the kernel
// reports them, by name (nil when there is no table).
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
