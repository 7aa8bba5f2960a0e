package engine

import "github.com/fulcrum-lb/fulcrum/lbcore/config"

// MemberState is one pool member as the pool policy sees it.
type MemberState struct {
	Ref      config.MemberRef
	Weight   int  // configured weight, or the one its checks set (dynamic_weight)
	Disabled bool // operator override: weight 0
	Up       bool // health checks say up (always, without a monitor)
	Down     bool // health checks say down (not merely unchecked yet)
	Ramp     Ramp // its slow start, when it ramps
}

// Dest is one member's place in the pool's service.
type Dest struct {
	Ref    config.MemberRef
	In     bool // in the service at all
	Weight int  // when In: the IPVS weight
	// Ramp: the member ramps (slow start); Weight is Ramp.Share of its
	// weight, on the pool's scale (RampScale).
	Ramp Ramp
}

// PoolResult is what a pool serves.
type PoolResult struct {
	Members     []Dest // in member order
	Serving     int    // members up, enabled, with weight > 0
	QuorumMet   bool
	SorryActive bool // the sorry server (weight 1) serves new connections
	// Panic: more than the pool's panic threshold of its enabled members
	// fail their checks at once, so the checks are overruled and every
	// enabled member serves at its weight.
	Panic bool
	// Failed is the number of enabled members whose checks say down (not
	// those unchecked yet: a pool starting up is not in panic).
	Failed int
	// Ramping: a member is in slow start, so every weight of the pool is
	// on the scale RampScale.
	Ramping bool
}

// PoolPolicy is the one pool policy: the IPVS destinations and the status
// reports both come from it.
//   - an up member keeps its configured weight (0 when disabled);
//   - a member that is down or not yet known leaves the service, or stays
//     at weight 0 when the pool inhibits;
//   - panic: when more than the pool's panic threshold of its enabled
//     members are down at once (and the threshold is not 0), health is
//     overruled and every enabled member serves as if up, as Envoy does;
//     operator-disabled members stay at weight 0;
//   - when fewer members serve than the quorum (at least 1) and the pool has
//     a sorry server, the sorry server alone takes new connections: every
//     member still in the service goes to weight 0 and its connections finish;
//   - slow start: while a member up by its checks (not by panic) with a
//     weight ramps, every weight of the pool is multiplied by RampScale and
//     the ramping member's is its ramp's share of that (at least 1).
func PoolPolicy(p *config.Pool, members []MemberState) PoolResult {
	res := PoolResult{Members: make([]Dest, len(members))}
	enabled := 0
	for _, m := range members {
		if !m.Disabled {
			enabled++
			if m.Down {
				res.Failed++
			}
		}
	}
	// failed/enabled > threshold/100, in integers.
	if th := int(p.Panic()); th > 0 && enabled > 0 && res.Failed*100 > th*enabled {
		res.Panic = true
	}
	for i, m := range members {
		w := m.Weight
		if m.Disabled {
			w = 0
		}
		up := m.Up || (res.Panic && !m.Disabled)
		d := Dest{Ref: m.Ref, In: up || p.Inhibit}
		if up {
			d.Weight = w
		}
		if d.In && d.Weight > 0 {
			res.Serving++
		}
		res.Members[i] = d
	}
	quorum := p.Quorum
	if p.SorryServer != nil {
		quorum = max(quorum, 1)
	}
	res.QuorumMet = res.Serving >= quorum
	res.SorryActive = !res.QuorumMet && p.SorryServer != nil
	if res.SorryActive {
		for i := range res.Members {
			res.Members[i].Weight = 0
		}
		return res
	}
	if !res.Panic {
		slowStart(&res, members)
	}
	return res
}

// slowStart scales the pool's weights while one of its members ramps.
func slowStart(res *PoolResult, members []MemberState) {
	maxW := 0
	for i, d := range res.Members {
		if d.In && d.Weight > 0 {
			maxW = max(maxW, d.Weight)
			if members[i].Ramp.Active() {
				res.Ramping = true
			}
		}
	}
	if !res.Ramping {
		return
	}
	f := rampScale(maxW)
	for i := range res.Members {
		d := &res.Members[i]
		if !d.In || d.Weight <= 0 {
			continue
		}
		d.Weight *= f
		if r := members[i].Ramp; r.Active() {
			d.Ramp = r
			d.Weight = rampWeight(d.Weight, r.Share)
		}
	}
}

// PoolMembers lists the members of pool with their overrides and health.
func PoolMembers(name string, p *config.Pool, ov Overrides, h Health) []MemberState {
	out := make([]MemberState, len(p.Members))
	for i := range p.Members {
		m := &p.Members[i]
		r := m.Ref(name)
		v, dw := Up, NoWeight
		if h != nil && p.Monitor != "" {
			v, dw = h(r)
		}
		w := m.MemberWeight()
		if dw >= 0 {
			w = int(dw)
		}
		out[i] = MemberState{Ref: r, Weight: w, Disabled: ov.Disabled[r], Up: v == Up, Down: v == Down,
			Ramp: RampOf(p.SlowStart.D(), ov.SlowStart.Since[r], ov.SlowStart.Now)}
	}
	return out
}
