package config

import (
	"net/netip"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp"
)

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
	for i, s := range v.UnicastPeers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue // reported by the section itself
		}
		if !a.IsLinkLocalUnicast() && !inAny(failNets, a) {
			errs.Add(cfgerr.Index("vrrp.unicast_peers", i), "%s is not on the failover subnet (%s)", a, joinPrefixes(failNets))
		}
	}
	for i := range v.Instances {
		in := &v.Instances[i]
		p := cfgerr.Index("vrrp.instances", i)
		if in.Family == vrrp.IPv4 && !hasIPv4(failNets) {
			errs.Add(cfgerr.Join(p, "family"), "an IPv4 heartbeat needs an IPv4 address on the failover bond (network.failover.addresses)")
		}
		for _, g := range []struct {
			group Group
			addrs []string
		}{{Internal, in.Internal}, {External, in.External}} {
			nets := prefixes(c.Network.Group(g.group).Addresses)
			for j, s := range g.addrs {
				pfx, err := vrrp.ParseAddress(s)
				if err != nil {
					continue
				}
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

// VRRPInterfaces names the bonds the VRRP daemon works with.
func (c *Config) VRRPInterfaces() vrrp.Interfaces {
	return vrrp.Interfaces{
		Heartbeat: c.Network.Failover.Bond,
		Internal:  c.Network.Internal.Bond,
		External:  c.Network.External.Bond,
	}
}

func prefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
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
