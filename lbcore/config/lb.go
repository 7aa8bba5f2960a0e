package config

import "github.com/fulcrum-lb/fulcrum/lbcore/cfgerr"

// LB is the load-balancing part of the config: virtual servers, pools, local
// address pools and SNAT. It is inlined at the top level of the document.
// (Filled in by the IPVS work.)
type LB struct{}

func (c *Config) applyLBDefaults() {}

// validateLB checks the load-balancing sections and their references to the
// network and monitor sections.
func (c *Config) validateLB(errs *cfgerr.List) {}
