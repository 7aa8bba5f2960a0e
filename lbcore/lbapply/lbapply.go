// Package lbapply applies the load-balancing part of the config to the
// kernel as one step: the nftables table (marks, FullNAT SNAT, SNAT
// all-in-one) and the IPVS table. Both desired states are built (and so
// checked) before anything is touched; if the IPVS apply fails it undoes
// itself and the nftables table is put back, so the kernel ends as it was.
package lbapply

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/nat"
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

// Applier applies configs.
type Applier struct {
	IPVS   IPVS
	NAT    NAT
	Health ipvs.Health // nil: every member is up
	Log    logrus.FieldLogger
}

// Apply makes the kernel match cfg (which must be validated). On error the
// kernel is as it was before the call, unless the error says the rollback
// failed too.
//
// Order: nftables first, so marks and FullNAT SNAT are in place before IPVS
// sends a new VS's first connection to members; then IPVS. (When a FullNAT
// VS is removed, new connections to it in the moment between the two steps
// are balanced without SNAT and fail; existing ones keep their conntrack
// SNAT.)
func (a *Applier) Apply(cfg *config.Config) (*ipvs.Plan, error) {
	desired, err := ipvs.Desired(cfg, a.Health)
	if err != nil {
		return nil, fmt.Errorf("lb apply: %w", err)
	}
	rs, err := nat.FromConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("lb apply: %w", err)
	}
	if err := a.NAT.Apply(rs); err != nil {
		return nil, fmt.Errorf("lb apply: %w (nothing changed)", err)
	}
	applied, err := a.IPVS.Apply(desired)
	if err != nil {
		if rerr := a.NAT.Rollback(); rerr != nil {
			return nil, errors.Join(fmt.Errorf("lb apply: %w", err), fmt.Errorf("lb apply: nftables rollback failed: %w", rerr))
		}
		return nil, fmt.Errorf("lb apply: %w (nftables rolled back)", err)
	}
	return applied.Plan, nil
}

// Loader reads and validates the config (config.Load).
type Loader func(path string) (*config.Config, error)

// Run applies the config at path, then re-reads and re-applies it on every
// value from reload (SIGHUP), until ctx is done. A config that does not load
// or apply is logged and leaves the running state as it was. Run returns an
// error only when the first config cannot be loaded or applied.
func Run(ctx context.Context, path string, load Loader, a *Applier, reload <-chan struct{}) error {
	apply := func() error {
		start := time.Now()
		cfg, err := load(path)
		if err != nil {
			return err
		}
		plan, err := a.Apply(cfg)
		if err != nil {
			return err
		}
		a.Log.WithFields(logrus.Fields{"changes": len(plan.Ops), "draining": len(plan.Drains), "took": time.Since(start).Round(time.Microsecond)}).
			Infof("applied %s (%d virtual servers)", path, len(cfg.VirtualServers))
		return nil
	}
	if err := apply(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
			a.Log.Info("reload requested")
			if err := apply(); err != nil {
				a.Log.WithError(err).Error("reload rejected; running state unchanged")
			}
		}
	}
}
