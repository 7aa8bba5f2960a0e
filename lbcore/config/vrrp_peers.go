package config

import (
	"net/netip"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
)

// validateVRRPPeers: a node running VRRP names the routers it listens to
// (vrrp.peers, or unicast_peers), each on the failover subnet and not this
// node itself. Without them any host on the failover segment could take
// the virtual addresses or silence both nodes with a priority-255 advert.
func (c *Config) validateVRRPPeers(errs *cfgerr.List) {
	v := &c.VRRP
	if len(v.Peers) == 0 && len(v.UnicastPeers) == 0 {
		errs.Add("vrrp.peers", "required with vrrp instances: list the other node's failover address (adverts from any other host are ignored)")
		return
	}
	failNets := prefixes(c.Network.Failover.Addresses)
	for i, ip := range v.Peers {
		a := ip.Addr
		p := cfgerr.Index("vrrp.peers", i)
		switch {
		case !a.IsLinkLocalUnicast() && !inAny(failNets, a):
			errs.Add(p, "%s is not on the failover subnet (%s)", a, joinPrefixes(failNets))
		case isOwn(failNets, a):
			errs.Add(p, "%s is this node's own failover address; list the other node's", a)
		}
	}
}

func isOwn(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Addr() == a {
			return true
		}
	}
	return false
}
