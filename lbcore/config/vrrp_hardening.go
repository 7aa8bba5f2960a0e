package config

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
	Peers []IP `yaml:"peers"`
}

// AcceptFrom lists the addresses adverts are accepted from: peers and
// unicast_peers (invalid entries skipped; Validate reports them). Empty
// means any source (only library users and tests; the appliance config
// requires peers).
func (c *VRRP) AcceptFrom() []netip.Addr {
	var out []netip.Addr
	for _, list := range [][]IP{c.Peers, c.UnicastPeers} {
		for _, a := range list {
			if !contains(out, a.Addr) {
				out = append(out, a.Addr)
			}
		}
	}
	return out
}

// DefaultTrack is the tracking an HA config gets when it says nothing: the
// loss of the External or the Internal bond faults the node so the peer
// takes over. `track: []` opts out.
func DefaultTrack() []VRRPTrack {
	return []VRRPTrack{{Group: External, Action: TrackFault}, {Group: Internal, Action: TrackFault}}
}

// applyHardeningDefaults fills in the default tracking (nil Track only: an
// explicit empty list is the opt-out).
func (c *VRRP) applyHardeningDefaults() {
	if c.Track == nil && c.Enabled() {
		c.Track = DefaultTrack()
	}
}

func (c *VRRP) validatePeers(errs *cfgerr.List) {
	seen := map[netip.Addr]bool{}
	for i, ip := range c.Peers {
		p := cfgerr.Index("peers", i)
		a := ip.Addr
		switch {
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
