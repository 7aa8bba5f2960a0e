package lbapply

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/health"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/sirupsen/logrus"
)

// HealthChecker is the health side (a *health.Scheduler, running).
type HealthChecker interface {
	Configure(config.Monitors, []health.Member) error
	State(id string) (health.State, bool)
	Snapshot() []health.MemberStatus
}

// Controller is the LB daemon's core: it applies configs (Applier), keeps
// the health checker's members equal to the pools of the running config,
// and re-applies the IPVS side when members change state.
//
// Health transitions are debounced: the first one starts a short window
// (Debounce) in which further ones are collected, then one IPVS apply
// covers them all, so a flapping or mass failure costs one apply per
// window, not one per member. Every apply is all-or-nothing (the IPVS
// reconcile rolls back a failed plan); a failed health apply is retried
// after RetryAfter.
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
	// tells init's supervisor it is ready: vrrpd starts After it).
	Ready func()

	kick chan struct{}

	mu          sync.Mutex
	cfg         *config.Config // running config
	path        string
	appliedAt   time.Time
	lastErr     string
	lastErrAt   time.Time
	transitions uint64 // health transitions seen
	applies     uint64 // health-triggered applies that changed the kernel
}

// NewController returns a controller over a and h (h may be nil).
func NewController(a *Applier, h HealthChecker, log logrus.FieldLogger) *Controller {
	return &Controller{a: a, h: h, log: log, Debounce: 100 * time.Millisecond, RetryAfter: 2 * time.Second, kick: make(chan struct{}, 1)}
}

// SetHealth sets the health checker (before Run; for wiring a scheduler
// whose OnTransition is the controller's).
func (c *Controller) SetHealth(h HealthChecker) { c.h = h }

// OnTransition is the health scheduler's transition hook: it asks for a
// re-apply. It never blocks.
func (c *Controller) OnTransition(ev health.Event) {
	c.mu.Lock()
	c.transitions++
	c.mu.Unlock()
	c.poke()
}

func (c *Controller) poke() {
	select {
	case c.kick <- struct{}{}:
	default: // an apply is already pending
	}
}

// MemberID is the health checker's ID of a pool member: "pool/addr:port"
// with the member's configured port (0 when it takes the VS port).
func MemberID(pool string, m netip.AddrPort) string { return pool + "/" + m.String() }

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
		for _, m := range pool.Members {
			a := m.Address.Addr
			port := uint16(m.Port)
			if port == 0 && mon.Port == 0 {
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
				ID:      MemberID(name, netip.AddrPortFrom(a, uint16(m.Port))),
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

// healthOf is the ipvs.Health of cfg's pools: members of pools without a
// monitor are up; monitored ones serve only when their checks say up.
func (c *Controller) healthOf(cfg *config.Config) ipvs.Health {
	if c.h == nil {
		return c.a.Health
	}
	return func(pool string, m netip.AddrPort) bool {
		p := cfg.Pools[pool]
		if p == nil || p.Monitor == "" {
			return true
		}
		st, ok := c.h.State(MemberID(pool, m))
		return ok && st == health.StateUp
	}
}

// applyConfig makes cfg the running config: health members first (a bad
// monitor changes nothing), then the kernel; when the kernel apply fails
// the health checker goes back to the old members.
func (c *Controller) applyConfig(path string, cfg *config.Config) error {
	start := time.Now()
	c.mu.Lock()
	old := c.cfg
	c.mu.Unlock()
	if c.h != nil {
		mons, members, err := HealthMembers(cfg)
		if err == nil {
			err = c.h.Configure(mons, members)
		}
		if err != nil {
			return fmt.Errorf("health checks: %w (nothing changed)", err)
		}
	}
	plan, err := c.a.apply(cfg, c.healthOf(cfg))
	if err != nil {
		if c.h != nil && old != nil {
			if mons, members, herr := HealthMembers(old); herr == nil {
				if herr := c.h.Configure(mons, members); herr != nil {
					c.log.WithError(herr).Error("health checks: cannot go back to the running config's members")
				}
			}
		}
		return err
	}
	c.mu.Lock()
	c.cfg, c.path, c.appliedAt = cfg, path, time.Now()
	c.mu.Unlock()
	c.log.WithFields(logrus.Fields{"changes": len(plan.Ops), "draining": len(plan.Drains), "took": time.Since(start).Round(time.Microsecond)}).
		Infof("applied %s (%d virtual servers)", path, len(cfg.VirtualServers))
	return nil
}

// applyHealth re-applies the running config's IPVS side with the members'
// current health.
func (c *Controller) applyHealth() error {
	c.mu.Lock()
	cfg := c.cfg
	c.mu.Unlock()
	if cfg == nil {
		return nil
	}
	start := time.Now()
	plan, err := c.a.ApplyHealth(cfg, c.healthOf(cfg))
	if err != nil {
		return err
	}
	if !plan.Empty() {
		c.mu.Lock()
		c.applies++
		c.mu.Unlock()
		c.log.WithFields(logrus.Fields{"changes": len(plan.Ops), "took": time.Since(start).Round(time.Microsecond)}).
			Info("health: pool membership re-applied")
	}
	return nil
}

func (c *Controller) recordErr(err error) {
	c.mu.Lock()
	c.lastErr, c.lastErrAt = err.Error(), time.Now()
	c.mu.Unlock()
}

// Run applies the config at path, then re-applies it on every value from
// reload (SIGHUP) and the IPVS side on health transitions, until ctx is
// done. A config that does not load or apply is logged and leaves the
// running state as it was. Run returns an error only when the first config
// cannot be loaded or applied. The health checker (if any) must be running.
func (c *Controller) Run(ctx context.Context, path string, load Loader, reload <-chan struct{}) error {
	apply := func() error {
		cfg, err := load(path)
		if err != nil {
			return err
		}
		return c.applyConfig(path, cfg)
	}
	if err := apply(); err != nil {
		c.recordErr(err)
		return err
	}
	if c.Ready != nil {
		c.Ready()
	}
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
			c.log.Info("reload requested")
			if err := apply(); err != nil {
				c.recordErr(err)
				c.log.WithError(err).Error("reload rejected; running state unchanged")
			}
		case <-retry:
			retry = nil
			c.poke()
		case <-c.kick:
			// Collect the transitions of one debounce window.
			window := time.NewTimer(c.Debounce)
		collect:
			for {
				select {
				case <-ctx.Done():
					window.Stop()
					return nil
				case <-c.kick:
				case <-window.C:
					break collect
				}
			}
			if err := c.applyHealth(); err != nil {
				c.recordErr(err)
				c.log.WithError(err).Errorf("health apply failed (kernel unchanged); retrying in %s", c.RetryAfter)
				retry = time.After(c.RetryAfter)
			}
		}
	}
}

// Status is a snapshot of what the LB daemon runs, for the management API
// and the console.
type Status struct {
	ConfigPath string    `json:"config_path"`
	AppliedAt  time.Time `json:"applied_at"`
	// LastError is the last rejected reload or failed apply ("" if none).
	LastError   string       `json:"last_error,omitempty"`
	LastErrorAt time.Time    `json:"last_error_at,omitzero"`
	Transitions uint64       `json:"health_transitions"`
	Applies     uint64       `json:"health_applies"`
	Pools       []PoolStatus `json:"pools"`
}

// PoolStatus is one pool's health and what it serves.
type PoolStatus struct {
	Name        string         `json:"name"`
	Monitor     string         `json:"monitor,omitempty"`
	Serving     int            `json:"serving"` // members up with weight > 0
	QuorumMet   bool           `json:"quorum_met"`
	SorryActive bool           `json:"sorry_active"`
	Members     []MemberStatus `json:"members"`
}

// MemberStatus is one member's health. Members of pools without a monitor
// are always up and have no check fields.
type MemberStatus struct {
	Address     string        `json:"address"` // addr:port as configured
	Weight      int           `json:"weight"`  // configured weight
	State       health.State  `json:"state"`
	Serving     bool          `json:"serving"` // in IPVS with weight > 0 (as the pool effect computes it)
	Since       time.Time     `json:"since,omitzero"`
	Checks      uint64        `json:"checks"`
	Transitions uint64        `json:"transitions"`
	LastOK      bool          `json:"last_ok"`
	LastReason  string        `json:"last_reason,omitempty"`
	LastCheck   time.Time     `json:"last_check,omitzero"`
	LastLatency time.Duration `json:"last_latency_ns"`
}

// Status returns a snapshot of the running config's pools and members.
func (c *Controller) Status() Status {
	c.mu.Lock()
	cfg := c.cfg
	st := Status{ConfigPath: c.path, AppliedAt: c.appliedAt, LastError: c.lastErr, LastErrorAt: c.lastErrAt,
		Transitions: c.transitions, Applies: c.applies}
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
		pool := cfg.Pools[name]
		if pool == nil {
			continue
		}
		ps := PoolStatus{Name: name, Monitor: pool.Monitor}
		var pms []health.PoolMember
		for _, m := range pool.Members {
			a := m.Address.Addr
			id := MemberID(name, netip.AddrPortFrom(a, uint16(m.Port)))
			ms := MemberStatus{Address: netip.AddrPortFrom(a, uint16(m.Port)).String(), Weight: m.MemberWeight(), State: health.StateUp}
			if pool.Monitor != "" {
				h, ok := byID[id]
				ms.State = health.StateUnknown
				if ok {
					ms.State, ms.Since, ms.Checks, ms.Transitions = h.State, h.Since, h.Checks, h.Transitions
					ms.LastOK, ms.LastReason, ms.LastCheck, ms.LastLatency = h.LastOK, h.LastReason, h.LastCheck, h.LastLatency
				}
			}
			ps.Members = append(ps.Members, ms)
			pms = append(pms, health.PoolMember{ID: id, Weight: ms.Weight, State: ms.State})
		}
		eff := health.PoolEffect(pms, health.PoolPolicy{Inhibit: pool.Inhibit, Quorum: pool.Quorum, SorryServer: sorryID(pool.SorryServer)})
		ps.Serving, ps.QuorumMet, ps.SorryActive = eff.Serving, eff.QuorumMet, eff.SorryActive
		serving := map[string]bool{}
		for _, d := range eff.Destinations {
			serving[d.ID] = d.Weight > 0
		}
		for i := range ps.Members {
			ps.Members[i].Serving = serving[pms[i].ID]
		}
		st.Pools = append(st.Pools, ps)
	}
	return st
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

func sorryID(s *config.AddrPort) string {
	if s == nil {
		return ""
	}
	return s.String()
}
