package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
	"go.yaml.in/yaml/v3"
)

// VRRP defaults. The default advert interval is chosen so that a dead
// master is detected and replaced within 1 s: master-down = 3 × 200 ms +
// skew (skew = (256-priority)/256 × 200 ms ≈ 122 ms at priority 100), ≈ 722 ms.
const (
	DefaultVRRPVersion    = 3
	DefaultVRRPPriority   = 100
	DefaultAdvertInterval = 20 // centiseconds
	DefaultGARPRepeat     = 5
	DefaultGARPInterval   = 100 * time.Millisecond
	DefaultGARPRefresh    = 60 * time.Second
	DefaultTrackWeight    = 50
	OwnerPriority         = 255
)

// Family is the address family of a VRRP instance's heartbeat.
type Family string

// Families of a VRRP heartbeat.
const (
	IPv4 Family = "ipv4"
	IPv6 Family = "ipv6"
)

// UnmarshalYAML accepts ipv4 or ipv6.
func (f *Family) UnmarshalYAML(n *yaml.Node) error {
	return enum(n, f, "family", []Family{IPv4, IPv6})
}

// TrackAction is what a tracked bond's loss does.
type TrackAction string

// Track actions.
const (
	TrackFault     TrackAction = "fault"
	TrackDecrement TrackAction = "decrement"
)

// UnmarshalYAML accepts fault or decrement.
func (a *TrackAction) UnmarshalYAML(n *yaml.Node) error {
	return enum(n, a, "track action", []TrackAction{TrackFault, TrackDecrement})
}

// VRRP is the vrrp section of the appliance config. An empty section (no
// instances) means the node runs standalone, without VRRP.
//
// Every instance carries the virtual addresses of both the Internal and the
// External group, IPv4 and IPv6 alike, so they always move together (one sync
// group per instance). The advert lists the addresses of the instance's
// heartbeat family; addresses of the other family move with them. Several
// instances (for example one per family) share the node-wide settings below
// and fault together when a tracked bond fails.
type VRRP struct {
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
	PreemptDelay Duration `yaml:"preempt_delay"`
	// UnicastPeers sends adverts to these peers instead of the multicast
	// group (224.0.0.18 / ff02::12).
	UnicastPeers []IP `yaml:"unicast_peers"`
	// GARP controls gratuitous ARP / unsolicited neighbour advertisements.
	GARP GARP `yaml:"garp"`
	// Track lists the bonds whose loss (all links down) faults the node or
	// lowers its priority.
	Track []VRRPTrack `yaml:"track"`
	// Instances are the virtual routers.
	Instances []VRRPInstance `yaml:"instances"`
	// Hardening: peers (see vrrp_hardening.go).
	Hardening `yaml:",inline"`
}

// GARP settings for announcing virtual addresses after takeover.
type GARP struct {
	// Repeat is how many announcements are sent on takeover (default 5).
	Repeat int `yaml:"repeat"`
	// Interval between the repeated announcements (default 100ms).
	Interval Duration `yaml:"interval"`
	// Refresh re-announces every address this often while master so switch
	// FDB entries never age out (default 60s; 0s turns it off).
	Refresh *Duration `yaml:"refresh"`
}

// VRRPTrack is one tracked bond.
type VRRPTrack struct {
	// Group is internal or external.
	Group Group `yaml:"group"`
	// Action is fault (default) or decrement.
	Action TrackAction `yaml:"action"`
	// Weight is subtracted from the priority when the bond is down
	// (decrement only; default 50).
	Weight int `yaml:"weight"`
}

// VRRPInstance is one virtual router.
type VRRPInstance struct {
	// Name identifies the instance in logs and events; default "vrid<N>".
	Name string `yaml:"name"`
	// VRID is the virtual router id, 1..255, unique per family.
	VRID int `yaml:"vrid"`
	// Family of the heartbeat: ipv4 or ipv6. Default: ipv4 when the instance
	// has an IPv4 address, ipv6 otherwise.
	Family Family `yaml:"family"`
	// Priority overrides the section's priority for this instance.
	Priority int `yaml:"priority"`
	// AdvertInterval overrides the section's advert interval (centiseconds).
	AdvertInterval int `yaml:"advert_interval"`
	// Internal and External are the floating addresses (VIPs, self IPs,
	// gateways) on those groups' bonds: "198.51.100.1/24" or a bare address
	// (added as /32 or /128).
	Internal []HostPrefix `yaml:"internal"`
	External []HostPrefix `yaml:"external"`
}

// Enabled reports whether VRRP runs at all.
func (c *VRRP) Enabled() bool { return len(c.Instances) > 0 }

// PreemptEnabled is the effective preempt setting.
func (c *VRRP) PreemptEnabled() bool {
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
	return g.Refresh.D()
}

// ApplyDefaults fills in defaults.
func (c *VRRP) ApplyDefaults() {
	if c.Version == 0 {
		c.Version = DefaultVRRPVersion
	}
	if c.Priority == 0 {
		c.Priority = DefaultVRRPPriority
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
		c.GARP.Interval = Duration(DefaultGARPInterval)
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

// VRRPAddress is one floating address and the group it lives on.
type VRRPAddress struct {
	Group  Group
	Prefix netip.Prefix
	Addr   netip.Addr // Prefix.Addr(), for convenience
}

// groupAddrs are an instance's floating addresses on one group.
type groupAddrs struct {
	group Group
	addrs []HostPrefix
}

func (in *VRRPInstance) groups() []groupAddrs {
	return []groupAddrs{{Internal, in.Internal}, {External, in.External}}
}

// Addresses lists the instance's floating addresses, internal first.
func (in *VRRPInstance) Addresses() []VRRPAddress {
	var out []VRRPAddress
	for _, g := range in.groups() {
		for _, p := range g.addrs {
			out = append(out, VRRPAddress{Group: g.group, Prefix: p.Prefix, Addr: p.Addr()})
		}
	}
	return out
}

// HeartbeatAddrs lists the addresses carried in adverts (those of the
// instance's family), in configuration order.
func (in *VRRPInstance) HeartbeatAddrs() []netip.Addr {
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

var vrrpNameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,32}$`)

// Validate checks the section; paths are relative to "vrrp".
func (c *VRRP) Validate() error {
	var errs cfgerr.List
	c.validateNode(&errs)
	c.validateTrack(&errs)
	seen := vrrpSeen{vrid: map[vridKey]string{}, name: map[string]string{}, addr: map[netip.Addr]string{}}
	for i := range c.Instances {
		c.validateInstance(&errs, cfgerr.Index("instances", i), &c.Instances[i], &seen)
	}
	return errs.Err()
}

// validateNode checks the node-wide settings.
func (c *VRRP) validateNode(errs *cfgerr.List) {
	if c.Version != 2 && c.Version != 3 {
		errs.Add("version", "VRRP version %d is not supported (2 or 3)", c.Version)
	}
	validPriority(errs, "priority", c.Priority)
	validInterval(errs, "advert_interval", c.Version, c.AdvertInterval)
	if c.NoPreempt && c.Preempt != nil && *c.Preempt {
		errs.Add("nopreempt", "contradicts preempt: true; set one of them")
	}
	if d := c.PreemptDelay.D(); d < 0 || d > time.Hour {
		errs.Add("preempt_delay", "%s is out of range (0s..1h)", c.PreemptDelay)
	}
	if c.PreemptDelay > 0 && !c.PreemptEnabled() {
		errs.Add("preempt_delay", "has no effect without preemption (nopreempt is set)")
	}
	seenPeer := map[netip.Addr]bool{}
	for i, a := range c.UnicastPeers {
		p := cfgerr.Index("unicast_peers", i)
		switch {
		case !a.IsGlobalUnicast() && !a.IsLinkLocalUnicast() && !a.IsPrivate():
			errs.Add(p, "%s is not a unicast address", a)
		case seenPeer[a.Addr]:
			errs.Add(p, "%s is listed twice", a)
		}
		seenPeer[a.Addr] = true
	}
	c.validatePeers(errs)
	if c.GARP.Repeat < 0 || c.GARP.Repeat > 100 {
		errs.Add("garp.repeat", "%d is out of range (1..100)", c.GARP.Repeat)
	}
	if d := c.GARP.Interval.D(); d < 0 || d > 10*time.Second {
		errs.Add("garp.interval", "%s is out of range (1ms..10s)", c.GARP.Interval)
	}
	if r := c.GARP.RefreshInterval(); r != 0 && (r < time.Second || r > time.Hour) {
		errs.Add("garp.refresh", "%s is out of range (1s..1h, or 0s for off)", r)
	}
}

func (c *VRRP) validateTrack(errs *cfgerr.List) {
	seenTrack := map[Group]bool{}
	for i, t := range c.Track {
		p := cfgerr.Index("track", i)
		if t.Group != Internal && t.Group != External {
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
		}
	}
}

type vridKey struct {
	family Family
	vrid   int
}

// vrrpSeen is what earlier instances claimed.
type vrrpSeen struct {
	vrid map[vridKey]string
	name map[string]string
	addr map[netip.Addr]string
}

func (c *VRRP) validateInstance(errs *cfgerr.List, p string, in *VRRPInstance, seen *vrrpSeen) {
	if !vrrpNameRE.MatchString(in.Name) {
		errs.Add(cfgerr.Join(p, "name"), "%q is not a valid name (letters, digits, '_', '.', '-', at most 32)", in.Name)
	} else if other, dup := seen.name[in.Name]; dup {
		errs.Add(cfgerr.Join(p, "name"), "name %q is already used by %s", in.Name, other)
	}
	seen.name[in.Name] = p
	if in.VRID < 1 || in.VRID > 255 {
		errs.Add(cfgerr.Join(p, "vrid"), "%d is out of range (1..255)", in.VRID)
	} else if other, dup := seen.vrid[vridKey{in.Family, in.VRID}]; dup {
		errs.Add(cfgerr.Join(p, "vrid"), "VRID %d (%s) is already used by %s", in.VRID, in.Family, other)
	}
	seen.vrid[vridKey{in.Family, in.VRID}] = p
	if in.Family == IPv6 && c.Version == 2 {
		errs.Add(cfgerr.Join(p, "family"), "VRRP version 2 carries IPv4 only; use version 3 for an IPv6 heartbeat")
	}
	validPriority(errs, cfgerr.Join(p, "priority"), in.Priority)
	validInterval(errs, cfgerr.Join(p, "advert_interval"), c.Version, in.AdvertInterval)
	for _, g := range in.groups() {
		for j, pfx := range g.addrs {
			ap := cfgerr.Index(cfgerr.Join(p, string(g.group)), j)
			a := pfx.Addr()
			if !a.IsGlobalUnicast() && !a.IsPrivate() || a.IsLinkLocalUnicast() {
				errs.Add(ap, "%s cannot float (not a global unicast address)", a)
				continue
			}
			if other, dup := seen.addr[a]; dup {
				errs.Add(ap, "%s is already a virtual address of %s", a, other)
			}
			seen.addr[a] = ap
		}
	}
	if len(in.Internal)+len(in.External) == 0 {
		errs.Add(p, "has no virtual addresses (internal, external)")
		return
	}
	n := len(in.HeartbeatAddrs())
	if n == 0 {
		errs.Add(cfgerr.Join(p, "family"), "an %s heartbeat needs at least one %s virtual address", in.Family, in.Family)
	}
	if n > 255 {
		errs.Add(p, "%d %s addresses; an advert carries at most 255", n, in.Family)
	}
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

// VRRPBonds names the bonds the VRRP runtime works with (from the network
// section: the heartbeat is the Failover bond).
type VRRPBonds struct {
	Heartbeat string
	Internal  string
	External  string
}

// ForGroup returns the bond name of an address group.
func (b VRRPBonds) ForGroup(g Group) string {
	switch g {
	case Internal:
		return b.Internal
	case External:
		return b.External
	}
	return ""
}

// VRRPInterfaces names the bonds the VRRP daemon works with.
func (c *Config) VRRPInterfaces() VRRPBonds {
	return VRRPBonds{
		Heartbeat: c.Network.Failover.Bond,
		Internal:  c.Network.Internal.Bond,
		External:  c.Network.External.Bond,
	}
}

// validateVRRP checks what the vrrp section says against the network section:
// the heartbeat runs on the failover bond, virtual addresses lie in a subnet of
// their group's self IPs, unicast peers are on the failover subnet, and an IPv4
// heartbeat has an IPv4 source address.
func (c *Config) validateVRRP(errs *cfgerr.List) {
	v := &c.VRRP
	if !v.Enabled() {
		return
	}
	if v.Interface != "" && v.Interface != c.Network.Failover.Bond {
		errs.Add("vrrp.interface", "the heartbeat must run on the failover bond %q, not %q", c.Network.Failover.Bond, v.Interface)
	}
	c.validateVRRPPeers(errs)
	failNets := prefixes(c.Network.Failover.Addresses)
	for i, a := range v.UnicastPeers {
		if !a.IsLinkLocalUnicast() && !inAny(failNets, a.Addr) {
			errs.Add(cfgerr.Index("vrrp.unicast_peers", i), "%s is not on the failover subnet (%s)", a, joinPrefixes(failNets))
		}
	}
	for i := range v.Instances {
		in := &v.Instances[i]
		p := cfgerr.Index("vrrp.instances", i)
		if in.Family == IPv4 && !hasIPv4(failNets) {
			errs.Add(cfgerr.Join(p, "family"), "an IPv4 heartbeat needs an IPv4 address on the failover bond (network.failover.addresses)")
		}
		for _, g := range in.groups() {
			nets := prefixes(c.Network.Group(g.group).Addresses)
			for j, pfx := range g.addrs {
				ap := cfgerr.Index(cfgerr.Join(p, string(g.group)), j)
				if !inAny(nets, pfx.Addr()) {
					errs.Add(ap, "%s is not in a subnet of the %s group (%s)", pfx.Addr(), g.group, joinPrefixes(nets))
					continue
				}
				for _, n := range nets {
					if n.Addr() == pfx.Addr() {
						errs.Add(ap, "%s is this node's own self IP on %s; a floating address must differ", n.Addr(), g.group)
					}
				}
			}
		}
	}
}

func prefixes(ps []Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Prefix
	}
	return out
}

func inAny(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Masked().Contains(a) {
			return true
		}
	}
	return false
}

func hasIPv4(nets []netip.Prefix) bool {
	for _, n := range nets {
		if n.Addr().Is4() {
			return true
		}
	}
	return false
}

func joinPrefixes(nets []netip.Prefix) string {
	if len(nets) == 0 {
		return "it has no addresses"
	}
	s := ""
	for i, n := range nets {
		if i > 0 {
			s += ", "
		}
		s += n.Masked().String()
	}
	return s
}
