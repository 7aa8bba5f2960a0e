package health

// PoolMember is one configured pool member with its current health.
type PoolMember struct {
	ID     string
	Weight int // configured weight; 0 means administratively drained
	State  State
}

// PoolPolicy is what a pool says about failed members.
type PoolPolicy struct {
	// Inhibit keeps failed members in the service at weight 0 (existing
	// connections live on) instead of removing them.
	Inhibit bool
	// Quorum is the number of serving members (up, weight > 0) the pool
	// needs; below it the sorry server takes over when one is set. With a
	// sorry server, a quorum under 1 counts as 1.
	Quorum int
	// SorryServer is the ID of the sorry server destination ("" for none).
	SorryServer string
}

// Destination is one wanted destination of a pool's virtual service.
type Destination struct {
	ID     string
	Weight int
}

// PoolState is what a pool should serve.
type PoolState struct {
	Destinations []Destination // in member order; the sorry server last
	Serving      int           // members up with weight > 0
	QuorumMet    bool
	SorryActive  bool
}

// PoolEffect computes a pool's wanted destinations from its members' health.
// It is a pure function:
//   - an up member keeps its configured weight;
//   - a member that is down or not yet known leaves the set, or stays at
//     weight 0 when the pool inhibits;
//   - when fewer members serve than the quorum and a sorry server is set,
//     the sorry server (weight 1) replaces every member (members stay at
//     weight 0 when the pool inhibits). Without a sorry server the healthy
//     members keep serving.
func PoolEffect(members []PoolMember, p PoolPolicy) PoolState {
	var st PoolState
	for _, m := range members {
		if m.State == StateUp && m.Weight > 0 {
			st.Serving++
		}
	}
	quorum := p.Quorum
	if p.SorryServer != "" && quorum < 1 {
		quorum = 1
	}
	st.QuorumMet = st.Serving >= quorum
	st.SorryActive = !st.QuorumMet && p.SorryServer != ""
	st.Destinations = make([]Destination, 0, len(members)+1)
	for _, m := range members {
		switch {
		case st.SorryActive:
			if p.Inhibit {
				st.Destinations = append(st.Destinations, Destination{m.ID, 0})
			}
		case m.State == StateUp:
			st.Destinations = append(st.Destinations, Destination{m.ID, max(m.Weight, 0)})
		case p.Inhibit:
			st.Destinations = append(st.Destinations, Destination{m.ID, 0})
		}
	}
	if st.SorryActive {
		st.Destinations = append(st.Destinations, Destination{p.SorryServer, 1})
	}
	return st
}
