// Package balance chooses a member of an L7 virtual server's pool: by a
// persistence cookie's pin when that member is usable, otherwise by the
// scheduler (rr, wrr, lc, wlc) among the usable members. Health comes from
// outside (the LB daemon's one health state) through SetUsable.
package balance

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// Member is one pool member as the proxy sees it.
type Member struct {
	Ref    config.MemberRef
	Addr   string // host:port to dial
	Weight int
	// Key is an opaque key the caller attaches (the cookie ID).
	Key    [8]byte
	usable atomic.Bool
	active atomic.Int64
}

// Usable reports whether the member may take new requests.
func (m *Member) Usable() bool { return m.usable.Load() && m.Weight > 0 }

// Active is the member's number of requests in flight.
func (m *Member) Active() int64 { return m.active.Load() }

// Done ends a request Pick started on the member.
func (m *Member) Done() { m.active.Add(-1) }

// ErrNoMember means no member is usable.
var ErrNoMember = errors.New("no usable member in the pool")

// Balancer picks members of one virtual server.
type Balancer struct {
	sched   config.Scheduler
	members []*Member
	byKey   map[[8]byte]*Member
	rr      atomic.Uint64
	mu      sync.Mutex // smooth weighted round robin state
	current []int
}

// New returns a balancer over members with scheduler s (one of
// config.L7Schedulers). Every member starts usable.
func New(s config.Scheduler, members []*Member) *Balancer {
	b := &Balancer{sched: s, members: members, byKey: map[[8]byte]*Member{}, current: make([]int, len(members))}
	for _, m := range members {
		m.usable.Store(true)
		b.byKey[m.Key] = m
	}
	return b
}

// Members lists the members.
func (b *Balancer) Members() []*Member { return b.members }

// SetUsable sets whether the member may take new requests.
func (b *Balancer) SetUsable(ref config.MemberRef, ok bool) {
	for _, m := range b.members {
		if m.Ref == ref {
			m.usable.Store(ok)
		}
	}
}

// Pick returns the member for a request: the pinned one (key, from a valid
// cookie; pinned false for none) when it is usable, else the scheduler's
// choice. fresh reports a scheduler choice (the caller sets a new cookie).
// The caller calls Done on the member when the request ends.
func (b *Balancer) Pick(key [8]byte, pinned bool) (m *Member, fresh bool, err error) {
	if pinned {
		if m := b.byKey[key]; m != nil && m.Usable() {
			m.active.Add(1)
			return m, false, nil
		}
	}
	m = b.schedule()
	if m == nil {
		return nil, true, ErrNoMember
	}
	m.active.Add(1)
	return m, true, nil
}

func (b *Balancer) schedule() *Member {
	switch b.sched {
	case "wrr":
		return b.weighted()
	case "lc", "wlc":
		return b.leastConn(b.sched == "wlc")
	}
	n := len(b.members)
	start := int(b.rr.Add(1) - 1)
	for i := range n {
		if m := b.members[(start+i)%n]; m.Usable() {
			return m
		}
	}
	return nil
}

// weighted is nginx's smooth weighted round robin.
func (b *Balancer) weighted() *Member {
	b.mu.Lock()
	defer b.mu.Unlock()
	total, best := 0, -1
	for i, m := range b.members {
		if !m.Usable() {
			continue
		}
		b.current[i] += m.Weight
		total += m.Weight
		if best < 0 || b.current[i] > b.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	b.current[best] -= total
	return b.members[best]
}

func (b *Balancer) leastConn(weighted bool) *Member {
	var best *Member
	n := len(b.members)
	start := int(b.rr.Add(1) - 1) // rotate ties
	for i := range n {
		m := b.members[(start+i)%n]
		if !m.Usable() {
			continue
		}
		if best == nil {
			best = m
			continue
		}
		a, c := m.Active(), best.Active()
		if weighted {
			// a/w_m < c/w_best
			if a*int64(best.Weight) < c*int64(m.Weight) {
				best = m
			}
		} else if a < c {
			best = m
		}
	}
	return best
}
