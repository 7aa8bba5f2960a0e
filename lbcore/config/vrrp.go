package config

import "github.com/fulcrum-lb/fulcrum/lbcore/cfgerr"

// validateVRRP checks what the vrrp section says against the network section
// (virtual addresses on known groups, heartbeat on the failover bond).
// (Filled in by the VRRP work.)
func (c *Config) validateVRRP(errs *cfgerr.List) {}
