package lbapply

// Slow start: the controller decides when a member's ramp begins and the
// engine computes its weight from that time (engine.RampOf). A ramp begins
// when, in a pool with slow_start:
//   - a member whose checks failed since lbd started (or since it was last
//     up) turns up again: a member up when lbd starts (boot, a restart
//     adopting the table, a first check) never ramps;
//   - a reload adds a member (in a monitored pool, at its first up);
//   - the operator re-enables a member.
// While any member ramps, Run re-applies the ramping pools every RampStep
// (each step edits the ramping destinations' weights); the step after the
// last ramp ends puts the pool back on its configured weights.

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/health"
	"github.com/sirupsen/logrus"
)

// memberRefs maps each member's id (as the health checker knows it) to its
// reference.
func memberRefs(cfg *config.Config) map[string]config.MemberRef {
	out := map[string]config.MemberRef{}
	for name, pool := range cfg.Pools {
		if pool == nil {
			continue
		}
		for i := range pool.Members {
			r := pool.Members[i].Ref(name)
			out[r.String()] = r
		}
	}
	return out
}

// slowStartOf is the slow start of ref's pool in cfg (0: none, or no such
// member).
func slowStartOf(cfg *config.Config, ref config.MemberRef) time.Duration {
	if cfg == nil {
		return 0
	}
	if p := cfg.Pools[ref.Pool]; p != nil {
		return p.SlowStart.D()
	}
	return 0
}

// noteTransitionLocked records what a health transition means for slow
// start (mu held); true when a ramp began.
func (c *Controller) noteTransitionLocked(ev health.Event) bool {
	ref, ok := c.memberRef[ev.Member]
	if !ok {
		return false
	}
	switch ev.To {
	case health.StateDown:
		if c.downSeen == nil {
			c.downSeen = map[config.MemberRef]bool{}
		}
		c.downSeen[ref] = true
		delete(c.rampSince, ref)
	case health.StateUp:
		again := c.downSeen[ref] || c.rampOnUp[ref]
		delete(c.downSeen, ref)
		delete(c.rampOnUp, ref)
		if d := slowStartOf(c.cfg, ref); again && d > 0 {
			if c.rampSince == nil {
				c.rampSince = map[config.MemberRef]time.Time{}
			}
			c.rampSince[ref] = c.Now()
			c.log.WithFields(logrus.Fields{"member": ref.Label(), "pool": ref.Pool, "slow_start": d}).Info("slow start: member back up, ramping to its weight")
			return true
		}
	}
	return false
}

// rampChange is what an apply does to the ramps, kept until it succeeds.
// It is a change, not a copy: a transition that begins a ramp while the
// apply runs is kept.
type rampChange struct {
	since   map[config.MemberRef]time.Time // the ramps the apply computes with
	keep    map[config.MemberRef]bool      // members of the new config whose pool has a slow start
	started map[config.MemberRef]time.Time // ramps this apply begins
	onUp    map[config.MemberRef]bool      // added members that ramp from their first up
}

// rampsForApply is the change to the ramps that applying cfg under ov at
// now makes, after old (nil: the first apply): members added by cfg and
// members re-enabled by ov ramp; members cfg no longer has, or whose pool
// has no slow start, stop.
func (c *Controller) rampsForApply(old *config.Config, cfg *config.Config, ov engine.Overrides, now time.Time) rampChange {
	c.mu.Lock()
	oldOv := c.ov
	ch := rampChange{since: maps.Clone(c.rampSince), keep: map[config.MemberRef]bool{}, started: map[config.MemberRef]time.Time{}, onUp: map[config.MemberRef]bool{}}
	c.mu.Unlock()
	if ch.since == nil {
		ch.since = map[config.MemberRef]time.Time{}
	}
	had := map[config.MemberRef]bool{}
	if old != nil {
		for _, ref := range memberRefs(old) {
			had[ref] = true
		}
	}
	has := memberRefs(cfg)
	for _, ref := range has {
		if slowStartOf(cfg, ref) > 0 {
			ch.keep[ref] = true
		}
	}
	for ref := range ch.since {
		if !ch.keep[ref] {
			delete(ch.since, ref)
		}
	}
	if old == nil {
		return ch
	}
	for _, ref := range has {
		if !ch.keep[ref] {
			continue
		}
		added := !had[ref]
		reenabled := oldOv.Disabled[ref] && !ov.Disabled[ref]
		switch {
		case added && cfg.Pools[ref.Pool].Monitor != "":
			ch.onUp[ref] = true // ramps from its first up
		case added || reenabled:
			ch.since[ref], ch.started[ref] = now, now
		}
	}
	return ch
}

// setRampsLocked applies ch to the ramps (mu held, after a successful
// apply, with memberRef already the new config's).
func (c *Controller) setRampsLocked(ch rampChange) {
	if c.rampSince == nil {
		c.rampSince = map[config.MemberRef]time.Time{}
	}
	if c.rampOnUp == nil {
		c.rampOnUp = map[config.MemberRef]bool{}
	}
	maps.DeleteFunc(c.rampSince, func(ref config.MemberRef, _ time.Time) bool { return !ch.keep[ref] })
	maps.DeleteFunc(c.rampOnUp, func(ref config.MemberRef, _ bool) bool { return !ch.keep[ref] })
	maps.DeleteFunc(c.downSeen, func(ref config.MemberRef, _ bool) bool { _, ok := c.memberRef[ref.String()]; return !ok })
	maps.Copy(c.rampSince, ch.started)
	maps.Copy(c.rampOnUp, ch.onUp)
}

func (c *Controller) logRampStarts(refs map[config.MemberRef]time.Time) {
	for ref := range refs {
		c.log.WithFields(logrus.Fields{"member": ref.Label(), "pool": ref.Pool}).Info("slow start: member added or re-enabled, ramping to its weight")
	}
}

// withRamps is ov with the given ramps at now, as the engine takes them.
func withRamps(ov engine.Overrides, since map[config.MemberRef]time.Time, now time.Time) engine.Overrides {
	ov.SlowStart = engine.SlowStart{Now: now, Since: since}
	return ov
}

// engineOverrides is ov with the running ramps, at the controller's now.
func (c *Controller) engineOverrides(ov engine.Overrides) engine.Overrides {
	now := c.Now()
	c.mu.Lock()
	since := maps.Clone(c.rampSince)
	c.mu.Unlock()
	return withRamps(ov, since, now)
}

// ramping reports whether some member is in its ramp.
func (c *Controller) ramping() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rampSince) > 0
}

func (c *Controller) wakeRamp() {
	select {
	case c.rampWake <- struct{}{}:
	default:
	}
}

// applyRamps is one step of the ramps: it re-applies the pools with a
// ramping member (and those whose last ramp just ended, back to their
// configured weights) and reports whether any member still ramps. A failed
// step leaves those pools pending for the health retry.
func (c *Controller) applyRamps(ctx context.Context) (more bool, err error) {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	now := c.Now()
	c.mu.Lock()
	cfg := c.cfg
	pools := map[string]bool{}
	var ended []config.MemberRef
	for ref, since := range c.rampSince {
		pools[ref.Pool] = true
		if !engine.RampOf(slowStartOf(cfg, ref), since, now).Active() {
			delete(c.rampSince, ref)
			ended = append(ended, ref)
		}
	}
	more = len(c.rampSince) > 0
	c.mu.Unlock()
	if adopting, _ := c.Adopting(); adopting || cfg == nil || len(pools) == 0 {
		return more, nil
	}
	start := time.Now()
	partial, ok := c.a.IPVS.(PartialIPVS)
	if ok {
		_, ov := c.Running()
		st, e := engine.IPVSOfPools(cfg, c.engineOverrides(ov), c.healthOf(), pools)
		if e == nil {
			_, e = partial.ApplyServices(ctx, st)
		}
		err = e
	} else {
		err = c.applyIPVSLocked(ctx)
	}
	if err != nil {
		c.mu.Lock()
		if c.pendingPools == nil {
			c.pendingPools = map[string]bool{}
		}
		maps.Copy(c.pendingPools, pools)
		c.mu.Unlock()
		return more, fmt.Errorf("slow start step: %w", err)
	}
	c.log.WithFields(logrus.Fields{"pools": len(pools), "took": time.Since(start).Round(time.Microsecond)}).Debug("slow start: ramping pools re-applied")
	for _, ref := range ended {
		c.log.WithFields(logrus.Fields{"member": ref.Label(), "pool": ref.Pool}).Info("slow start over: member at its full weight")
	}
	return more, nil
}
