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
	// SyncKey is the shared secret that authenticates config sync between
	// the peers (services/cfgpeer: HMAC-SHA256 over every message). Both
	// nodes must hold the same key; without one the nodes do not offer
	// applies to each other. It is a secret: redacted when shown, and the
	// config file is 0600.
	SyncKey string `yaml:"sync_key"`
}

// MinSyncKeyLen is the shortest vrrp.sync_key accepted.
const MinSyncKeyLen = 16

// ConfigSyncOn tells whether the node takes part in config sync: it has
// peers and a sync key.
func (c *VRRP) ConfigSyncOn() bool {
	return c.SyncKey != "" && len(c.AcceptFrom()) > 0
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
	switch {
	case c.SyncKey == "":
	case c.SyncKey == "<redacted>":
		errs.Add("sync_key", "is the marker `show config` puts in place of the key, not a key: give the real one")
	case len(c.SyncKey) < MinSyncKeyLen:
		errs.Add("sync_key", "too short (%d characters): use at least %d random characters, the same on both nodes", len(c.SyncKey), MinSyncKeyLen)
	case len(c.SyncKey) > 256:
		errs.Add("sync_key", "too long (%d characters, at most 256)", len(c.SyncKey))
	case len(c.Peers) == 0 && len(c.UnicastPeers) == 0:
		errs.Add("sync_key", "set but vrrp.peers is empty: config sync needs the other node's failover address")
	}
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
