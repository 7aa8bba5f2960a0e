// Package lbapply applies the load-balancing part of the config to the
// kernel as one step: lbcore/engine computes the desired state (addresses,
// the nftables table, the input filter, the IPVS table) before anything is
// touched, then the
// kernel back-ends run as stages (lbcore/kernel/stage) in one loop with one
// rollback path, so a failed apply leaves the kernel as it was. Controller
// runs that for the LB daemon: synchronous applies of configs and operator
// overrides, and health checks driving pool membership.
package lbapply

import (
	"context"
	"fmt"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/addrs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/filter"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nat"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/stage"
	"github.com/sirupsen/logrus"
)

// Applier holds the kernel back-ends, each a stage.
type Applier struct {
	Addrs  stage.Stage[addrs.Plan]     // an *addrs.Owner; nil: the daemon owns no addresses (tests)
	NAT    stage.Stage[*nat.Ruleset]   // a *nat.Manager
	Filter stage.Stage[*filter.Policy] // a *filter.Manager; nil: no input filter (tests)
	IPVS   stage.Stage[*ipvs.State]    // an *ipvs.Reconciler
	// ResolveIface turns the management NIC's MAC into its name for the
	// filter (nil: the config must name it).
	ResolveIface engine.IfaceResolver
	// Schedulers, if set, are the IPVS schedulers the running kernel has
	// (ipvs.Schedulers), named by Kernel: a config asking for another one is
	// refused with its field before anything changes.
	Schedulers map[string]bool
	Kernel     string
	Log        logrus.FieldLogger
}

// Desired computes everything the kernel must hold for cfg under ov with
// members' health h (the input filter only when there is a filter stage).
func (a *Applier) Desired(cfg *config.Config, ov engine.Overrides, h engine.Health) (*engine.Desired, error) {
	if a.Schedulers != nil {
		if err := engine.CheckSchedulers(cfg, a.Schedulers, a.Kernel); err != nil {
			return nil, err
		}
	}
	d, err := engine.Build(cfg, ov, h)
	if err != nil {
		return nil, err
	}
	if a.Filter != nil {
		if d.Filter, err = engine.Filter(cfg, a.ResolveIface); err != nil {
			return nil, fmt.Errorf("input filter: %w", err)
		}
	}
	return d, nil
}

// Apply makes the kernel match d; a nil d.IPVS leaves the IPVS table as it
// is (a restarted daemon adopting the table, see Controller). On error the kernel is as it was before
// the call, unless the error says an undo failed too.
//
// Order: the daemon's addresses first (a new VIP or local address exists
// before traffic is balanced to or from it), then nftables, so marks and
// FullNAT SNAT are in place before IPVS sends a new VS's first connection
// to members; then the input filter (a new VS is admitted before IPVS serves
// it); then IPVS. (When a FullNAT VS is removed, new connections to
// it in the moment between the steps are balanced without SNAT and fail;
// existing ones keep their conntrack SNAT.)
func (a *Applier) Apply(ctx context.Context, d *engine.Desired) (stage.Result, error) {
	var steps []stage.Step
	if a.Addrs != nil {
		steps = append(steps, stage.Bind("addresses", a.Addrs, d.Addrs))
	}
	steps = append(steps, stage.Bind("nftables", a.NAT, d.NAT))
	if a.Filter != nil && d.Filter != nil {
		steps = append(steps, stage.Bind("filter", a.Filter, d.Filter))
	}
	if d.IPVS != nil {
		steps = append(steps, stage.Bind("ipvs", a.IPVS, d.IPVS))
	}
	res, err := stage.Run(ctx, steps...)
	if err != nil {
		return nil, fmt.Errorf("lb apply: %w", err)
	}
	return res, nil
}

// ipvsPlan is the IPVS stage's plan in a result (nil when not there).
func ipvsPlan(res stage.Result) *ipvs.Plan {
	p, _ := res["ipvs"].Detail.(*ipvs.Plan)
	if p == nil {
		return &ipvs.Plan{}
	}
	return p
}
