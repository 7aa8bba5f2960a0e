package ipvs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"
)

// current returns the kernel table as far as Diff needs it: the table as
// the last successful apply left it, or a full read when there is no such
// memory (first apply, after a failure) or it is older than FullReadEvery.
// Nothing is read from the kernel on the hot path: Verify (RunVerifier)
// compares the memory with the kernel off it, and an apply that the kernel
// refuses against the memory is retried once on a full read (reconcile).
// It reports whether it used the memory. Caller holds r.mu.
func (r *Reconciler) current() (*State, bool, error) {
	now := r.opt.Clock.Now()
	if r.last == nil || now.Sub(r.lastFull) >= r.opt.FullReadEvery {
		st, err := r.fullRead(now)
		return st, false, err
	}
	r.stats.FromMemory++
	return r.last, true, nil // read-only until afterPlan updates it in place
}

func (r *Reconciler) fullRead(now time.Time) (*State, error) {
	st, err := r.read()
	if err != nil {
		return nil, err
	}
	r.lastFull = now
	r.stats.Full++
	return st, nil
}

// Verify reads the whole kernel table and, when it differs from what the
// last apply left, puts the remembered table back (someone changed IPVS
// behind the reconciler's back) and says so. It holds the reconciler for
// one full read (applies wait that long; RunVerifier does this every
// FullReadEvery/2, not on the apply path). It returns the plan it applied
// (nil when the table matched or there was nothing to compare with).
func (r *Reconciler) Verify() (*Plan, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return nil, nil
	}
	now := r.opt.Clock.Now()
	actual, err := r.read()
	if err != nil {
		return nil, err
	}
	plan := Diff(r.last, actual, DiffOptions{})
	if plan.Empty() {
		r.lastFull = now
		return nil, nil
	}
	r.stats.Repairs++
	r.log.WithField("counts", plan.Counts()).Warnf("ipvs: the kernel table was changed behind lbd's back (%d differences); restoring it", len(plan.Ops))
	undo, err := r.run(plan.Ops)
	if err != nil {
		r.last = nil
		if uerr := r.runUndo(undo); uerr != nil {
			err = errors.Join(err, fmt.Errorf("ipvs: rollback failed: %w", uerr))
		}
		return nil, fmt.Errorf("ipvs: restore the table: %w", err)
	}
	r.lastFull = now
	return plan, nil
}

// RunVerifier calls Verify every FullReadEvery/2 until ctx is done, so
// applies never need a full read of their own.
func (r *Reconciler) RunVerifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.opt.Clock.After(r.opt.FullReadEvery / 2):
		}
		if _, err := r.Verify(); err != nil {
			r.log.WithError(err).Warn("ipvs: verify the kernel table")
		}
	}
}

// Stats reports how applies have read the kernel so far.
func (r *Reconciler) Stats() ReadStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// afterPlan is actual with plan applied: the kernel table once the plan
// succeeded. It updates actual's service map in place (actual is the
// reconciler's own memory or a fresh read: no one else holds it; copying
// a map of thousands of services per health transition was most of its
// cost) but copies every service it changes, since the plan's ops (undo)
// still point at the old ones, and never aliases the desired state
// (callers may edit theirs later).
func afterPlan(actual *State, plan *Plan) *State {
	st := actual
	own := map[ServiceKey]bool{} // services already copied in st
	mut := func(k ServiceKey) *Service {
		s := st.Services[k]
		if !own[k] {
			c := *s
			c.Dests = maps.Clone(s.Dests)
			s = &c
			st.Services[k] = s
			own[k] = true
		}
		return s
	}
	for _, op := range plan.Ops {
		switch op.Kind {
		case OpSetTimeouts:
			t := *actual.Timeouts
			if op.Timeouts.TCP != 0 {
				t.TCP = op.Timeouts.TCP
			}
			if op.Timeouts.TCPFin != 0 {
				t.TCPFin = op.Timeouts.TCPFin
			}
			if op.Timeouts.UDP != 0 {
				t.UDP = op.Timeouts.UDP
			}
			st.Timeouts = &t
		case OpAddService:
			c := *op.Svc
			c.Dests = map[DestKey]*Dest{}
			st.Services[op.Svc.Key] = &c
			own[op.Svc.Key] = true
		case OpUpdateService:
			s := mut(op.Svc.Key)
			s.Scheduler, s.Flags, s.Timeout, s.Netmask = op.Svc.Scheduler, op.Svc.Flags, op.Svc.Timeout, op.Svc.Netmask
		case OpDelService:
			delete(st.Services, op.Svc.Key)
			delete(own, op.Svc.Key)
		case OpAddDest, OpUpdateDest:
			d := *op.Dest
			mut(op.Svc.Key).Dests[d.Key] = &d
		case OpDelDest:
			delete(mut(op.Svc.Key).Dests, op.Prev.Key)
		}
	}
	return st
}

// forgetDest drops a destination the drainer deleted from the remembered
// table. Caller holds r.mu.
func (r *Reconciler) forgetDest(sk ServiceKey, dk DestKey) {
	if r.last == nil {
		return
	}
	s, ok := r.last.Services[sk]
	if !ok {
		return
	}
	c := *s
	c.Dests = maps.Clone(s.Dests)
	delete(c.Dests, dk)
	r.last.Services[sk] = &c
}
