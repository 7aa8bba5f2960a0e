package ipvs

import (
	"context"
	"errors"
	"fmt"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/stage"
	"sync"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"github.com/sirupsen/logrus"
)

// Kernel is the part of *mobyipvs.Handle the reconciler uses; tests pass a
// fake.
type Kernel interface {
	GetServices() ([]*mobyipvs.Service, error)
	GetDestinations(*mobyipvs.Service) ([]*mobyipvs.Destination, error)
	NewService(*mobyipvs.Service) error
	UpdateService(*mobyipvs.Service) error
	DelService(*mobyipvs.Service) error
	NewDestination(*mobyipvs.Service, *mobyipvs.Destination) error
	UpdateDestination(*mobyipvs.Service, *mobyipvs.Destination) error
	DelDestination(*mobyipvs.Service, *mobyipvs.Destination) error
	GetConfig() (*mobyipvs.Config, error)
	SetConfig(*mobyipvs.Config) error
}

var _ Kernel = (*mobyipvs.Handle)(nil)

// Open returns a handle on the IPVS table of the network namespace at
// nsPath ("" for the current one). ip_vs must already be loaded (see the
// package comment).
func Open(nsPath string) (*mobyipvs.Handle, error) {
	h, err := mobyipvs.New(nsPath)
	if err != nil {
		return nil, fmt.Errorf("ipvs: open netlink handle (ns %q): %w", nsPath, err)
	}
	return h, nil
}

// Clock is the time source of the reconciler's drainer.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Options configure a Reconciler.
type Options struct {
	// DrainTimeout is how long a removed member keeps serving its existing
	// connections at weight 0 before it is deleted anyway. 0 deletes removed
	// members at once.
	DrainTimeout time.Duration
	Clock        Clock // default: the real clock
	// FullReadEvery is how old the reconciler's memory of the kernel table
	// may get before an apply reads the whole table again (default 1 min).
	// In between, an apply checks the service list (one netlink dump) and
	// reads the destinations of the services it is about to change only.
	FullReadEvery time.Duration
}

// DefaultFullReadEvery is Options.FullReadEvery's default.
const DefaultFullReadEvery = time.Minute

// Reconciler owns the IPVS table of one network namespace.
//
// It remembers the table as it left it after each successful apply (last),
// so the next apply need not read 1000 services' destinations to change
// one: it verifies the remembered service list against one dump of the
// kernel's services, re-reads the destinations of the services the new plan
// touches, and falls back to a full read when the list differs, when the
// memory is older than FullReadEvery, or after any failure.
type Reconciler struct {
	k        Kernel
	log      logrus.FieldLogger
	opt      Options
	mu       sync.Mutex
	drain    map[DrainRef]time.Time // deadline per draining destination
	last     *State                 // the kernel table after the last successful apply; nil: unknown
	lastFull time.Time              // when last was last read in full
	stats    ReadStats
}

// ReadStats count how applies learnt the kernel table.
type ReadStats struct {
	Full        int // whole-table reads
	Incremental int // service-list check + destinations of touched services
	Fallbacks   int // incremental checks that found the table changed behind our back
}

// NewReconciler returns a reconciler over k.
func NewReconciler(k Kernel, log logrus.FieldLogger, opt Options) *Reconciler {
	if opt.Clock == nil {
		opt.Clock = realClock{}
	}
	if opt.FullReadEvery <= 0 {
		opt.FullReadEvery = DefaultFullReadEvery
	}
	return &Reconciler{k: k, log: log, opt: opt, drain: map[DrainRef]time.Time{}}
}

// Read returns what the kernel has now.
func (r *Reconciler) Read() (*State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.read()
}

func (r *Reconciler) read() (*State, error) {
	st := NewState()
	kss, err := r.k.GetServices()
	if err != nil {
		return nil, fmt.Errorf("ipvs: list services: %w", err)
	}
	for _, ks := range kss {
		s := serviceFromKernel(ks)
		kds, err := r.k.GetDestinations(ks)
		if err != nil {
			return nil, fmt.Errorf("ipvs: list destinations of %s: %w", s.Key, err)
		}
		for _, kd := range kds {
			d := destFromKernel(kd)
			s.Dests[d.Key] = d
		}
		st.Services[s.Key] = s
	}
	cfg, err := r.k.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("ipvs: read timeouts: %w", err)
	}
	st.Timeouts = &Timeouts{TCP: cfg.TimeoutTCP, TCPFin: cfg.TimeoutTCPFin, UDP: cfg.TimeoutUDP}
	return st, nil
}

// applied is a successful reconcile that can still be undone (when a later
// stage of a larger apply fails).
type applied struct {
	Plan *Plan
	r    *Reconciler
	undo []Op // inverse ops, in the order they must run
	new  []DrainRef
}

// Apply makes the kernel's IPVS table match desired (the stage contract:
// Detail is the *Plan, Undo reverts it).
func (r *Reconciler) Apply(_ context.Context, desired *State) (stage.Change, error) {
	a, err := r.reconcile(desired)
	if err != nil {
		return stage.Change{}, err
	}
	c := stage.Change{Detail: a.Plan}
	if !a.Plan.Empty() {
		c.Summary = fmt.Sprintf("%d changes", len(a.Plan.Ops))
		c.Undo = a.undoAll
	}
	return c, nil
}

// undoAll reverts the reconcile.
func (a *applied) undoAll() error {
	a.r.mu.Lock()
	defer a.r.mu.Unlock()
	for _, d := range a.new {
		delete(a.r.drain, d)
	}
	a.r.last = nil
	return a.r.runUndo(a.undo)
}

// reconcile makes the kernel match desired with the minimal plan. On failure the
// steps already taken are undone, so the kernel ends as it started; the
// error says what failed (and whether the undo failed too).
func (r *Reconciler) reconcile(desired *State) (*applied, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	actual, err := r.current(desired)
	if err != nil {
		r.last = nil
		return nil, err
	}
	plan := Diff(desired, actual, DiffOptions{Drain: r.opt.DrainTimeout > 0})
	var undo []Op
	for i, op := range plan.Ops {
		if err := r.exec(op); err != nil {
			r.last = nil // whatever happens next, read the kernel in full
			err = fmt.Errorf("ipvs: step %d/%d %s: %w", i+1, len(plan.Ops), op, err)
			if uerr := r.runUndo(undo); uerr != nil {
				return nil, errors.Join(err, fmt.Errorf("ipvs: rollback failed, kernel state is partly changed: %w", uerr))
			}
			return nil, fmt.Errorf("%w (rolled back %d steps)", err, len(undo))
		}
		undo = append(undo, inverse(op)...)
	}
	r.last = afterPlan(actual, plan)
	// Drain bookkeeping: new drains get a deadline; members wanted again
	// stop draining.
	now := r.opt.Clock.Now()
	var added []DrainRef
	for _, d := range plan.Drains {
		if _, ok := r.drain[d]; !ok {
			r.drain[d] = now.Add(r.opt.DrainTimeout)
			added = append(added, d)
		}
	}
	for d := range r.drain {
		if s, ok := desired.Services[d.Service]; ok {
			if _, wanted := s.Dests[d.Dest]; wanted {
				delete(r.drain, d)
			}
		} else {
			delete(r.drain, d) // the service went away with its destinations
		}
	}
	if !plan.Empty() {
		r.log.WithField("counts", plan.Counts()).Infof("ipvs: applied %d changes", len(plan.Ops))
		for _, op := range plan.Ops {
			r.log.Debugf("ipvs: %s", op)
		}
	}
	return &applied{Plan: plan, r: r, undo: undo, new: added}, nil
}

// inverse returns the ops that undo op (to be run after the inverses of the
// ops that came later).
func inverse(op Op) []Op {
	switch op.Kind {
	case OpSetTimeouts:
		return []Op{{Kind: OpSetTimeouts, Timeouts: op.OldTimeouts}}
	case OpAddService:
		return []Op{{Kind: OpDelService, Svc: op.Svc}}
	case OpUpdateService:
		return []Op{{Kind: OpUpdateService, Svc: op.Old}}
	case OpDelService:
		// Recreate the service, then its destinations (run in reverse
		// below, so list destinations first).
		ops := []Op{}
		for _, d := range op.Old.SortedDests() {
			ops = append(ops, Op{Kind: OpAddDest, Svc: op.Old, Dest: d})
		}
		return append(ops, Op{Kind: OpAddService, Svc: op.Old})
	case OpAddDest:
		return []Op{{Kind: OpDelDest, Svc: op.Svc, Prev: op.Dest}}
	case OpUpdateDest:
		return []Op{{Kind: OpUpdateDest, Svc: op.Svc, Dest: op.Prev}}
	case OpDelDest:
		return []Op{{Kind: OpAddDest, Svc: op.Svc, Dest: op.Prev}}
	}
	return nil
}

func (r *Reconciler) runUndo(undo []Op) error {
	var errs []error
	for i := len(undo) - 1; i >= 0; i-- {
		if err := r.exec(undo[i]); err != nil {
			errs = append(errs, fmt.Errorf("undo %s: %w", undo[i], err))
		}
	}
	return errors.Join(errs...)
}

func (r *Reconciler) exec(op Op) error {
	switch op.Kind {
	case OpSetTimeouts:
		return r.k.SetConfig(&mobyipvs.Config{TimeoutTCP: op.Timeouts.TCP, TimeoutTCPFin: op.Timeouts.TCPFin, TimeoutUDP: op.Timeouts.UDP})
	case OpAddService:
		return r.k.NewService(op.Svc.toKernel())
	case OpUpdateService:
		return r.k.UpdateService(op.Svc.toKernel())
	case OpDelService:
		return r.k.DelService(op.Svc.toKernel())
	case OpAddDest:
		return r.k.NewDestination(op.Svc.toKernel(), op.Dest.toKernel())
	case OpUpdateDest:
		return r.k.UpdateDestination(op.Svc.toKernel(), op.Dest.toKernel())
	case OpDelDest:
		return r.k.DelDestination(op.Svc.toKernel(), op.Prev.toKernel())
	}
	return fmt.Errorf("unknown op %d", op.Kind)
}

// Draining lists the destinations being drained with their deadlines.
func (r *Reconciler) Draining() map[DrainRef]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[DrainRef]time.Time, len(r.drain))
	for k, v := range r.drain {
		out[k] = v
	}
	return out
}

// DrainOnce deletes every draining destination whose active connections
// reached 0 or whose deadline passed, and forgets destinations that are gone
// or were given a weight again. It returns how many it deleted.
func (r *Reconciler) DrainOnce() (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.drain) == 0 {
		return 0, nil
	}
	now := r.opt.Clock.Now()
	bySvc := map[ServiceKey][]DrainRef{}
	for d := range r.drain {
		bySvc[d.Service] = append(bySvc[d.Service], d)
	}
	deleted := 0
	var errs []error
	for sk, refs := range bySvc {
		ks := (&Service{Key: sk}).toKernel()
		kds, err := r.k.GetDestinations(ks)
		if err != nil {
			// The service may have been deleted under us.
			errs = append(errs, fmt.Errorf("ipvs drain: list destinations of %s: %w", sk, err))
			r.last = nil
			continue
		}
		have := map[DestKey]*Dest{}
		for _, kd := range kds {
			d := destFromKernel(kd)
			have[d.Key] = d
		}
		for _, ref := range refs {
			d, ok := have[ref.Dest]
			if !ok || d.Weight != 0 {
				delete(r.drain, ref)
				continue
			}
			deadline := r.drain[ref]
			if d.Active > 0 && now.Before(deadline) {
				continue
			}
			if err := r.k.DelDestination(ks, d.toKernel()); err != nil {
				errs = append(errs, fmt.Errorf("ipvs drain: delete %s -> %s: %w", sk, ref.Dest, err))
				r.last = nil
				continue
			}
			r.forgetDest(sk, ref.Dest)
			reason := "no active connections"
			if d.Active > 0 {
				reason = fmt.Sprintf("drain timeout with %d active connections", d.Active)
			}
			r.log.Infof("ipvs: drained %s -> %s (%s)", sk, ref.Dest, reason)
			delete(r.drain, ref)
			deleted++
		}
	}
	return deleted, errors.Join(errs...)
}

// RunDrainer calls DrainOnce every interval until ctx is done.
func (r *Reconciler) RunDrainer(ctx context.Context, interval time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.opt.Clock.After(interval):
		}
		if _, err := r.DrainOnce(); err != nil {
			r.log.WithError(err).Warn("ipvs: drain pass")
		}
	}
}
