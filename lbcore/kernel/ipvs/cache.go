package ipvs

import (
	"fmt"
	"maps"
	"time"

	mobyipvs "github.com/moby/ipvs"
)

// current returns the kernel table as far as Diff needs it: a full read, or
// the remembered table checked against the kernel's service list with the
// destinations of the services desired changes re-read. Caller holds r.mu.
func (r *Reconciler) current(desired *State) (*State, error) {
	now := r.opt.Clock.Now()
	if r.last == nil || now.Sub(r.lastFull) >= r.opt.FullReadEvery {
		return r.fullRead(now)
	}
	kss, err := r.k.GetServices()
	if err != nil {
		return nil, fmt.Errorf("ipvs: list services: %w", err)
	}
	if !sameServiceList(r.last, kss) {
		r.stats.Fallbacks++
		r.log.Info("ipvs: kernel service list differs from the last apply; reading the whole table")
		return r.fullRead(now)
	}
	cfg, err := r.k.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("ipvs: read timeouts: %w", err)
	}
	st := &State{Services: maps.Clone(r.last.Services),
		Timeouts: &Timeouts{TCP: cfg.TimeoutTCP, TCPFin: cfg.TimeoutTCPFin, UDP: cfg.TimeoutUDP}}
	for key, ds := range desired.Services {
		ls, ok := st.Services[key]
		if !ok || sameDests(ds, ls) {
			continue // new service (nothing to read) or no destination change
		}
		kds, err := r.k.GetDestinations(ls.toKernel())
		if err != nil {
			return nil, fmt.Errorf("ipvs: list destinations of %s: %w", key, err)
		}
		fresh := *ls
		fresh.Dests = make(map[DestKey]*Dest, len(kds))
		for _, kd := range kds {
			d := destFromKernel(kd)
			fresh.Dests[d.Key] = d
		}
		st.Services[key] = &fresh
	}
	r.stats.Incremental++
	return st, nil
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

// Stats reports how applies have read the kernel so far.
func (r *Reconciler) Stats() ReadStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// sameServiceList reports whether the kernel's services are exactly the
// remembered ones, with the same scheduler, flags, timeout and netmask.
func sameServiceList(last *State, kss []*mobyipvs.Service) bool {
	if len(kss) != len(last.Services) {
		return false
	}
	for _, ks := range kss {
		s := serviceFromKernel(ks)
		ls, ok := last.Services[s.Key]
		if !ok || !ls.sameConfig(s) {
			return false
		}
	}
	return true
}

// sameDests reports whether want's destinations equal have's in weight and
// forwarding method (so a plan would not touch them).
func sameDests(want, have *Service) bool {
	if len(want.Dests) != len(have.Dests) {
		return false
	}
	for k, d := range want.Dests {
		h, ok := have.Dests[k]
		if !ok || !d.sameConfig(*h) {
			return false
		}
	}
	return true
}

// afterPlan is actual with plan applied: the kernel table once the plan
// succeeded. It copies what it changes and never aliases the desired state
// (callers may edit theirs later).
func afterPlan(actual *State, plan *Plan) *State {
	st := &State{Services: maps.Clone(actual.Services), Timeouts: actual.Timeouts}
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
	r.last.Services = maps.Clone(r.last.Services)
	r.last.Services[sk] = &c
}
