// Package engine is the LB core's one translation layer: it turns the config,
// the operator's overrides and the members' health into the kernel's desired
// state (addresses, the nftables ruleset, the input filter policy, the IPVS
// table), and computes pool
// status with the same pool policy that chooses IPVS destinations. The kernel
// back-ends (lbcore/kernel/...) take only their own types; nothing else reads
// the config to program the kernel.
package engine

import (
	"fmt"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/addrs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/filter"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nat"
)

// Health reports what a pool member's checks say, and the weight they set
// (a script monitor with dynamic_weight; NoWeight otherwise). A nil Health
// treats every member as up at its configured weight.
type Health func(config.MemberRef) (Verdict, DynamicWeight)

// DynamicWeight is a weight a member's checks set, replacing its
// configured weight; NoWeight when they set none.
type DynamicWeight int

// NoWeight: the checks set no weight.
const NoWeight DynamicWeight = -1

// Verdict is a member's health: only Up serves; Down counts toward the
// pool's panic threshold, Unchecked (no result yet) does not.
type Verdict int8

const (
	Unchecked Verdict = iota
	Up
	Down
)

// UpIf is Up when up, else Down.
func UpIf(up bool) Verdict {
	if up {
		return Up
	}
	return Down
}

// Overrides are the run-time changes on top of the config. The operator's
// (Disabled): disabled members stay in IPVS at weight 0, so new connections
// go elsewhere and existing ones finish (they drain). They are a value
// handed to Desired, never edits of the config. SlowStart is not the
// operator's: the controller sets it on the copy it hands to the engine
// (With does not carry it; the saved overrides never hold it).
type Overrides struct {
	Disabled  map[config.MemberRef]bool
	SlowStart SlowStart
}

// With returns a copy of o with ref disabled or enabled.
func (o Overrides) With(ref config.MemberRef, disabled bool) Overrides {
	out := Overrides{Disabled: map[config.MemberRef]bool{}}
	for r := range o.Disabled {
		out.Disabled[r] = true
	}
	if disabled {
		out.Disabled[ref] = true
	} else {
		delete(out.Disabled, ref)
	}
	return out
}

// Desired is what the kernel must hold for one config.
type Desired struct {
	Addrs  addrs.Plan
	NAT    *nat.Ruleset
	Filter *filter.Policy // nil: not computed (see Filter)
	IPVS   *ipvs.State
}

// Build computes the whole desired state of cfg (validated) under ov with
// members' health from h.
func Build(cfg *config.Config, ov Overrides, h Health) (*Desired, error) {
	st, err := IPVS(cfg, ov, h)
	if err != nil {
		return nil, err
	}
	rs, err := NAT(cfg)
	if err != nil {
		return nil, err
	}
	return &Desired{Addrs: Addrs(cfg), NAT: rs, IPVS: st}, nil
}

func wrap(vs *config.VirtualServer, err error) error {
	return fmt.Errorf("virtual server %s: %w", vs.Name, err)
}
