package ipvs

import (
	"fmt"
	"strings"
)

// OpKind is one kind of kernel change.
type OpKind int

// The kinds of kernel change a plan is made of.
const (
	OpSetTimeouts OpKind = iota
	OpAddService
	OpUpdateService
	OpDelService
	OpAddDest
	OpUpdateDest
	OpDelDest
)

var opNames = [...]string{"set-timeouts", "add-service", "update-service", "del-service", "add-dest", "update-dest", "del-dest"}

func (k OpKind) String() string { return opNames[k] }

// Op is one step of a plan. Old holds what the step replaces or removes, so
// the step can be undone.
type Op struct {
	Kind OpKind
	Svc  *Service // the service the op is on (new version for add/update)
	Old  *Service // update-service: the kernel's version; del-service: with its destinations
	Dest *Dest    // new destination (add/update)
	Prev *Dest    // update-dest/del-dest: the kernel's version
	// Drain marks an update-dest that sets a removed member's weight to 0.
	Drain       bool
	Timeouts    *Timeouts
	OldTimeouts *Timeouts
}

func (o Op) String() string {
	switch o.Kind {
	case OpSetTimeouts:
		return fmt.Sprintf("set-timeouts tcp=%s tcpfin=%s udp=%s", o.Timeouts.TCP, o.Timeouts.TCPFin, o.Timeouts.UDP)
	case OpAddService, OpUpdateService:
		return fmt.Sprintf("%s %s", o.Kind, o.Svc.describe())
	case OpDelService:
		return fmt.Sprintf("%s %s", o.Kind, o.Svc.Key)
	case OpUpdateDest:
		if o.Drain {
			return fmt.Sprintf("drain %s -> %s (weight %d -> 0)", o.Svc.Key, o.Dest.Key, o.Prev.Weight)
		}
		return fmt.Sprintf("%s %s -> %s weight=%d", o.Kind, o.Svc.Key, o.Dest.Key, o.Dest.Weight)
	case OpAddDest:
		return fmt.Sprintf("%s %s -> %s weight=%d", o.Kind, o.Svc.Key, o.Dest.Key, o.Dest.Weight)
	case OpDelDest:
		return fmt.Sprintf("%s %s -> %s", o.Kind, o.Svc.Key, o.Prev.Key)
	}
	return o.Kind.String()
}

// DrainRef names a destination that is being drained.
type DrainRef struct {
	Service ServiceKey
	Dest    DestKey
}

// Plan is the ordered list of kernel changes that turns actual into desired,
// plus the destinations that are (now) draining.
type Plan struct {
	Ops    []Op
	Drains []DrainRef
}

// Empty reports whether the plan changes nothing in the kernel.
func (p *Plan) Empty() bool { return len(p.Ops) == 0 }

func (p *Plan) String() string {
	if p.Empty() {
		return "no changes"
	}
	lines := make([]string, len(p.Ops))
	for i, o := range p.Ops {
		lines[i] = o.String()
	}
	return strings.Join(lines, "\n")
}

// Counts summarises the plan by op kind.
func (p *Plan) Counts() map[string]int {
	c := map[string]int{}
	for _, o := range p.Ops {
		k := o.Kind.String()
		if o.Drain {
			k = "drain"
		}
		c[k]++
	}
	return c
}

// DiffOptions tune Diff.
type DiffOptions struct {
	// Drain makes a removed destination go to weight 0 (and be listed in
	// Plan.Drains) instead of being deleted at once. Destinations the
	// desired state lists as Unhealthy are deleted at once regardless.
	Drain bool
}

// Diff computes the minimal ordered plan from actual to desired: timeouts
// first, then per service (in key order) service add/update and destination
// add/update/drain, and finally deletion of services no longer wanted.
// Services and destinations that are equal are not touched.
func Diff(desired, actual *State, opt DiffOptions) *Plan {
	p := &Plan{}
	if desired.Timeouts != nil {
		var old Timeouts
		if actual.Timeouts != nil {
			old = *actual.Timeouts
		}
		want := *desired.Timeouts
		changed := (want.TCP != 0 && want.TCP != old.TCP) || (want.TCPFin != 0 && want.TCPFin != old.TCPFin) || (want.UDP != 0 && want.UDP != old.UDP)
		if changed {
			p.Ops = append(p.Ops, Op{Kind: OpSetTimeouts, Timeouts: &want, OldTimeouts: &old})
		}
	}
	// Only services with something to change are sorted and walked in
	// order: a no-op or a one-member change over a big table costs a map
	// lookup per destination, not a sort per service.
	var touched []*Service
	for _, ds := range desired.Services {
		if as, ok := actual.Services[ds.Key]; !ok || !ds.sameConfig(as) || !sameDests(ds, as) {
			touched = append(touched, ds)
		}
	}
	sortServices(touched)
	for _, ds := range touched {
		as, exists := actual.Services[ds.Key]
		if !exists {
			p.Ops = append(p.Ops, Op{Kind: OpAddService, Svc: ds})
			for _, d := range ds.SortedDests() {
				p.Ops = append(p.Ops, Op{Kind: OpAddDest, Svc: ds, Dest: d})
			}
			continue
		}
		if !ds.sameConfig(as) {
			p.Ops = append(p.Ops, Op{Kind: OpUpdateService, Svc: ds, Old: as})
		}
		for _, d := range ds.SortedDests() {
			ad, ok := as.Dests[d.Key]
			switch {
			case !ok:
				p.Ops = append(p.Ops, Op{Kind: OpAddDest, Svc: ds, Dest: d})
			case !d.sameConfig(*ad):
				p.Ops = append(p.Ops, Op{Kind: OpUpdateDest, Svc: ds, Dest: d, Prev: ad})
			}
		}
		for _, ad := range as.SortedDests() {
			if _, want := ds.Dests[ad.Key]; want {
				continue
			}
			if !opt.Drain || desired.Unhealthy[DrainRef{Service: ds.Key, Dest: ad.Key}] {
				p.Ops = append(p.Ops, Op{Kind: OpDelDest, Svc: ds, Prev: ad})
				continue
			}
			if ad.Weight != 0 {
				nd := *ad
				nd.Weight = 0
				p.Ops = append(p.Ops, Op{Kind: OpUpdateDest, Svc: ds, Dest: &nd, Prev: ad, Drain: true})
			}
			p.Drains = append(p.Drains, DrainRef{Service: ds.Key, Dest: ad.Key})
		}
	}
	var gone []*Service
	for _, as := range actual.Services {
		if _, want := desired.Services[as.Key]; !want {
			gone = append(gone, as)
		}
	}
	sortServices(gone)
	for _, as := range gone {
		p.Ops = append(p.Ops, Op{Kind: OpDelService, Svc: as, Old: as})
	}
	return p
}

// sameDests reports whether want and have hold the same destinations with
// the same weight and forwarding method (so a plan would not touch them).
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
