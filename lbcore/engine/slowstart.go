package engine

import (
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// SlowStart is when each member's slow-start ramp began (it came back up,
// was added or re-enabled) and the time to compute weights at. The engine
// only reads it: the controller decides when ramps begin, and gives Now, so
// a ramp is computed the same way at any time and tests need no sleeping.
type SlowStart struct {
	Now   time.Time
	Since map[config.MemberRef]time.Time
}

// Ramp is where a member is in its pool's slow start (zero: not ramping).
type Ramp struct {
	// Share is the part of its weight the member has now: from RampFloor
	// to 1 in whole-second steps.
	Share float64 `json:"share"`
	// Left is how long until it has its whole weight.
	Left time.Duration `json:"left_ns"`
}

// Active reports whether the member is still ramping.
func (r Ramp) Active() bool { return r.Left > 0 }

// RampFloor is the share of its weight a ramping member starts at.
const RampFloor = 0.1

// RampScale is what a pool's IPVS weights are multiplied by while one of
// its members ramps, so even a member of weight 1 can start at a tenth of
// the others' (IPVS weights are whole numbers; schedulers use only their
// ratios, so scaling every member of the pool changes no share).
const RampScale = 10

// maxIPVSWeight is the largest weight the config allows.
const maxIPVSWeight = 65535

// RampOf is the ramp of a member whose slow start (pool slow_start d) began
// at since, at now: the share grows linearly from RampFloor to 1 over d, in
// steps of one second. A member with no start, a pool with no slow start or
// a ramp that has run its time is not ramping.
func RampOf(d time.Duration, since, now time.Time) Ramp {
	if d <= 0 || since.IsZero() {
		return Ramp{}
	}
	el := now.Sub(since)
	if el >= d {
		return Ramp{}
	}
	el = max(el, 0).Truncate(time.Second)
	return Ramp{Share: RampFloor + (1-RampFloor)*float64(el)/float64(d), Left: d - max(now.Sub(since), 0)}
}

// rampScale is the factor for a pool whose largest weight is maxW.
func rampScale(maxW int) int {
	if maxW <= 0 {
		return 1
	}
	return max(1, min(RampScale, maxIPVSWeight/maxW))
}

// rampWeight is the IPVS weight of a member of weight w (already scaled)
// at share s of it: at least 1, so a ramping member always takes some.
func rampWeight(w int, s float64) int {
	if w <= 0 {
		return 0
	}
	return max(1, int(float64(w)*s+0.5))
}
