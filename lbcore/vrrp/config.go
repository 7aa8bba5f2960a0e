// Package vrrp implements VRRP (RFC 5798 v3, RFC 3768 v2) for the appliance.
package vrrp

// Config is the vrrp section of the appliance config. (Filled in by the VRRP work.)
type Config struct{}

// ApplyDefaults fills in defaults.
func (c *Config) ApplyDefaults() {}

// Validate checks the section; paths are relative to "vrrp".
func (c *Config) Validate() error { return nil }
