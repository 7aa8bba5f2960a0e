// Package config is the appliance's configuration schema: one versioned YAML
// document that drives the image build, the init/netsetup boot path and the
// daemons. Parse validates the whole document before anything acts on it, and
// every error names the field path and line.
//
// The package is a leaf: it parses every value once into a typed value
// (netip addresses and prefixes, port ranges, modes, durations) and imports
// no runtime package. Each section's schema and validation has its own file;
// Validate here composes them and adds the cross-section checks. Validation
// never reads files: checks of files named in the config (TLS, CA bundles)
// happen where they are used, reported with FieldError.
package config

import (
	"fmt"
	"regexp"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
)

// SchemaVersion is the config schema this build understands.
const SchemaVersion = 1

// Config is the whole appliance configuration.
type Config struct {
	Version  int     `yaml:"version"`
	Hostname string  `yaml:"hostname"`
	Kernel   Kernel  `yaml:"kernel"`
	Network  Network `yaml:"network"`
	LB       `yaml:",inline"`
	VRRP     VRRP     `yaml:"vrrp"`
	Monitors Monitors `yaml:"monitors"`
	Access   Access   `yaml:"management"`

	source []byte
	lines  map[string]int // field path → line in source
}

// Kernel holds what the image builder and init need about the kernel.
type Kernel struct {
	// Modules are loaded at boot (with their dependencies) in addition to the
	// appliance's own module set, and are added to the image.
	Modules []string `yaml:"modules"`
	// Cmdline is appended to the kernel command line in boot media.
	Cmdline string `yaml:"cmdline"`
}

// ApplyDefaults fills in every unset field that has a default.
func (c *Config) ApplyDefaults() {
	if c.Hostname == "" {
		c.Hostname = "fulcrum"
	}
	c.Network.applyDefaults()
	c.applyLBDefaults()
	c.VRRP.ApplyDefaults()
	c.Monitors.ApplyDefaults()
	c.Access.ApplyDefaults(c.Network.Management != nil)
}

var (
	hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
	moduleRE   = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
)

// Validate checks the whole config and returns a *cfgerr.List naming every
// problem, or nil.
func (c *Config) Validate() error {
	var errs cfgerr.List
	switch {
	case c.Version == 0:
		errs.Add("version", "missing; this build reads schema version %d", SchemaVersion)
	case c.Version != SchemaVersion:
		errs.Add("version", "schema version %d is not supported; this build reads version %d", c.Version, SchemaVersion)
	}
	if !hostnameRE.MatchString(c.Hostname) {
		errs.Add("hostname", "%q is not a valid host name (letters, digits and '-', at most 63)", c.Hostname)
	}
	for i, m := range c.Kernel.Modules {
		if !moduleRE.MatchString(m) {
			errs.Add(cfgerr.Index("kernel.modules", i), "%q is not a kernel module name", m)
		}
	}
	c.Kernel.validateCmdline(&errs)
	errs.Merge("network", c.Network.Validate())
	c.validateSubnets(&errs)
	c.validateNextHops(&errs)
	c.validateAddressRoles(&errs)
	errs.Merge("vrrp", c.VRRP.Validate())
	errs.Merge("monitors", c.Monitors.Validate())
	errs.Merge("management", c.Access.Validate(c.Network.Management != nil))
	c.validateLB(&errs)
	c.validateVRRP(&errs)
	return errs.Err()
}

// String gives a one-line summary for logs.
func (c *Config) String() string {
	return fmt.Sprintf("config v%d host=%s", c.Version, c.Hostname)
}
