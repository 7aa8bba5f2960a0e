package config

import (
	"net/netip"
	"regexp"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
)

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// lbNets are the Internal group's directly connected subnets and the
// prefixes routed through it (routes on the internal group or via a gateway
// on an internal subnet): where members may live.
type lbNets struct{ direct, routed []netip.Prefix }

func (c *Config) internalNets() lbNets {
	var n lbNets
	for _, a := range c.Network.Internal.Addresses {
		n.direct = append(n.direct, a.Masked())
	}
	for _, r := range c.Network.Routes {
		onInternal := r.Group == Internal
		if r.Group == "" && r.Via.IsValid() && containedIn(r.Via.Addr, n.direct) {
			onInternal = true
		}
		if onInternal {
			n.routed = append(n.routed, r.To.Masked())
		}
	}
	return n
}

func (n lbNets) reachable(a netip.Addr) bool {
	return containedIn(a, n.direct) || containedIn(a, n.routed)
}

func (n lbNets) all() string {
	return prefixList(append(append([]netip.Prefix{}, n.direct...), n.routed...))
}

func containedIn(a netip.Addr, nets []netip.Prefix) bool {
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// validateLB checks the load-balancing sections and their references to the
// network and monitor sections.
func (c *Config) validateLB(errs *cfgerr.List) {
	nets := c.internalNets()
	c.validateAddressPools(errs, nets)
	c.validateSNAT(errs)
	for _, name := range sortedKeys(c.Pools) {
		c.validatePool(errs, name, nets)
	}
	c.validateVirtualServers(errs, nets)
	for name, d := range map[string]Duration{"tcp": c.IPVSTimeouts.TCP, "tcpfin": c.IPVSTimeouts.TCPFin, "udp": c.IPVSTimeouts.UDP} {
		if d < 0 || d.D()%time.Second != 0 || d.D() > 30*24*time.Hour {
			errs.Add(cfgerr.Join("ipvs_timeouts", name), "%s is out of range (whole seconds up to 720h)", d)
		}
	}
	c.validateFloatingOwnership(errs)
	c.validateMonitorPorts(errs)
}

func validName(errs *cfgerr.List, path, name string) {
	if !nameRE.MatchString(name) {
		errs.Add(path, "%q is not a valid name (letters, digits, '_', '.', '-')", name)
	}
}

func validAddressPool(errs *cfgerr.List, path string, p *AddressPool) {
	if p == nil || len(p.Addresses) == 0 {
		errs.Add(path, "needs at least one address")
		return
	}
	if _, err := p.Range(); err != nil {
		errs.Add(cfgerr.Join(path, "addresses"), "%v", err)
	}
}

func (c *Config) validateAddressPools(errs *cfgerr.List, nets lbNets) {
	for _, name := range sortedKeys(c.LocalAddressPools) {
		p := cfgerr.Join("local_address_pools", name)
		validName(errs, p, name)
		lp := c.LocalAddressPools[name]
		validAddressPool(errs, p, lp)
		if lp == nil {
			continue
		}
		if r, err := lp.Range(); err == nil && (!containedIn(r.First, nets.direct) || !containedIn(r.Last, nets.direct)) {
			errs.Add(cfgerr.Join(p, "addresses"), "local addresses %s-%s must be on a directly connected Internal subnet (%s)", r.First, r.Last, prefixList(nets.direct))
		}
	}
}

func (c *Config) validateSNAT(errs *cfgerr.List) {
	for _, name := range sortedKeys(c.SNAT.IPools) {
		p := cfgerr.Join("snat.ipools", name)
		validName(errs, p, name)
		validAddressPool(errs, p, c.SNAT.IPools[name])
	}
	for i, r := range c.SNAT.Rules {
		rp := cfgerr.Index("snat.rules", i)
		if !r.Source.IsValid() {
			errs.Add(cfgerr.Join(rp, "source"), "missing: a CIDR prefix")
		} else if !r.Source.Addr().Is4() {
			errs.Add(cfgerr.Join(rp, "source"), "%q: SNAT is IPv4 only for now", r.Source)
		}
		if c.Network.Group(Group(r.Out)) == nil && !ifnameRE.MatchString(r.Out) {
			errs.Add(cfgerr.Join(rp, "out"), "%q is neither a NIC group nor an interface name", r.Out)
		}
		if r.IPool == "" {
			errs.Add(cfgerr.Join(rp, "ipool"), "missing: name an entry of snat.ipools")
		} else if _, ok := c.SNAT.IPools[r.IPool]; !ok {
			errs.Add(cfgerr.Join(rp, "ipool"), "unknown ipool %q (snat.ipools has %s)", r.IPool, nameList(sortedKeys(c.SNAT.IPools)))
		}
	}
}

func (c *Config) validatePool(errs *cfgerr.List, name string, nets lbNets) {
	pp := cfgerr.Join("pools", name)
	pool := c.Pools[name]
	validName(errs, pp, name)
	if pool == nil {
		errs.Add(pp, "empty pool definition")
		return
	}
	if pool.Monitor != "" {
		if _, ok := c.Monitors[pool.Monitor]; !ok {
			errs.Add(cfgerr.Join(pp, "monitor"), "unknown monitor %q (monitors has %s)", pool.Monitor, nameList(sortedKeys(c.Monitors)))
		}
	}
	if pool.Quorum < 0 || pool.Quorum > len(pool.Members) {
		errs.Add(cfgerr.Join(pp, "quorum"), "%d is out of range (0..%d members)", pool.Quorum, len(pool.Members))
	}
	if d := pool.SlowStart.D(); d < 0 || d > MaxSlowStart || d%time.Second != 0 {
		errs.Add(cfgerr.Join(pp, "slow_start"), "%s must be a whole number of seconds from 1s to 1h (ramps go in 1 s steps; leave it out for no slow start)", d)
	}
	if s := pool.SorryServer; s != nil && !nets.reachable(s.Addr()) {
		errs.Add(cfgerr.Join(pp, "sorry_server"), "%s is not reachable through the Internal group (subnets %s)", s.Addr(), nets.all())
	}
	seen := map[netip.AddrPort]int{}
	for i, m := range pool.Members {
		mp := cfgerr.Index(cfgerr.Join(pp, "members"), i)
		a := m.Address.Addr
		if !a.IsValid() {
			errs.Add(cfgerr.Join(mp, "address"), "missing: the member's IP address")
			continue
		}
		if w := m.MemberWeight(); w < 0 || w > 65535 {
			errs.Add(cfgerr.Join(mp, "weight"), "%d is out of range (0..65535)", w)
		}
		key := netip.AddrPortFrom(a, uint16(m.Port))
		if j, dup := seen[key]; dup {
			errs.Add(mp, "member %s is already listed as members[%d]", key, j)
		}
		seen[key] = i
		if !nets.reachable(a) {
			errs.Add(cfgerr.Join(mp, "address"), "member %s is not reachable: it is on no Internal subnet and no route through the Internal group covers it (%s)", a, nets.all())
		}
	}
}

// vsClaims finds virtual servers that claim the same VIP, protocol and port.
type vsClaims struct {
	names map[string]int
	marks map[uint32]int
	seen  []int
}

func (c *Config) validateVirtualServers(errs *cfgerr.List, nets lbNets) {
	claims := vsClaims{names: map[string]int{}, marks: map[uint32]int{}}
	for i := range c.VirtualServers {
		vp := cfgerr.Index("virtual_servers", i)
		c.validateVSFields(errs, vp, i)
		c.validateVSClaims(errs, vp, i, &claims)
		c.validateVSPool(errs, vp, &c.VirtualServers[i], nets)
		c.validateL7(errs, vp, &c.VirtualServers[i])
	}
}

// validateVSFields checks one virtual server on its own.
func (c *Config) validateVSFields(errs *cfgerr.List, vp string, i int) {
	v := &c.VirtualServers[i]
	validName(errs, cfgerr.Join(vp, "name"), v.Name)
	vip := v.VIP.Addr
	if !vip.IsValid() || vip.IsUnspecified() || vip.IsMulticast() {
		errs.Add(cfgerr.Join(vp, "vip"), "%q is not a usable IP address", v.VIP.Addr)
	}
	if v.Port.From == 0 {
		errs.Add(cfgerr.Join(vp, "port"), "missing: a port (1..65535) or a range")
	}
	if p := v.Persistence; p != nil {
		if d := p.Timeout.D(); d < time.Second || d > 30*24*time.Hour || d%time.Second != 0 {
			errs.Add(cfgerr.Join(vp, "persistence.timeout"), "%s is out of range (whole seconds, 1s..720h)", p.Timeout)
		}
		if err := p.Netmask.check(vip.Is6()); err != nil {
			errs.Add(cfgerr.Join(vp, "persistence.netmask"), "%v", err)
		}
	}
	if v.Internal && v.Mode != ModeFullNAT {
		errs.Add(cfgerr.Join(vp, "mode"), "an internal (east-west) virtual server needs mode fullnat, not %s", v.Mode)
	}
	lap := cfgerr.Join(vp, "local_address_pool")
	switch {
	case v.Mode == ModeFullNAT && v.LocalAddressPool == "":
		errs.Add(lap, "missing: mode fullnat needs a local address pool (local_address_pools has %s)", nameList(sortedKeys(c.LocalAddressPools)))
	case v.Mode == ModeFullNAT && c.LocalAddressPools[v.LocalAddressPool] == nil:
		errs.Add(lap, "unknown local address pool %q (local_address_pools has %s)", v.LocalAddressPool, nameList(sortedKeys(c.LocalAddressPools)))
	case v.Mode != ModeFullNAT && v.LocalAddressPool != "":
		errs.Add(lap, "only applies to mode fullnat, not %s", v.Mode)
	}
	if vip.Is6() && v.NeedsMark() {
		errs.Add(cfgerr.Join(vp, "vip"), "IPv6 is not supported yet for fullnat or port ranges")
	}
}

// validateVSClaims checks what a virtual server shares with the others:
// its name, its firewall mark and its VIP, protocol and ports.
func (c *Config) validateVSClaims(errs *cfgerr.List, vp string, i int, cl *vsClaims) {
	v := &c.VirtualServers[i]
	if j, dup := cl.names[v.Name]; dup {
		errs.Add(cfgerr.Join(vp, "name"), "name %q is already used by virtual_servers[%d]", v.Name, j)
	} else {
		cl.names[v.Name] = i
	}
	if v.NeedsMark() {
		m := v.Mark()
		if j, dup := cl.marks[m]; dup {
			errs.Add(cfgerr.Join(vp, "fwmark"), "firewall mark %#x is already used by virtual_servers[%d]; set fwmark explicitly", m, j)
		}
		cl.marks[m] = i
	} else if v.FWMark != 0 {
		errs.Add(cfgerr.Join(vp, "fwmark"), "only applies to port ranges and fullnat")
	}
	for _, j := range cl.seen {
		o := &c.VirtualServers[j]
		if o.VIP == v.VIP && o.Protocol == v.Protocol && o.Port.Overlaps(v.Port) {
			errs.Add(cfgerr.Join(vp, "port"), "%s %s port %s overlaps virtual_servers[%d] (%s)", v.Protocol, v.VIP, v.Port, j, o.Name)
		}
	}
	cl.seen = append(cl.seen, i)
}

// validateVSPool checks the virtual server's pool and whether its members
// can work with the forwarding mode.
func (c *Config) validateVSPool(errs *cfgerr.List, vp string, v *VirtualServer, nets lbNets) {
	if v.Pool == "" {
		errs.Add(cfgerr.Join(vp, "pool"), "missing: name an entry of pools")
		return
	}
	pool := c.Pools[v.Pool]
	if pool == nil {
		errs.Add(cfgerr.Join(vp, "pool"), "unknown pool %q (pools has %s)", v.Pool, nameList(sortedKeys(c.Pools)))
		return
	}
	for j, m := range pool.Members {
		a := m.Address.Addr
		mp := cfgerr.Index(cfgerr.Join(cfgerr.Join("pools", v.Pool), "members"), j)
		switch {
		case v.Mode == ModeNAT && !containedIn(a, nets.direct):
			errs.Add(cfgerr.Join(vp, "mode"), "nat: member %s (%s) is not on a directly connected Internal subnet (%s), so its replies cannot be routed back through the appliance; use fullnat", a, mp, prefixList(nets.direct))
		case v.Mode == ModeDR && !containedIn(a, nets.direct):
			errs.Add(cfgerr.Join(vp, "mode"), "dr: member %s (%s) must be on a directly connected Internal subnet (%s)", a, mp, prefixList(nets.direct))
		}
		if (v.Mode == ModeDR || v.Mode == ModeTUN) && m.Port != 0 && (v.Port.IsRange() || uint16(m.Port) != v.Port.From) {
			errs.Add(cfgerr.Join(vp, "mode"), "%s cannot change the destination port: %s has port %d, the VS %s (leave the member port 0)", v.Mode, mp, m.Port, v.Port)
		}
		if v.Port.IsRange() && m.Port != 0 {
			errs.Add(cfgerr.Join(vp, "port"), "a port range keeps the client's port: %s must not set a port", mp)
		}
		if v.VIP.IsValid() && a.IsValid() && a.Is4() != v.VIP.Is4() {
			errs.Add(cfgerr.Join(vp, "vip"), "VIP %s and member %s (%s) are of different address families", v.VIP, a, mp)
		}
	}
}

// validateFloatingOwnership: with vrrp instances, vrrpd (not the LB daemon)
// puts VIPs and SNAT addresses on the bonds, and only those listed as
// virtual addresses of the matching group. A VIP or SNAT address missing
// from them would never be announced (nor even present), so reject it.
// Without instances the node is standalone and the LB daemon owns them.
func (c *Config) validateFloatingOwnership(errs *cfgerr.List) {
	if !c.VRRP.Enabled() {
		return
	}
	floating := map[Group]map[netip.Addr]bool{Internal: {}, External: {}}
	for _, in := range c.VRRP.Instances {
		for _, a := range in.Addresses() {
			floating[a.Group][a.Addr.Unmap()] = true
		}
	}
	for i, v := range c.VirtualServers {
		g := External
		if v.Internal {
			g = Internal
		}
		if v.VIP.IsValid() && !floating[g][v.VIP.Unmap()] {
			errs.Add(cfgerr.Join(cfgerr.Index("virtual_servers", i), "vip"), "%s is not a virtual address of the %s group in any vrrp instance; with vrrp on, vrrpd owns VIPs, so this VIP would never be announced (add it to a vrrp instance's %s list)", v.VIP, g, g)
		}
	}
	// Local addresses float too: a FullNAT member replies to one, and
	// after a takeover the new master must receive that reply to carry
	// the synced connection on (issue 13 item 3).
	for _, name := range sortedKeys(c.LocalAddressPools) {
		lp := c.LocalAddressPools[name]
		if lp == nil || !c.localPoolUsed(name) {
			continue
		}
		rg, err := lp.Range()
		if err != nil {
			continue
		}
		var missing []string
		for a := rg.First; ; a = a.Next() {
			if !floating[Internal][a.Unmap()] {
				missing = append(missing, a.String())
			}
			if a == rg.Last {
				break
			}
		}
		if len(missing) > 0 {
			errs.Add(cfgerr.Join(cfgerr.Join("local_address_pools", name), "addresses"), "%s: not virtual addresses of the internal group in any vrrp instance; with vrrp on, local addresses float with the instance so the new master receives the members' replies to synced FullNAT connections (add them to a vrrp instance's internal list)", strings.Join(missing, ", "))
		}
	}
	reported := map[string]bool{}
	for _, r := range c.SNAT.Rules {
		p := c.SNAT.IPools[r.IPool]
		g := Group(r.Out)
		if p == nil || reported[r.IPool] || (g != Internal && g != External) {
			continue // an interface outside the NIC groups: vrrp cannot float it either way
		}
		rg, err := p.Range()
		if err != nil {
			continue
		}
		var missing []string
		for a := rg.First; ; a = a.Next() {
			if !floating[g][a] {
				missing = append(missing, a.String())
			}
			if a == rg.Last {
				break
			}
		}
		if len(missing) > 0 {
			reported[r.IPool] = true
			errs.Add(cfgerr.Join(cfgerr.Join("snat.ipools", r.IPool), "addresses"), "%s: not virtual addresses of the %s group in any vrrp instance; with vrrp on, vrrpd owns SNAT addresses, so these would never be announced (add them to a vrrp instance's %s list)", strings.Join(missing, ", "), g, g)
		}
	}
}

// localPoolUsed reports whether a FullNAT virtual server uses the pool.
func (c *Config) localPoolUsed(name string) bool {
	for _, v := range c.VirtualServers {
		if v.Mode == ModeFullNAT && v.LocalAddressPool == name {
			return true
		}
	}
	return false
}

// validateMonitorPorts: a member checked by a monitor needs a port to check:
// the monitor's, the member's, or (member port 0) the port of a single-port
// virtual server using the pool.
func (c *Config) validateMonitorPorts(errs *cfgerr.List) {
	for _, name := range sortedKeys(c.Pools) {
		pool := c.Pools[name]
		if pool == nil || pool.Monitor == "" {
			continue
		}
		mon, ok := c.Monitors[pool.Monitor]
		if !ok || mon.Port != 0 {
			continue
		}
		if _, ok := c.PoolCheckPort(name); ok {
			continue
		}
		for i, m := range pool.Members {
			if m.Port == 0 {
				errs.Add(cfgerr.Join(cfgerr.Index(cfgerr.Join(cfgerr.Join("pools", name), "members"), i), "port"), "monitor %s has no port to check: set the member's port or the monitor's port (no single-port virtual server uses pool %s)", pool.Monitor, name)
			}
		}
	}
}

func nameList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func prefixList(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "none configured"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
