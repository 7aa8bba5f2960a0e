package lbapply

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/health"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/stage"
	"github.com/sirupsen/logrus"
)

// HealthChecker is the health side (a *health.Scheduler, running).
type HealthChecker interface {
	Configure(config.Monitors, []health.Member) error
	State(id string) (health.State, bool)
	Snapshot() []health.MemberStatus
	// Weight is the weight a member's checks set (dynamic_weight).
	Weight(id string) (int, bool)
}

// Controller is the LB daemon's core: it applies configs and operator
// overrides synchronously (Apply), keeps the health checker's members equal
// to the pools of the running config, and re-applies the IPVS side when
// members change state.
//
// Health transitions are debounced: the first one starts a short window
// (Debounce) in which further ones are collected, then one IPVS apply
// covers them all, so a flapping or mass failure costs one apply per
// window, not one per member. Every apply is all-or-nothing; a failed health
// apply is retried after RetryAfter.
type Controller struct {
	a   *Applier
	h   HealthChecker // nil: no health checks
	log logrus.FieldLogger
	// Debounce is the window collecting transitions into one apply
	// (default 100ms).
	Debounce time.Duration
	// RetryAfter is when a failed health apply is tried again (default 2s).
	RetryAfter time.Duration
	// Ready, if set, is called once Run has applied the first config (lbd
	// tells init it is ready).
	Ready func()
	// Restore, if set, gives the operator overrides to start with for the
	// first config Run applies (lbd reads the ones a previous run saved).
	Restore func(*config.Config) engine.Overrides
	// AdoptPoll is how often an adopted IPVS table's hold checks whether
	// every member has settled (default 200ms; see adopt.go).
	AdoptPoll time.Duration
	// Now is the controller's clock for slow-start ramps (default
	// time.Now; tests give their own).
	Now func() time.Time
	// RampStep is how often the pools with a member in slow start are
	// re-applied while one ramps (default 1s, the ramp's step).
	RampStep time.Duration

	kick     chan struct{}
	rampWake chan struct{} // a ramp began: Run starts its ramp ticker

	applyMu sync.Mutex // one apply at a time: config, overrides or health

	mu          sync.Mutex
	cfg         *config.Config   // running config
	ov          engine.Overrides // running overrides
	path        string
	appliedAt   time.Time
	lastErr     string
	lastErrAt   time.Time
	transitions uint64    // health transitions seen
	applies     uint64    // health-triggered applies that changed the kernel
	adopting    bool      // IPVS left as the previous daemon left it (adopt.go)
	adoptUntil  time.Time // the hold ends by then at the latest
	// Health transitions not applied yet: the pools they are in, or all
	// (a member of no known pool, a failed apply).
	memberPool   map[string]string // member id -> pool, of the running config
	pendingPools map[string]bool
	pendingAll   bool
	// Slow start (slowstart.go): when each ramping member's ramp began;
	// members whose checks have failed (their next up ramps); members added
	// by a reload whose first up ramps.
	memberRef map[string]config.MemberRef // member id -> ref, of the running config
	rampSince map[config.MemberRef]time.Time
	downSeen  map[config.MemberRef]bool
	rampOnUp  map[config.MemberRef]bool
}

// PartialIPVS is an IPVS stage that can apply some services and leave
// the others alone (an *ipvs.Reconciler): a health transition then costs
// the pools it is in, not the whole table.
type PartialIPVS interface {
	ApplyServices(context.Context, *ipvs.State) (stage.Change, error)
}

// NewController returns a controller over a and h (h may be nil).
func NewController(a *Applier, h HealthChecker, log logrus.FieldLogger) *Controller {
	return &Controller{a: a, h: h, log: log, Debounce: 100 * time.Millisecond, RetryAfter: 2 * time.Second, AdoptPoll: 200 * time.Millisecond,
		Now: time.Now, RampStep: time.Second, kick: make(chan struct{}, 1), rampWake: make(chan struct{}, 1)}
}

// SetHealth sets the health checker (before Run; for wiring a scheduler
// whose OnTransition is the controller's).
func (c *Controller) SetHealth(h HealthChecker) { c.h = h }

// OnTransition is the health scheduler's transition hook: it asks for a
// re-apply. It never blocks.
func (c *Controller) OnTransition(ev health.Event) {
	c.mu.Lock()
	c.transitions++
	ramp := false
	if ev.From != ev.To { // not a dynamic weight change alone
		ramp = c.noteTransitionLocked(ev)
	}
	if pool, ok := c.memberPool[ev.Member]; ok {
		if c.pendingPools == nil {
			c.pendingPools = map[string]bool{}
		}
		c.pendingPools[pool] = true
	} else {
		c.pendingAll = true
	}
	c.mu.Unlock()
	if ramp {
		c.wakeRamp()
	}
	c.poke()
}

// takePending returns and clears the pools with unapplied transitions
// (all: apply every pool).
func (c *Controller) takePending() (pools map[string]bool, all bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pools, all = c.pendingPools, c.pendingAll
	c.pendingPools, c.pendingAll = nil, false
	return pools, all
}

// memberPools maps each member's id (as the health checker knows it) to its
// pool.
func memberPools(cfg *config.Config) map[string]string {
	out := map[string]string{}
	for name, pool := range cfg.Pools {
		if pool == nil {
			continue
		}
		for i := range pool.Members {
			out[pool.Members[i].Ref(name).String()] = name
		}
	}
	return out
}

func (c *Controller) poke() {
	select {
	case c.kick <- struct{}{}:
	default: // an apply is already pending
	}
}

// HealthMembers lists what the health checker must check for cfg: the
// monitors (with the source address defaulted to the Internal self IP of
// the member's family, so checks take the real path) and every member of
// every pool that names a monitor.
func HealthMembers(cfg *config.Config) (config.Monitors, []health.Member, error) {
	mons := config.Monitors{}
	var members []health.Member
	selfIP := func(v6 bool) config.IP {
		for _, p := range cfg.Network.Internal.Addresses {
			if p.Addr().Is6() == v6 {
				return config.IP{Addr: p.Addr()}
			}
		}
		return config.IP{}
	}
	for _, name := range sortedNames(cfg.Pools) {
		pool := cfg.Pools[name]
		if pool == nil || pool.Monitor == "" {
			continue
		}
		mon, ok := cfg.Monitors[pool.Monitor]
		if !ok {
			return nil, nil, fmt.Errorf("pool %s: unknown monitor %q", name, pool.Monitor)
		}
		if mon.CABundle != "" {
			if err := health.CheckCABundle(mon.CABundle); err != nil {
				return nil, nil, cfg.FieldError("monitors."+pool.Monitor+".ca_bundle", "%v", err)
			}
		}
		if mon.Type == config.MonitorScript && len(mon.Command) > 0 {
			// Validation reads no files: the program is checked here,
			// where it is used.
			if err := health.CheckScript(mon.Command[0]); err != nil {
				return nil, nil, cfg.FieldError("monitors."+pool.Monitor+".command[0]", "%v", err)
			}
		}
		for _, m := range pool.Members {
			a := m.Address.Addr
			port := uint16(m.Port)
			if port == 0 && mon.Port == 0 && mon.Type != config.MonitorICMP {
				p, ok := cfg.PoolCheckPort(name)
				if !ok {
					return nil, nil, fmt.Errorf("pool %s: member %s: no port to check", name, a)
				}
				port = p
			}
			monName := pool.Monitor
			if !mon.Source.IsValid() {
				// One variant per family, with that family's self IP.
				mm := mon
				mm.Source = selfIP(a.Is6())
				if a.Is6() {
					monName += "~ipv6"
				}
				mons[monName] = mm
			} else {
				mons[monName] = mon
			}
			members = append(members, health.Member{
				ID:      m.Ref(name).String(),
				Target:  health.Target{Addr: a, Port: port},
				Monitor: monName,
			})
		}
	}
	return mons, members, nil
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// healthOf is the members' health as the engine reads it: monitored
// members serve only when their checks say up (the engine treats members of
// pools without a monitor as up).
func (c *Controller) healthOf() engine.Health {
	if c.h == nil {
		return nil
	}
	return func(r config.MemberRef) (engine.Verdict, engine.DynamicWeight) {
		st, ok := c.h.State(r.String())
		dw := engine.NoWeight
		if w, set := c.h.Weight(r.String()); set {
			dw = engine.DynamicWeight(w)
		}
		return verdict(ok, st), dw
	}
}

// Running returns the running config and overrides (nil before the first
// apply).
func (c *Controller) Running() (*config.Config, engine.Overrides) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg, c.ov
}

// Apply makes cfg under ov the running state and returns when the kernel
// holds it, or with the error that left the running state as it was. It
// runs to the end even when ctx is cancelled (a client gone mid-request
// cannot leave the kernel half-applied): only ctx's values are used. path
// names where cfg came from, for status and logs. While an adopted IPVS
// table is held (adopt.go) the IPVS part is computed but applied when the
// hold ends.
func (c *Controller) Apply(ctx context.Context, path string, cfg *config.Config, ov engine.Overrides) error {
	ctx = context.WithoutCancel(ctx)
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	err := c.applyLocked(ctx, path, cfg, ov)
	if err != nil {
		c.recordErr(err)
	}
	return err
}

// Plan checks that cfg could be applied under the running overrides:
// its monitors and members configure, and the kernel state it asks for
// computes. Nothing changes (the prepare step of a config offered to the
// HA peer).
func (c *Controller) Plan(cfg *config.Config) error {
	_, ov := c.Running()
	if _, _, err := HealthMembers(cfg); err != nil {
		return fmt.Errorf("health checks: %w", err)
	}
	if _, err := c.a.Desired(cfg, ov, c.healthOf()); err != nil {
		return err
	}
	return nil
}

// Desired computes the kernel state cfg asks for under ov, as an apply
// would, with every member counted as up (config diff: lbcore/cfgdiff).
// Nothing changes.
func (c *Controller) Desired(cfg *config.Config, ov engine.Overrides) (*engine.Desired, error) {
	return c.a.Desired(cfg, ov, nil)
}

// applyLocked: health members first (a bad monitor changes nothing), then
// the kernel; when the kernel apply fails the health checker goes back to
// the old members.
func (c *Controller) applyLocked(ctx context.Context, path string, cfg *config.Config, ov engine.Overrides) error {
	start := time.Now()
	old, _ := c.Running()
	if c.h != nil {
		mons, members, err := HealthMembers(cfg)
		if err == nil {
			err = c.h.Configure(mons, members)
		}
		if err != nil {
			return fmt.Errorf("health checks: %w (nothing changed)", err)
		}
	}
	now := c.Now()
	ramps := c.rampsForApply(old, cfg, ov, now)
	d, err := c.a.Desired(cfg, withRamps(ov, ramps.since, now), c.healthOf())
	held := false
	if err == nil && c.holdIPVS(cfg) {
		d.IPVS, held = nil, true // computed (so validated), not applied
	}
	if err == nil {
		var res stage.Result
		if res, err = c.a.Apply(ctx, d); err == nil {
			c.mu.Lock()
			c.cfg, c.ov, c.path, c.appliedAt = cfg, ov, path, time.Now()
			c.memberPool = memberPools(cfg)
			c.memberRef = memberRefs(cfg)
			c.setRampsLocked(ramps)
			ramping := len(c.rampSince) > 0
			c.mu.Unlock()
			c.logRampStarts(ramps.started)
			if ramping {
				c.wakeRamp()
			}
			plan := ipvsPlan(res)
			c.log.WithFields(logrus.Fields{"changes": len(plan.Ops), "draining": len(plan.Drains), "took": time.Since(start).Round(time.Microsecond)}).
				Infof("applied %s (%d virtual servers): %s", path, len(cfg.VirtualServers), res)
			if held {
				_, until := c.Adopting()
				c.log.Infof("IPVS table held as adopted until every monitored member has a fresh health result (at most until %s)", until.UTC().Format(time.RFC3339))
			}
			return nil
		}
	}
	if c.h != nil && old != nil {
		if mons, members, herr := HealthMembers(old); herr == nil {
			if herr := c.h.Configure(mons, members); herr != nil {
				c.log.WithError(herr).Error("health checks: cannot go back to the running config's members")
			}
		}
	}
	return err
}

// applyHealth re-applies what the pending health transitions change: the
// services of their pools when the IPVS stage can apply part of the table,
// else the whole IPVS side. While an adopted table is held it does nothing
// (the hold's own poll ends it). A failed apply leaves every pool pending.
func (c *Controller) applyHealth(ctx context.Context) error {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	if adopting, _ := c.Adopting(); adopting {
		return nil
	}
	pools, all := c.takePending()
	partial, ok := c.a.IPVS.(PartialIPVS)
	var err error
	if all || !ok {
		err = c.applyIPVSLocked(ctx)
	} else {
		err = c.applyPoolsLocked(ctx, partial, pools)
	}
	if err != nil {
		c.mu.Lock()
		c.pendingAll = true
		c.mu.Unlock()
	}
	return err
}

// applyPoolsLocked applies the IPVS services of pools (applyMu held).
func (c *Controller) applyPoolsLocked(ctx context.Context, partial PartialIPVS, pools map[string]bool) error {
	cfg, ov := c.Running()
	if cfg == nil || len(pools) == 0 {
		return nil
	}
	start := time.Now()
	st, err := engine.IPVSOfPools(cfg, c.engineOverrides(ov), c.healthOf(), pools)
	if err != nil {
		return fmt.Errorf("health apply: %w", err)
	}
	ch, err := partial.ApplyServices(ctx, st)
	if err != nil {
		return fmt.Errorf("health apply: %w", err)
	}
	c.noteHealthApply(ch, start, len(st.Services))
	return nil
}

// applyIPVSLocked applies the running config's IPVS side (applyMu held).
func (c *Controller) applyIPVSLocked(ctx context.Context) error {
	cfg, ov := c.Running()
	if cfg == nil {
		return nil
	}
	start := time.Now()
	st, err := engine.IPVS(cfg, c.engineOverrides(ov), c.healthOf())
	if err != nil {
		return fmt.Errorf("health apply: %w", err)
	}
	ch, err := c.a.IPVS.Apply(ctx, st)
	if err != nil {
		return fmt.Errorf("health apply: %w", err)
	}
	c.noteHealthApply(ch, start, len(st.Services))
	return nil
}

func (c *Controller) noteHealthApply(ch stage.Change, start time.Time, services int) {
	if ch.Summary == "" {
		return
	}
	c.mu.Lock()
	c.applies++
	c.mu.Unlock()
	c.log.WithFields(logrus.Fields{"changes": ch.Summary, "services": services, "took": time.Since(start).Round(time.Microsecond)}).
		Info("health: pool membership re-applied")
}

func (c *Controller) recordErr(err error) {
	c.mu.Lock()
	c.lastErr, c.lastErrAt = err.Error(), time.Now()
	c.mu.Unlock()
}

// Loader reads and validates the config (config.Load).
type Loader func(path string) (*config.Config, error)

// Run applies the config at path, then re-applies it on every value from
// reload (SIGHUP) and the IPVS side on health transitions, until ctx is
// done. A config that does not load or apply is logged and leaves the
// running state as it was. Run returns an error only when the first config
// cannot be loaded or applied. The health checker (if any) must be running.
func (c *Controller) Run(ctx context.Context, path string, load Loader, reload <-chan struct{}) error {
	first := true
	apply := func() error {
		cfg, err := load(path)
		if err != nil {
			c.recordErr(err)
			return err
		}
		running, ov := c.Running()
		if running == nil && first && c.Restore != nil {
			ov = c.Restore(cfg)
		}
		first = false
		return c.Apply(ctx, path, cfg, ov)
	}
	c.detectAdoption()
	if err := apply(); err != nil {
		return err
	}
	if c.Ready != nil {
		c.Ready()
	}
	var retry, adoptTick, rampTick <-chan time.Time
	var rampTicker *time.Ticker
	defer func() {
		if rampTicker != nil {
			rampTicker.Stop()
		}
	}()
	startRamps := func() {
		if rampTicker == nil && c.ramping() {
			rampTicker = time.NewTicker(c.RampStep)
			rampTick = rampTicker.C
		}
	}
	startRamps()
	if adopting, _ := c.Adopting(); adopting {
		t := time.NewTicker(c.AdoptPoll)
		defer t.Stop()
		adoptTick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-adoptTick:
			done, err := c.endAdoption(ctx)
			if done {
				adoptTick = nil
			}
			if err != nil {
				c.recordErr(err)
				c.log.WithError(err).Errorf("IPVS apply failed (kernel unchanged); retrying in %s", c.RetryAfter)
				retry = time.After(c.RetryAfter)
			}
		case <-reload:
			c.log.Info("reload requested")
			if err := apply(); err != nil {
				c.log.WithError(err).Error("reload rejected; running state unchanged")
			}
		case <-retry:
			retry = nil
			c.poke()
		case <-c.rampWake:
			startRamps()
		case <-rampTick:
			more, err := c.applyRamps(ctx)
			if err != nil {
				c.recordErr(err)
				c.log.WithError(err).Errorf("slow start apply failed (kernel unchanged); retrying in %s", c.RetryAfter)
				retry = time.After(c.RetryAfter)
			}
			if !more {
				rampTicker.Stop()
				rampTicker, rampTick = nil, nil
			}
		case <-c.kick:
			if !c.debounce(ctx) {
				return nil
			}
			if err := c.applyHealth(ctx); err != nil {
				c.recordErr(err)
				c.log.WithError(err).Errorf("health apply failed (kernel unchanged); retrying in %s", c.RetryAfter)
				retry = time.After(c.RetryAfter)
			}
		}
	}
}

// debounce collects the transitions of one window; false when ctx ended.
func (c *Controller) debounce(ctx context.Context) bool {
	window := time.NewTimer(c.Debounce)
	defer window.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-c.kick:
		case <-window.C:
			return true
		}
	}
}

// Status is a snapshot of what the LB daemon runs, for the management API
// and the console.
type Status struct {
	ConfigPath string    `json:"config_path"`
	AppliedAt  time.Time `json:"applied_at"`
	// LastError is the last rejected reload or failed apply ("" if none).
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Transitions uint64    `json:"health_transitions"`
	Applies     uint64    `json:"health_applies"`
	// Adopting: the IPVS table is held as a previous daemon left it until
	// every monitored member has a fresh result, at the latest AdoptUntil.
	Adopting   bool         `json:"adopting,omitempty"`
	AdoptUntil time.Time    `json:"adopt_until,omitzero"`
	Pools      []PoolStatus `json:"pools"`
}

// PoolStatus is one pool's health and what it serves.
type PoolStatus struct {
	Name        string `json:"name"`
	Monitor     string `json:"monitor,omitempty"`
	Serving     int    `json:"serving"` // members up with weight > 0
	QuorumMet   bool   `json:"quorum_met"`
	SorryActive bool   `json:"sorry_active"`
	// Panic: more than the pool's panic_threshold of its enabled members
	// fail their checks at once, so every enabled member serves regardless
	// (engine.PoolPolicy); Failed counts the enabled members checked down.
	Panic   bool           `json:"panic"`
	Failed  int            `json:"failed"`
	Members []MemberStatus `json:"members"`
}

// MemberStatus is one member's health. Members of pools without a monitor
// are always up and have no check fields.
type MemberStatus struct {
	Ref         config.MemberRef `json:"-"`
	Address     string           `json:"address"` // addr:port as configured
	Weight      int              `json:"weight"`  // configured weight
	State       health.State     `json:"state"`
	Serving     bool             `json:"serving"`            // in IPVS with weight > 0 (engine.PoolPolicy)
	Disabled    bool             `json:"disabled,omitempty"` // operator override: weight 0, draining
	Since       time.Time        `json:"since,omitzero"`
	Checks      uint64           `json:"checks"`
	Transitions uint64           `json:"transitions"`
	LastOK      bool             `json:"last_ok"`
	LastReason  string           `json:"last_reason,omitempty"`
	LastCheck   time.Time        `json:"last_check,omitzero"`
	LastLatency time.Duration    `json:"last_latency_ns"`
	// IPVSWeight is the weight the pool policy gives the member in IPVS
	// (while a member of its pool ramps, on the scale engine.RampScale).
	IPVSWeight int `json:"ipvs_weight"`
	// SlowStart is the member's ramp while it ramps (zero otherwise).
	SlowStart engine.Ramp `json:"slow_start,omitzero"`
}

// Status returns a snapshot of the running config's pools and members;
// what each member serves comes from the same pool policy as the IPVS
// destinations (engine.PoolPolicy).
func (c *Controller) Status() Status {
	c.mu.Lock()
	cfg, ov := c.cfg, c.ov
	st := Status{ConfigPath: c.path, AppliedAt: c.appliedAt, LastError: c.lastErr, LastErrorAt: c.lastErrAt,
		Transitions: c.transitions, Applies: c.applies, Adopting: c.adopting}
	if c.adopting {
		st.AdoptUntil = c.adoptUntil
	}
	c.mu.Unlock()
	if cfg == nil {
		return st
	}
	byID := map[string]health.MemberStatus{}
	if c.h != nil {
		for _, m := range c.h.Snapshot() {
			byID[m.ID] = m
		}
	}
	for _, name := range sortedNames(cfg.Pools) {
		if pool := cfg.Pools[name]; pool != nil {
			st.Pools = append(st.Pools, poolStatus(name, pool, c.engineOverrides(ov), byID))
		}
	}
	return st
}

func poolStatus(name string, pool *config.Pool, ov engine.Overrides, byID map[string]health.MemberStatus) PoolStatus {
	ps := PoolStatus{Name: name, Monitor: pool.Monitor}
	states := map[config.MemberRef]health.State{}
	weights := map[config.MemberRef]engine.DynamicWeight{}
	for i := range pool.Members {
		m := &pool.Members[i]
		r := m.Ref(name)
		ms := MemberStatus{Ref: r, Address: r.Endpoint().String(), Weight: m.MemberWeight(), State: health.StateUp, Disabled: ov.Disabled[r]}
		if pool.Monitor != "" {
			h, ok := byID[r.String()]
			ms.State = health.StateUnknown
			if ok {
				ms.State, ms.Since, ms.Checks, ms.Transitions = h.State, h.Since, h.Checks, h.Transitions
				ms.LastOK, ms.LastReason, ms.LastCheck, ms.LastLatency = h.LastOK, h.LastReason, h.LastCheck, h.LastLatency
				if h.Weighted {
					ms.Weight = h.Weight
				}
			}
		}
		states[r] = ms.State
		weights[r] = engine.NoWeight
		if h, ok := byID[r.String()]; ok && pool.Monitor != "" && h.Weighted {
			weights[r] = engine.DynamicWeight(h.Weight)
		}
		ps.Members = append(ps.Members, ms)
	}
	res := engine.PoolPolicy(pool, engine.PoolMembers(name, pool, ov, func(r config.MemberRef) (engine.Verdict, engine.DynamicWeight) {
		return verdict(true, states[r]), weights[r]
	}))
	ps.Serving, ps.QuorumMet, ps.SorryActive = res.Serving, res.QuorumMet, res.SorryActive
	ps.Panic, ps.Failed = res.Panic, res.Failed
	for i, d := range res.Members {
		ps.Members[i].Serving = d.In && d.Weight > 0
		ps.Members[i].IPVSWeight, ps.Members[i].SlowStart = d.Weight, d.Ramp
	}
	return ps
}

// StatusHandler serves Status as JSON (GET only), for lbd's local status
// socket.
func StatusHandler(c *Controller) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(c.Status())
	})
}

// verdict is a health state as the engine's pool policy reads it: only
// down counts toward the panic threshold, not a member unchecked yet.
func verdict(known bool, st health.State) engine.Verdict {
	switch {
	case known && st == health.StateUp:
		return engine.Up
	case known && st == health.StateDown:
		return engine.Down
	}
	return engine.Unchecked
}
