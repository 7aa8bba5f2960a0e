package l7

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

// vsStats are one virtual server's counters; they survive config applies.
type vsStats struct {
	byClass    [6]atomic.Uint64 // index status/100 (1xx..5xx); 0: other
	bytes      atomic.Int64
	badCookies atomic.Uint64

	mu      sync.Mutex
	members map[config.MemberRef]*memberStats
}

type memberStats struct {
	requests atomic.Uint64
	errors   atomic.Uint64
	bytes    atomic.Int64
}

func newVSStats() *vsStats { return &vsStats{members: map[config.MemberRef]*memberStats{}} }

func (s *vsStats) member(ref config.MemberRef) *memberStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.members[ref]
	if m == nil {
		m = &memberStats{}
		s.members[ref] = m
	}
	return m
}

func (s *vsStats) count(status int, bytes int64) {
	c := status / 100
	if c < 1 || c > 5 {
		c = 0
	}
	s.byClass[c].Add(1)
	s.bytes.Add(bytes)
}

// Status reports every L7 virtual server with its counters and members.
func (p *Proxy) Status() []localapi.L7VirtualServer {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := []localapi.L7VirtualServer{}
	for a, l := range p.listeners {
		st := l.vs.load()
		open, evicted, refused := l.conns.Stats()
		v := localapi.L7VirtualServer{
			Name: st.name, Mode: string(st.mode), Address: a.String(), Pool: "", Requests: map[string]uint64{},
			BytesOut: uint64(st.stats.bytes.Load()), BadCookies: st.stats.badCookies.Load(),
			ConnsOpen: open, ConnsEvicted: evicted, ConnsRefused: refused,
		}
		for c := range st.stats.byClass {
			name := "other"
			if c > 0 {
				name = string(rune('0'+c)) + "xx"
			}
			v.Requests[name] = st.stats.byClass[c].Load()
		}
		for _, m := range st.bal.Members() {
			ms := st.memStI[m]
			v.Pool = m.Ref.Pool
			v.Members = append(v.Members, localapi.L7Member{
				Pool: m.Ref.Pool, Member: m.Ref.Label(), Address: m.Addr, Weight: m.Weight, Usable: m.Usable(),
				Active: m.Active(), Requests: ms.requests.Load(), Errors: ms.errors.Load(), BytesOut: uint64(ms.bytes.Load()),
			})
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
