package ipvs

import (
	"context"
	"errors"
	"fmt"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvsnl"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/stage"
	"sync"
	"syscall"
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

var (
	_ Kernel = (*mobyipvs.Handle)(nil)
	_ Kernel = (*Handle)(nil)
)

// Handle is the IPVS table of one network namespace: it reads through
// moby/ipvs and makes changes in batches over its own generic netlink
// socket (lbcore/kernel/ipvsnl), many per round trip.
type Handle struct {
	*mobyipvs.Handle
	nl *ipvsnl.Conn
}

// Open returns a handle on the IPVS table of the network namespace at
// nsPath ("" for the current one). ip_vs must already be loaded (see the
// package comment).
func Open(nsPath string) (*Handle, error) {
	h, err := mobyipvs.New(nsPath)
	if err != nil {
		return nil, fmt.Errorf("ipvs: open netlink handle (ns %q): %w", nsPath, err)
	}
	c, err := ipvsnl.Open(nsPath)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("ipvs: open batch socket (ns %q): %w", nsPath, err)
	}
	return &Handle{Handle: h, nl: c}, nil
}

// Batch makes changes in order, many per netlink round trip.
func (h *Handle) Batch(changes []ipvsnl.Change) (ipvsnl.BatchResult, error) {
	return h.nl.Batch(changes)
}

// Close releases both sockets.
func (h *Handle) Close() {
	h.nl.Close()
	h.Handle.Close()
}

// Batcher is a Kernel that can make many changes per round trip (Handle
// is one). The reconciler makes changes one call at a time on a Kernel
// that is not.
type Batcher interface {
	Batch([]ipvsnl.Change) (ipvsnl.BatchResult, error)
}

var _ Batcher = (*Handle)(nil)

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
	// may get (since it was last read or verified in full) before an apply
	// reads the whole table itself (default 1 min). Run RunVerifier more
	// often than that to keep full reads off the apply path altogether.
	FullReadEvery time.Duration
}

// DefaultFullReadEvery is Options.FullReadEvery's default.
const DefaultFullReadEvery = time.Minute

// Reconciler owns the IPVS table of one network namespace.
//
// It remembers the table as it left it after each successful apply (last),
// so the next apply reads nothing from the kernel: it diffs against the
// memory and sends the plan in batches. Verify (RunVerifier) compares the
// memory with a full read off the apply path and restores the table when
// someone changed it behind the reconciler's back; a plan the kernel refuses
// is retried once on a full read; the memory is dropped after any failure
// and when older than FullReadEvery.
type Reconciler struct {
	k        Kernel
	log      logrus.FieldLogger
	opt      Options
	mu       sync.Mutex
	drain    map[DrainRef]time.Time // deadline per draining destination
	last     *State                 // the kernel table after the last successful apply; nil: unknown
	lastFull time.Time              // when last was last read or verified in full
	stats    ReadStats
}

// ReadStats count how applies learnt the kernel table.
type ReadStats struct {
	Full       int // whole-table reads
	FromMemory int // applies planned against the table the last apply left
	Retries    int // applies the kernel refused against the memory, retried on a full read
	Repairs    int // Verify passes that found the table changed behind our back
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
	return r.change(desired, false)
}

// ApplyServices makes the services part lists match part and leaves every
// other service, and the timeouts, as they are: what a health transition
// changes, planned over those services only (from memory, a few
// microseconds for a one-member change in a table of thousands). Same
// contract as Apply otherwise.
func (r *Reconciler) ApplyServices(_ context.Context, part *State) (stage.Change, error) {
	return r.change(part, true)
}

func (r *Reconciler) change(desired *State, partial bool) (stage.Change, error) {
	a, err := r.reconcile(desired, partial)
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
// error says what failed (and whether the undo failed too). A plan made
// against the remembered table that the kernel refuses is made again once
// against a full read: the table was changed behind our back.
func (r *Reconciler) reconcile(desired *State, partial bool) (*applied, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, fromMemory, err := r.reconcileOnce(desired, partial)
	if err == nil || !fromMemory || !outdatedMemory(err) {
		return a, err
	}
	r.stats.Retries++
	r.log.WithError(err).Warn("ipvs: the kernel refused a plan made against the table the last apply left; reading it in full and trying again")
	a, _, err = r.reconcileOnce(desired, partial)
	return a, err
}

// outdatedMemory reports whether the kernel refused a change because the
// table is not what the reconciler remembers: a service or destination it
// adds exists already, or one it changes or deletes does not.
func outdatedMemory(err error) bool {
	return errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENOENT)
}

// reconcileOnce plans desired against the kernel table (only the services
// desired lists when partial) and makes the plan.
func (r *Reconciler) reconcileOnce(desired *State, partial bool) (*applied, bool, error) {
	actual, fromMemory, err := r.current()
	if err != nil {
		r.last = nil
		return nil, false, err
	}
	against := actual
	if partial {
		against = &State{Services: make(map[ServiceKey]*Service, len(desired.Services)), Timeouts: actual.Timeouts}
		for k := range desired.Services {
			if s, ok := actual.Services[k]; ok {
				against.Services[k] = s
			}
		}
	}
	plan := Diff(desired, against, DiffOptions{Drain: r.opt.DrainTimeout > 0})
	undo, err := r.run(plan.Ops)
	if err != nil {
		r.last = nil // whatever happens next, read the kernel in full
		if uerr := r.runUndo(undo); uerr != nil {
			return nil, fromMemory, errors.Join(err, fmt.Errorf("ipvs: rollback failed, kernel state is partly changed: %w", uerr))
		}
		return nil, fromMemory, fmt.Errorf("%w (rolled back %d steps)", err, len(undo))
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
		} else if !partial {
			delete(r.drain, d) // the service went away with its destinations
		}
	}
	if !plan.Empty() {
		r.log.WithField("counts", plan.Counts()).Infof("ipvs: applied %d changes", len(plan.Ops))
		for _, op := range plan.Ops {
			r.log.Debugf("ipvs: %s", op)
		}
	}
	return &applied{Plan: plan, r: r, undo: undo, new: added}, fromMemory, nil
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

// run makes ops in order (batched when the kernel can) and returns the
// inverse ops of those the kernel made, in the order they must run, and
// an error naming the first op that failed.
func (r *Reconciler) run(ops []Op) ([]Op, error) {
	if len(ops) == 0 {
		return nil, nil
	}
	changes := make([]ipvsnl.Change, len(ops))
	for i, op := range ops {
		changes[i] = op.change()
	}
	res, err := r.batch(changes)
	if err != nil {
		return nil, err
	}
	var undo []Op
	for i, op := range ops {
		if res.Errs[i] == nil {
			undo = append(undo, inverse(op)...)
		}
	}
	if i, ferr := res.Failed(); ferr != nil {
		return undo, fmt.Errorf("ipvs: step %d/%d %s: %w", i+1, len(ops), ops[i], ferr)
	}
	if res.Unknown != nil {
		return undo, fmt.Errorf("ipvs: the kernel's answer was lost, the table is unknown: %w", res.Unknown)
	}
	return undo, nil
}

func (r *Reconciler) runUndo(undo []Op) error {
	if len(undo) == 0 {
		return nil
	}
	changes := make([]ipvsnl.Change, 0, len(undo))
	for i := len(undo) - 1; i >= 0; i-- {
		changes = append(changes, undo[i].change())
	}
	// Undo goes on past failures: every step that can be undone is.
	var errs []error
	for len(changes) > 0 {
		res, err := r.batch(changes)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		if res.Unknown != nil {
			return errors.Join(append(errs, res.Unknown)...)
		}
		next := len(changes)
		for i, e := range res.Errs {
			if e != nil && !errors.Is(e, ipvsnl.ErrNotSent) {
				errs = append(errs, fmt.Errorf("undo %s: %w", changes[i], e))
			}
			if errors.Is(e, ipvsnl.ErrNotSent) && i < next {
				next = i
			}
		}
		changes = changes[next:]
	}
	return errors.Join(errs...)
}

// batch makes changes through the kernel's Batch when it has one, else one
// call each, with the same result: it stops after the first failure.
func (r *Reconciler) batch(changes []ipvsnl.Change) (ipvsnl.BatchResult, error) {
	if b, ok := r.k.(Batcher); ok {
		return b.Batch(changes)
	}
	res := ipvsnl.BatchResult{Errs: make([]error, len(changes))}
	for i, c := range changes {
		if err := applyChange(r.k, c); err != nil {
			res.Errs[i] = err
			for j := i + 1; j < len(changes); j++ {
				res.Errs[j] = ipvsnl.ErrNotSent
			}
			break
		}
	}
	return res, nil
}

// change is op as a kernel table change.
func (op Op) change() ipvsnl.Change {
	switch op.Kind {
	case OpSetTimeouts:
		return ipvsnl.Change{Cmd: ipvsnl.SetConfig, Config: &mobyipvs.Config{TimeoutTCP: op.Timeouts.TCP, TimeoutTCPFin: op.Timeouts.TCPFin, TimeoutUDP: op.Timeouts.UDP}}
	case OpAddService:
		return ipvsnl.Change{Cmd: ipvsnl.NewService, Service: op.Svc.toKernel()}
	case OpUpdateService:
		return ipvsnl.Change{Cmd: ipvsnl.SetService, Service: op.Svc.toKernel()}
	case OpDelService:
		return ipvsnl.Change{Cmd: ipvsnl.DelService, Service: op.Svc.toKernel()}
	case OpAddDest:
		return ipvsnl.Change{Cmd: ipvsnl.NewDest, Service: op.Svc.toKernel(), Dest: op.Dest.toKernel()}
	case OpUpdateDest:
		return ipvsnl.Change{Cmd: ipvsnl.SetDest, Service: op.Svc.toKernel(), Dest: op.Dest.toKernel()}
	case OpDelDest:
		return ipvsnl.Change{Cmd: ipvsnl.DelDest, Service: op.Svc.toKernel(), Dest: op.Prev.toKernel()}
	}
	return ipvsnl.Change{} // Encode refuses it
}

// applyChange makes one change through the Kernel interface.
func applyChange(k Kernel, c ipvsnl.Change) error {
	switch c.Cmd {
	case ipvsnl.SetConfig:
		return k.SetConfig(c.Config)
	case ipvsnl.NewService:
		return k.NewService(c.Service)
	case ipvsnl.SetService:
		return k.UpdateService(c.Service)
	case ipvsnl.DelService:
		return k.DelService(c.Service)
	case ipvsnl.NewDest:
		return k.NewDestination(c.Service, c.Dest)
	case ipvsnl.SetDest:
		return k.UpdateDestination(c.Service, c.Dest)
	case ipvsnl.DelDest:
		return k.DelDestination(c.Service, c.Dest)
	}
	return fmt.Errorf("ipvs: %s is not a table change", c)
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
