// Package vrrp implements VRRP (RFC 5798 v3, RFC 3768 v2) for the appliance:
// this package holds the vrrp section of the appliance config; the packet
// codec is in vrrp/packet, the protocol state machine in vrrp/fsm and the
// runtime on real sockets in vrrp/node.
package vrrp

import (
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
)

// Defaults. The default advert interval is chosen so that a dead master is
// detected and replaced within 1 s: master-down = 3 × 200 ms + skew
// (skew = (256-priority)/256 × 200 ms ≈ 122 ms at priority 100), ≈ 722 ms.
const (
	DefaultVersion        = 3
	DefaultPriority       = 100
	DefaultAdvertInterval = 20 // centiseconds
	DefaultGARPRepeat     = 5
	DefaultGARPInterval   = 100 * time.Millisecond
	DefaultGARPRefresh    = 60 * time.Second
	DefaultTrackWeight    = 50
	OwnerPriority         = 255
)

// Families of a VRRP instance's heartbeat (the advert's address family).
const (
	IPv4 = "ipv4"
	IPv6 = "ipv6"
)

// Track actions.
const (
	TrackFault     = "fault"
	TrackDecrement = "decrement"
)

// Groups whose bonds carry virtual addresses or can be tracked.
const (
	GroupInternal = "internal"
	GroupExternal = "external"
)

// Config is the vrrp section of the appliance config. An empty section (no
// instances) means the node runs standalone, without VRRP.
//
// Every instance carries the virtual addresses of both the Internal and the
// External group, IPv4 and IPv6 alike, so they always move together (one sync
// group per instance). The advert lists the addresses of the instance's
// heartbeat family; addresses of the other family move with them. Several
// instances (for example one per family) share the node-wide settings below
// and fault together when a tracked bond fails.
type Config struct {
	// Version is the VRRP version, 3 (RFC 5798, default) or 2 (RFC 3768,
	// IPv4 only, intervals in whole seconds; for keepalived interop).
	Version int `yaml:"version"`
	// Interface is the heartbeat interface. It must be the Failover bond, and
	// defaults to it.
	Interface string `yaml:"interface"`
	// Priority 1..254, or 255 for the address owner. Default 100.
	Priority int `yaml:"priority"`
	// AdvertInterval is the advertisement interval in centiseconds (1..4095;
	// for version 2 a multiple of 100). Default 20 (200 ms).
	AdvertInterval int `yaml:"advert_interval"`
	// Preempt: a higher-priority backup takes over from a lower-priority
	// master. Default on.
	Preempt *bool `yaml:"preempt"`
	// NoPreempt is the same as preempt: false.
	NoPreempt bool `yaml:"nopreempt"`
	// PreemptDelay holds preemption off for this long after the node starts
	// (or leaves FAULT), e.g. "30s".
	PreemptDelay time.Duration `yaml:"preempt_delay"`
	// UnicastPeers sends adverts to these peers instead of the multicast
	// group (224.0.0.18 / ff02::12).
	UnicastPeers []string `yaml:"unicast_peers"`
	// GARP controls gratuitous ARP / unsolicited neighbour advertisements.
	GARP GARP `yaml:"garp"`
	// Track lists the bonds whose loss (all links down) faults the node or
	// lowers its priority.
	Track []Track `yaml:"track"`
	// Instances are the virtual routers.
	Instances []Instance `yaml:"instances"`
	// Hardening: peers (see peers.go).
	Hardening `yaml:",inline"`
}

// GARP settings for announcing virtual addresses after takeover.
type GARP struct {
	// Repeat is how many announcements are sent on takeover (default 5).
	Repeat int `yaml:"repeat"`
	// Interval between the repeated announcements (default 100ms).
	Interval time.Duration `yaml:"interval"`
	// Refresh re-announces every address this often while master so switch
	// FDB entries never age out (default 60s; 0s turns it off).
	Refresh *time.Duration `yaml:"refresh"`
}

// Track is one tracked bond.
type Track struct {
	// Group is internal or external.
	Group string `yaml:"group"`
	// Action is fault (default) or decrement.
	Action string `yaml:"action"`
	// Weight is subtracted from the priority when the bond is down
	// (decrement only; default 50).
	Weight int `yaml:"weight"`
}

// Instance is one virtual router.
type Instance struct {
	// Name identifies the instance in logs and events; default "vrid<N>".
	Name string `yaml:"name"`
	// VRID is the virtual router id, 1..255, unique per family.
	VRID int `yaml:"vrid"`
	// Family of the heartbeat: ipv4 or ipv6. Default: ipv4 when the instance
	// has an IPv4 address, ipv6 otherwise.
	Family string `yaml:"family"`
	// Priority overrides the section's priority for this instance.
	Priority int `yaml:"priority"`
	// AdvertInterval overrides the section's advert interval (centiseconds).
	AdvertInterval int `yaml:"advert_interval"`
	// Internal and External are the floating addresses (VIPs, self IPs,
	// gateways) on those groups' bonds: "198.51.100.1/24" or a bare address
	// (added as /32 or /128).
	Internal []string `yaml:"internal"`
	External []string `yaml:"external"`
}

// Enabled reports whether VRRP runs at all.
func (c *Config) Enabled() bool { return len(c.Instances) > 0 }

// PreemptEnabled is the effective preempt setting.
func (c *Config) PreemptEnabled() bool {
	if c.NoPreempt {
		return false
	}
	return c.Preempt == nil || *c.Preempt
}

// RefreshInterval is the effective GARP refresh period (0 = off).
func (g *GARP) RefreshInterval() time.Duration {
	if g.Refresh == nil {
		return DefaultGARPRefresh
	}
	return *g.Refresh
}

// ApplyDefaults fills in defaults.
func (c *Config) ApplyDefaults() {
	if c.Version == 0 {
		c.Version = DefaultVersion
	}
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	if c.AdvertInterval == 0 {
		c.AdvertInterval = DefaultAdvertInterval
		if c.Version == 2 {
			c.AdvertInterval = 100
		}
	}
	c.applyHardeningDefaults()
	if c.GARP.Repeat == 0 {
		c.GARP.Repeat = DefaultGARPRepeat
	}
	if c.GARP.Interval == 0 {
		c.GARP.Interval = DefaultGARPInterval
	}
	for i := range c.Track {
		t := &c.Track[i]
		if t.Action == "" {
			t.Action = TrackFault
		}
		if t.Action == TrackDecrement && t.Weight == 0 {
			t.Weight = DefaultTrackWeight
		}
	}
	for i := range c.Instances {
		in := &c.Instances[i]
		if in.Name == "" {
			in.Name = fmt.Sprintf("vrid%d", in.VRID)
		}
		if in.Priority == 0 {
			in.Priority = c.Priority
		}
		if in.AdvertInterval == 0 {
			in.AdvertInterval = c.AdvertInterval
		}
		if in.Family == "" {
			in.Family = IPv6
			for _, a := range in.Addresses() {
				if a.Addr.Is4() {
					in.Family = IPv4
					break
				}
			}
		}
	}
}

// Address is one floating address and the group it lives on.
type Address struct {
	Group  string
	Prefix netip.Prefix
	Addr   netip.Addr // Prefix.Addr(), for convenience
}

// ParseAddress reads "a.b.c.d/nn", "a.b.c.d" (→ /32) or the IPv6 forms.
func ParseAddress(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Addresses lists the instance's valid floating addresses, internal first.
// Invalid entries are skipped (Validate reports them).
func (in *Instance) Addresses() []Address {
	var out []Address
	for _, g := range []struct {
		name  string
		addrs []string
	}{{GroupInternal, in.Internal}, {GroupExternal, in.External}} {
		for _, s := range g.addrs {
			p, err := ParseAddress(s)
			if err != nil {
				continue
			}
			out = append(out, Address{Group: g.name, Prefix: p, Addr: p.Addr()})
		}
	}
	return out
}

// HeartbeatAddrs lists the addresses carried in adverts (those of the
// instance's family), in configuration order.
func (in *Instance) HeartbeatAddrs() []netip.Addr {
	var out []netip.Addr
	for _, a := range in.Addresses() {
		if a.Addr.Is4() == (in.Family == IPv4) {
			out = append(out, a.Addr)
		}
	}
	return out
}

// AdvertDuration converts centiseconds to a duration.
func AdvertDuration(cs int) time.Duration { return time.Duration(cs) * 10 * time.Millisecond }

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,32}$`)

// Validate checks the section; paths are relative to "vrrp".
func (c *Config) Validate() error {
	var errs cfgerr.List
	if c.Version != 2 && c.Version != 3 {
		errs.Add("version", "VRRP version %d is not supported (2 or 3)", c.Version)
	}
	validPriority(&errs, "priority", c.Priority)
	validInterval(&errs, "advert_interval", c.Version, c.AdvertInterval)
	if c.NoPreempt && c.Preempt != nil && *c.Preempt {
		errs.Add("nopreempt", "contradicts preempt: true; set one of them")
	}
	if c.PreemptDelay < 0 || c.PreemptDelay > time.Hour {
		errs.Add("preempt_delay", "%s is out of range (0s..1h)", c.PreemptDelay)
	}
	if c.PreemptDelay > 0 && !c.PreemptEnabled() {
		errs.Add("preempt_delay", "has no effect without preemption (nopreempt is set)")
	}
	seenPeer := map[netip.Addr]bool{}
	for i, s := range c.UnicastPeers {
		p := cfgerr.Index("unicast_peers", i)
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			errs.Add(p, "%q is not an IP address", s)
		case a.Zone() != "":
			errs.Add(p, "%q: zones are not allowed", s)
		case !a.IsGlobalUnicast() && !a.IsLinkLocalUnicast() && !a.IsPrivate():
			errs.Add(p, "%s is not a unicast address", a)
		case seenPeer[a]:
			errs.Add(p, "%s is listed twice", a)
		}
		seenPeer[a] = true
	}
	c.validatePeers(&errs)
	if c.GARP.Repeat < 0 || c.GARP.Repeat > 100 {
		errs.Add("garp.repeat", "%d is out of range (1..100)", c.GARP.Repeat)
	}
	if c.GARP.Interval < 0 || c.GARP.Interval > 10*time.Second {
		errs.Add("garp.interval", "%s is out of range (1ms..10s)", c.GARP.Interval)
	}
	if r := c.GARP.RefreshInterval(); r != 0 && (r < time.Second || r > time.Hour) {
		errs.Add("garp.refresh", "%s is out of range (1s..1h, or 0s for off)", r)
	}
	seenTrack := map[string]bool{}
	for i, t := range c.Track {
		p := cfgerr.Index("track", i)
		if t.Group != GroupInternal && t.Group != GroupExternal {
			errs.Add(cfgerr.Join(p, "group"), "%q is not a trackable group (internal or external)", t.Group)
		} else if seenTrack[t.Group] {
			errs.Add(cfgerr.Join(p, "group"), "%s is tracked twice", t.Group)
		}
		seenTrack[t.Group] = true
		switch t.Action {
		case TrackFault:
			if t.Weight != 0 {
				errs.Add(cfgerr.Join(p, "weight"), "only applies to action decrement")
			}
		case TrackDecrement:
			if t.Weight < 1 || t.Weight > 254 {
				errs.Add(cfgerr.Join(p, "weight"), "%d is out of range (1..254)", t.Weight)
			}
		default:
			errs.Add(cfgerr.Join(p, "action"), "%q is not an action (fault or decrement)", t.Action)
		}
	}
	type vridKey struct {
		family string
		vrid   int
	}
	seenVRID := map[vridKey]string{}
	seenName := map[string]string{}
	seenAddr := map[netip.Addr]string{}
	for i := range c.Instances {
		in := &c.Instances[i]
		p := cfgerr.Index("instances", i)
		if !nameRE.MatchString(in.Name) {
			errs.Add(cfgerr.Join(p, "name"), "%q is not a valid name (letters, digits, '_', '.', '-', at most 32)", in.Name)
		} else if other, dup := seenName[in.Name]; dup {
			errs.Add(cfgerr.Join(p, "name"), "name %q is already used by %s", in.Name, other)
		}
		seenName[in.Name] = p
		if in.VRID < 1 || in.VRID > 255 {
			errs.Add(cfgerr.Join(p, "vrid"), "%d is out of range (1..255)", in.VRID)
		} else if other, dup := seenVRID[vridKey{in.Family, in.VRID}]; dup {
			errs.Add(cfgerr.Join(p, "vrid"), "VRID %d (%s) is already used by %s", in.VRID, in.Family, other)
		}
		seenVRID[vridKey{in.Family, in.VRID}] = p
		switch in.Family {
		case IPv4:
		case IPv6:
			if c.Version == 2 {
				errs.Add(cfgerr.Join(p, "family"), "VRRP version 2 carries IPv4 only; use version 3 for an IPv6 heartbeat")
			}
		default:
			errs.Add(cfgerr.Join(p, "family"), "%q is not a family (ipv4 or ipv6)", in.Family)
		}
		validPriority(&errs, cfgerr.Join(p, "priority"), in.Priority)
		validInterval(&errs, cfgerr.Join(p, "advert_interval"), c.Version, in.AdvertInterval)
		for _, g := range []struct {
			name  string
			addrs []string
		}{{GroupInternal, in.Internal}, {GroupExternal, in.External}} {
			for j, s := range g.addrs {
				ap := cfgerr.Index(cfgerr.Join(p, g.name), j)
				pfx, err := ParseAddress(s)
				if err != nil {
					errs.Add(ap, "%v", err)
					continue
				}
				a := pfx.Addr()
				if !a.IsGlobalUnicast() && !a.IsPrivate() || a.IsLinkLocalUnicast() {
					errs.Add(ap, "%s cannot float (not a global unicast address)", a)
					continue
				}
				if other, dup := seenAddr[a]; dup {
					errs.Add(ap, "%s is already a virtual address of %s", a, other)
				}
				seenAddr[a] = ap
			}
		}
		if len(in.Internal)+len(in.External) == 0 {
			errs.Add(p, "has no virtual addresses (internal, external)")
		} else if in.Family == IPv4 || in.Family == IPv6 {
			n := len(in.HeartbeatAddrs())
			if n == 0 {
				errs.Add(cfgerr.Join(p, "family"), "an %s heartbeat needs at least one %s virtual address", in.Family, in.Family)
			}
			if n > 255 {
				errs.Add(p, "%d %s addresses; an advert carries at most 255", n, in.Family)
			}
		}
	}
	return errs.Err()
}

func validPriority(errs *cfgerr.List, path string, p int) {
	if p < 1 || p > OwnerPriority {
		errs.Add(path, "%d is out of range (1..254, or 255 for the address owner)", p)
	}
}

func validInterval(errs *cfgerr.List, path string, version, cs int) {
	switch {
	case version == 2 && (cs < 100 || cs > 25500 || cs%100 != 0):
		errs.Add(path, "%d cs: VRRPv2 intervals are whole seconds (100..25500 cs in steps of 100)", cs)
	case version != 2 && (cs < 1 || cs > 4095):
		errs.Add(path, "%d cs is out of range (1..4095 centiseconds)", cs)
	}
}

// Interfaces names the bonds the VRRP runtime works with (from the network
// section: the heartbeat is the Failover bond).
type Interfaces struct {
	Heartbeat string
	Internal  string
	External  string
}

// ForGroup returns the bond name of an address group.
func (i Interfaces) ForGroup(group string) string {
	switch group {
	case GroupInternal:
		return i.Internal
	case GroupExternal:
		return i.External
	}
	return ""
}
