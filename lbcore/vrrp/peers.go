package vrrp

import (
	"net/netip"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
)

// Hardening holds the vrrp section's settings that decide whom a node
// listens to and what it watches. Its fields are inlined into the section
// (vrrp.peers, vrrp.track defaults).
type Hardening struct {
	// Peers are the routers whose adverts this node accepts: in an HA pair
	// the other node's failover address. Adverts from any other source, of
	// any priority, are dropped, logged and counted (drop.peer). The
	// unicast_peers are always peers too. The appliance config requires
	// one or the other once VRRP runs.
	Peers []string `yaml:"peers"`
}

// AcceptFrom lists the addresses adverts are accepted from: peers and
// unicast_peers (invalid entries skipped; Validate reports them). Empty
// means any source (only library users and tests; the appliance config
// requires peers).
func (c *Config) AcceptFrom() []netip.Addr {
	var out []netip.Addr
	for _, list := range [][]string{c.Peers, c.UnicastPeers} {
		for _, s := range list {
			if a, err := netip.ParseAddr(s); err == nil && !contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// DefaultTrack is the tracking an HA config gets when it says nothing: the
// loss of the External or the Internal bond faults the node so the peer
// takes over. `track: []` opts out.
func DefaultTrack() []Track {
	return []Track{{Group: GroupExternal, Action: TrackFault}, {Group: GroupInternal, Action: TrackFault}}
}

// applyHardeningDefaults fills in the default tracking (nil Track only: an
// explicit empty list is the opt-out).
func (c *Config) applyHardeningDefaults() {
	if c.Track == nil && c.Enabled() {
		c.Track = DefaultTrack()
	}
}

func (c *Config) validatePeers(errs *cfgerr.List) {
	seen := map[netip.Addr]bool{}
	for i, s := range c.Peers {
		p := cfgerr.Index("peers", i)
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			errs.Add(p, "%q is not an IP address", s)
		case a.Zone() != "":
			errs.Add(p, "%q: zones are not allowed", s)
		case !a.IsGlobalUnicast() && !a.IsLinkLocalUnicast() && !a.IsPrivate():
			errs.Add(p, "%s is not a unicast address", a)
		case seen[a]:
			errs.Add(p, "%s is listed twice", a)
		}
		seen[a] = true
	}
}

func contains(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}
