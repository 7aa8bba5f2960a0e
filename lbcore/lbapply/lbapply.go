// Package lbapply applies the load-balancing part of the config to the
// kernel as one step: the daemon's addresses (lbcore/kernel/addrs), the nftables
// table (marks, FullNAT SNAT, SNAT all-in-one), the input filter
// (lbcore/kernel/filter: default-deny per NIC group) and the IPVS table. Both desired states are built (and so
// checked) before anything is touched; if the IPVS apply fails it undoes
// itself and the nftables table and addresses are put back, so the kernel
// ends as it was. Controller runs that with health checks driving pool
// membership, for the LB daemon.
package lbapply

import (
	"context"
	"errors"
	"fmt"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/addrs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/filter"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nat"
	"github.com/sirupsen/logrus"
)

// IPVS is the IPVS side (an *ipvs.Reconciler).
type IPVS interface {
	Apply(*ipvs.State) (*ipvs.Applied, error)
}

// NAT is the nftables side (a *nat.Manager).
type NAT interface {
	Apply(*nat.Ruleset) error
	Rollback() error
}

// Addrs is the address side (an *addrs.Owner).
type Addrs interface {
	Apply(addrs.Plan) (addrs.Change, func() error, error)
}

// Applier applies configs.
type Applier struct {
	IPVS   IPVS
	NAT    NAT
	Addrs  Addrs  // nil: the daemon owns no addresses (tests)
	Filter Filter // nil: no input filter (tests)
	// ResolveIface turns the management NIC's MAC into its name for the
	// filter (nil: the config must name it).
	ResolveIface IfaceResolver
	Health       ipvs.Health // nil: every member is up
	Log          logrus.FieldLogger
}

// Apply makes the kernel match cfg (which must be validated). On error the
// kernel is as it was before the call, unless the error says the rollback
// failed too.
//
// Order: the daemon's addresses first (a new VIP or local address exists
// before traffic is balanced to or from it), then nftables, so marks and
// FullNAT SNAT are in place before IPVS sends a new VS's first connection
// to members; then the input filter (a new VS is admitted before IPVS
// serves it); then IPVS. (When a FullNAT VS is removed, new connections to
// it in the moment between the steps are balanced without SNAT and fail;
// existing ones keep their conntrack SNAT.)
func (a *Applier) Apply(cfg *config.Config) (*ipvs.Plan, error) {
	return a.apply(cfg, a.Health)
}

func (a *Applier) apply(cfg *config.Config, health ipvs.Health) (*ipvs.Plan, error) {
	desired, err := ipvs.Desired(cfg, health)
	if err != nil {
		return nil, fmt.Errorf("lb apply: %w", err)
	}
	rs, err := nat.FromConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("lb apply: %w", err)
	}
	var pol *filter.Policy
	if a.Filter != nil {
		if pol, err = FilterPolicy(cfg, a.ResolveIface); err != nil {
			return nil, fmt.Errorf("lb apply: input filter: %w", err)
		}
	}
	undoAddrs := func() error { return nil }
	if a.Addrs != nil {
		var err error
		if _, undoAddrs, err = a.Addrs.Apply(addrs.Desired(cfg)); err != nil {
			return nil, fmt.Errorf("lb apply: %w (nothing changed)", err)
		}
	}
	if err := a.NAT.Apply(rs); err != nil {
		err = fmt.Errorf("lb apply: %w", err)
		if uerr := undoAddrs(); uerr != nil {
			return nil, errors.Join(err, fmt.Errorf("lb apply: address undo failed: %w", uerr))
		}
		return nil, fmt.Errorf("%w (nothing changed)", err)
	}
	if pol != nil {
		if err := a.Filter.Apply(pol); err != nil {
			err = fmt.Errorf("lb apply: %w", err)
			var errs []error
			if rerr := a.NAT.Rollback(); rerr != nil {
				errs = append(errs, fmt.Errorf("lb apply: nftables rollback failed: %w", rerr))
			}
			if uerr := undoAddrs(); uerr != nil {
				errs = append(errs, fmt.Errorf("lb apply: address undo failed: %w", uerr))
			}
			if len(errs) > 0 {
				return nil, errors.Join(append([]error{err}, errs...)...)
			}
			return nil, fmt.Errorf("%w (nftables rolled back, addresses restored)", err)
		}
	}
	applied, err := a.IPVS.Apply(desired)
	if err != nil {
		err = fmt.Errorf("lb apply: %w", err)
		var errs []error
		if pol != nil {
			if rerr := a.Filter.Rollback(); rerr != nil {
				errs = append(errs, fmt.Errorf("lb apply: input filter rollback failed: %w", rerr))
			}
		}
		if rerr := a.NAT.Rollback(); rerr != nil {
			errs = append(errs, fmt.Errorf("lb apply: nftables rollback failed: %w", rerr))
		}
		if uerr := undoAddrs(); uerr != nil {
			errs = append(errs, fmt.Errorf("lb apply: address undo failed: %w", uerr))
		}
		if len(errs) > 0 {
			return nil, errors.Join(append([]error{err}, errs...)...)
		}
		return nil, fmt.Errorf("%w (nftables rolled back, addresses restored)", err)
	}
	return applied.Plan, nil
}

// ApplyHealth re-applies only the IPVS side of cfg (the config already
// running) with members' health from health: what a health transition
// changes. Nothing else depends on health.
func (a *Applier) ApplyHealth(cfg *config.Config, health ipvs.Health) (*ipvs.Plan, error) {
	desired, err := ipvs.Desired(cfg, health)
	if err != nil {
		return nil, fmt.Errorf("health apply: %w", err)
	}
	applied, err := a.IPVS.Apply(desired)
	if err != nil {
		return nil, fmt.Errorf("health apply: %w", err)
	}
	return applied.Plan, nil
}

// Loader reads and validates the config (config.Load).
type Loader func(path string) (*config.Config, error)

// Run applies the config at path, then re-reads and re-applies it on every
// value from reload (SIGHUP), until ctx is done, without health checks (see
// Controller for the daemon with them). A config that does not load or
// apply is logged and leaves the running state as it was. Run returns an
// error only when the first config cannot be loaded or applied.
func Run(ctx context.Context, path string, load Loader, a *Applier, reload <-chan struct{}) error {
	return NewController(a, nil, a.Log).Run(ctx, path, load, reload)
}
