package config

import (
	"math"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
)

// Checks across sections for what operators commonly get wrong: one
// address in two roles, network or broadcast addresses used as hosts, next
// hops off every connected subnet, and values the kernel or the boot
// loader cannot take.

// addrRole is what an address is used as.
type addrRole string

const (
	roleSelf     addrRole = "a self IP"
	roleGateway  addrRole = "a gateway"
	roleVIP      addrRole = "a VIP"
	roleMember   addrRole = "a member"
	roleLocal    addrRole = "a local address (FullNAT)"
	roleSNAT     addrRole = "a SNAT address"
	roleFloating addrRole = "a floating (vrrp) address"
	rolePeer     addrRole = "a vrrp peer"
)

// compatible reports whether one address may hold both roles: a VIP, a
// SNAT address or a local address is also the floating address vrrp moves
// (with vrrp on they must be: issue 13 item 3), and any role may
// repeat (two virtual servers on one VIP, one member in two pools).
func compatible(a, b addrRole) bool {
	if a == b {
		return true
	}
	pair := func(x, y addrRole) bool { return a == x && b == y || a == y && b == x }
	return pair(roleVIP, roleFloating) || pair(roleSNAT, roleFloating) || pair(roleLocal, roleFloating)
}

// addrUse is one use of an address.
type addrUse struct {
	addr netip.Addr
	role addrRole
	path string
}

// addressUses lists every address the config gives a role, in document
// order of the sections.
func (c *Config) addressUses() []addrUse {
	var out []addrUse
	add := func(a netip.Addr, role addrRole, path string) {
		if a.IsValid() {
			out = append(out, addrUse{a.Unmap(), role, path})
		}
	}
	for _, g := range Groups {
		for i, p := range c.Network.Group(g).Addresses {
			add(p.Addr(), roleSelf, cfgerr.Index("network."+string(g)+".addresses", i))
		}
	}
	if m := c.Network.Management; m != nil {
		add(m.Address.Addr(), roleSelf, "network.management.address")
		add(m.Gateway.Addr, roleGateway, "network.management.gateway")
	}
	for i, r := range c.Network.Routes {
		add(r.Via.Addr, roleGateway, cfgerr.Join(cfgerr.Index("network.routes", i), "via"))
	}
	for i, v := range c.VirtualServers {
		add(v.VIP.Addr, roleVIP, cfgerr.Join(cfgerr.Index("virtual_servers", i), "vip"))
	}
	for _, name := range sortedKeys(c.Pools) {
		p := c.Pools[name]
		if p == nil {
			continue
		}
		for i, m := range p.Members {
			add(m.Address.Addr, roleMember, cfgerr.Join(cfgerr.Index("pools."+name+".members", i), "address"))
		}
		if p.SorryServer != nil {
			add(p.SorryServer.Addr(), roleMember, "pools."+name+".sorry_server")
		}
	}
	// Pools are expanded up to 65536 addresses each (a larger pool is
	// refused as such) and 131072 in all (a bound on the work).
	ranges := func(pools map[string]*AddressPool, prefix string, role addrRole) {
		total := 0
		for _, name := range sortedKeys(pools) {
			if pools[name] == nil {
				continue
			}
			n := 0
			for i, r := range pools[name].Addresses {
				for a := r.First; a.IsValid() && n < 1<<16 && total < 1<<17; a = a.Next() {
					add(a, role, cfgerr.Index(prefix+"."+name+".addresses", i))
					n++
					total++
					if a == r.Last {
						break
					}
				}
			}
		}
	}
	ranges(c.LocalAddressPools, "local_address_pools", roleLocal)
	ranges(c.SNAT.IPools, "snat.ipools", roleSNAT)
	for i, in := range c.VRRP.Instances {
		for _, g := range in.groups() {
			for j, p := range g.addrs {
				add(p.Addr(), roleFloating, cfgerr.Index(cfgerr.Join(cfgerr.Index("vrrp.instances", i), string(g.group)), j))
			}
		}
	}
	for i, a := range c.VRRP.Peers {
		add(a.Addr, rolePeer, cfgerr.Index("vrrp.peers", i))
	}
	for i, a := range c.VRRP.UnicastPeers {
		add(a.Addr, rolePeer, cfgerr.Index("vrrp.unicast_peers", i))
	}
	return out
}

// validateAddressRoles refuses an address used in two roles that exclude
// each other (a member that is also a VIP, a local address that is a self
// IP, ...) and host addresses that are the network or broadcast address of
// a connected IPv4 subnet.
func (c *Config) validateAddressRoles(errs *cfgerr.List) {
	first := map[netip.Addr][]addrUse{}
	reported := map[string]bool{}
	subnets := c.connectedSubnets()
	for _, u := range c.addressUses() {
		for _, prev := range first[u.addr] {
			if !compatible(prev.role, u.role) && !reported[u.path+"|"+prev.path] {
				reported[u.path+"|"+prev.path] = true
				errs.Add(u.path, "%s is already %s (%s); one address cannot be both %s and %s", u.addr, prev.role, prev.path, prev.role, u.role)
				break
			}
		}
		first[u.addr] = append(first[u.addr], u)
		if u.role == rolePeer {
			continue // the other node's address: its own subnet decides
		}
		for _, s := range subnets {
			if what := networkOrBroadcast(s.prefix, u.addr); what != "" && !reported[u.path+"|nb"] {
				reported[u.path+"|nb"] = true
				errs.Add(u.path, "%s is the %s address of %s (%s), not a host address", u.addr, what, s.prefix, s.path)
			}
		}
	}
}

// subnet is a directly connected subnet and where it is configured.
type subnet struct {
	prefix netip.Prefix // masked
	path   string
	group  string // failover, internal, external or management
}

// connectedSubnets lists the subnets of the self IPs, the management
// NIC's static address included.
func (c *Config) connectedSubnets() []subnet {
	var out []subnet
	for _, g := range Groups {
		for i, p := range c.Network.Group(g).Addresses {
			if p.IsValid() {
				out = append(out, subnet{p.Masked(), cfgerr.Index("network."+string(g)+".addresses", i), string(g)})
			}
		}
	}
	if m := c.Network.Management; m != nil && m.Address.IsValid() {
		out = append(out, subnet{m.Address.Masked(), "network.management.address", "management"})
	}
	return out
}

// networkOrBroadcast says whether a is the network or the broadcast address
// of the IPv4 subnet p (/30 or larger; /31 and /32 have neither).
func networkOrBroadcast(p netip.Prefix, a netip.Addr) string {
	if !a.Is4() || !p.Addr().Is4() || p.Bits() > 30 || !p.Contains(a) {
		return ""
	}
	if a == p.Addr() {
		return "network"
	}
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) | host
	if a == netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}) {
		return "broadcast"
	}
	return ""
}

// validateSubnets refuses subnets of two segments (NIC groups, the
// management NIC) that overlap: the kernel would route one segment's
// traffic out of the other.
func (c *Config) validateSubnets(errs *cfgerr.List) {
	nets := c.connectedSubnets()
	for i, a := range nets {
		for _, b := range nets[:i] {
			if a.group != b.group && a.prefix.Overlaps(b.prefix) {
				errs.Add(a.path, "subnet %s overlaps %s of %s (%s); segments need subnets of their own", a.prefix, b.prefix, b.group, b.path)
				break
			}
		}
	}
}

// validateNextHops refuses a route whose gateway is on no connected subnet
// (of its group, when it names one): the kernel refuses such a route
// ("Nexthop has invalid gateway") and the boot would stop there.
func (c *Config) validateNextHops(errs *cfgerr.List) {
	nets := c.connectedSubnets()
	for i, r := range c.Network.Routes {
		if !r.Via.IsValid() || r.Via.IsLinkLocalUnicast() {
			continue
		}
		var on []string
		found := false
		for _, s := range nets {
			if s.group == "management" || r.Group != "" && s.group != string(r.Group) {
				continue
			}
			on = append(on, s.group+" "+s.prefix.String())
			if s.prefix.Contains(r.Via.Addr) {
				found = true
			}
		}
		if !found {
			where := "any NIC group"
			if r.Group != "" {
				where = "group " + string(r.Group)
			}
			errs.Add(cfgerr.Join(cfgerr.Index("network.routes", i), "via"), "next hop %s is on no connected subnet of %s (%s); the kernel refuses a gateway it cannot reach directly", r.Via, where, nameList(on))
		}
		if r.Metric > math.MaxUint32 {
			errs.Add(cfgerr.Join(cfgerr.Index("network.routes", i), "metric"), "%d is out of range (0..4294967295)", r.Metric)
		}
	}
	if m := c.Network.Management; m != nil && m.Gateway.IsValid() && m.Address.IsValid() && !m.Address.Masked().Contains(m.Gateway.Addr) {
		errs.Add("network.management.gateway", "%s is not on the management subnet %s", m.Gateway, m.Address.Masked())
	}
}

// nicKey is how a NIC selector is compared: a MAC address in one spelling
// (lower case, colons), whatever case and separators the config used.
func nicKey(s string) string {
	if hw, err := net.ParseMAC(s); err == nil && len(hw) == 6 {
		return hw.String()
	}
	return s
}

// validateBondNames refuses a bond named like a NIC the config uses (a
// member of any group or the management NIC): creating it would fail, or
// the NIC would disappear behind the bond.
func (n *Network) validateBondNames(errs *cfgerr.List) {
	nics := map[string]string{}
	for _, g := range Groups {
		for i, m := range n.Group(g).Members {
			nics[m] = cfgerr.Index("network."+string(g)+".members", i)
		}
	}
	if n.Management != nil && n.Management.Interface != "" {
		nics[n.Management.Interface] = "network.management.interface"
	}
	for _, g := range Groups {
		b := n.Group(g).Bond
		if at, clash := nics[b]; clash {
			errs.Add(cfgerr.Join(string(g), "bond"), "bond name %q is the name of a NIC the config uses (%s); name the bond differently", b, at)
		}
	}
}

var (
	sysctlKeyRE = regexp.MustCompile(`^net(\.[A-Za-z0-9_-]+)+$`)
	// Characters the boot loaders (GRUB, PXELINUX) give a meaning to, or
	// that end the line the kernel arguments are on.
	cmdlineBadRE = regexp.MustCompile("[\"'`\\\\$;{}#&|<>\\x00-\\x1f\\x7f]")
)

// Limits on what reaches /proc/sys and the boot loader's config.
const (
	maxSysctlKey   = 255
	maxSysctlValue = 256
	// MaxCmdline is the length of kernel arguments a config may add; the
	// kernel takes 2048 bytes on x86 and the appliance's own arguments
	// need the rest.
	MaxCmdline = 1024
)

// validateSysctls refuses keys that do not name a net.* sysctl file (empty
// parts, '/', "..") and values that cannot be written to one.
func (n *Network) validateSysctls(errs *cfgerr.List) {
	for k, v := range n.Sysctls {
		p := cfgerr.Join("sysctls", k)
		switch {
		case len(k) > maxSysctlKey:
			errs.Add(p, "key is %d characters long (at most %d)", len(k), maxSysctlKey)
		case !sysctlKeyRE.MatchString(k):
			errs.Add(p, "only net.* sysctls can be set, and %q is not one (parts of letters, digits, '_' and '-', separated by single dots)", k)
		}
		switch {
		case v == "":
			errs.Add(p, "empty value; a sysctl needs one")
		case len(v) > maxSysctlValue:
			errs.Add(p, "value is %d characters long (at most %d)", len(v), maxSysctlValue)
		case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }):
			errs.Add(p, "value %s holds a control character (a newline, say); write it on one line", strconv.Quote(v))
		}
	}
}

// validateCmdline refuses kernel arguments that could change the boot
// loader's config rather than extend the kernel's command line.
func (k *Kernel) validateCmdline(errs *cfgerr.List) {
	s := k.Cmdline
	switch {
	case len(s) > MaxCmdline:
		errs.Add("kernel.cmdline", "%d characters long (at most %d)", len(s), MaxCmdline)
	case cmdlineBadRE.MatchString(s):
		errs.Add("kernel.cmdline", "%s holds %s, which the boot loader's config would interpret; use plain name=value arguments separated by spaces", strconv.Quote(s), strconv.Quote(cmdlineBadRE.FindString(s)))
	case strings.ContainsFunc(s, func(r rune) bool { return r > 0x7e }):
		errs.Add("kernel.cmdline", "%s holds characters outside printable ASCII", strconv.Quote(s))
	}
}

// zeroDefaults are the fields where 0 means "use the default": an explicit
// 0 in the file would silently become that default, so it is refused.
var zeroDefaults = []struct {
	re  *regexp.Regexp
	def string
}{
	{regexp.MustCompile(`^network\.(failover|internal|external)\.miimon$`), "100 (ms)"},
	{regexp.MustCompile(`^network\.(failover|internal|external)\.mtu$`), "1500"},
	{regexp.MustCompile(`^vrrp\.version$`), "3"},
	{regexp.MustCompile(`^vrrp\.priority$`), "100"},
	{regexp.MustCompile(`^vrrp\.advert_interval$`), "20 (cs)"},
	{regexp.MustCompile(`^vrrp\.garp\.repeat$`), "5"},
	{regexp.MustCompile(`^vrrp\.garp\.interval$`), "100ms"},
	{regexp.MustCompile(`^vrrp\.track\[\d+\]\.weight$`), "50 (action decrement)"},
	{regexp.MustCompile(`^vrrp\.instances\[\d+\]\.priority$`), "the section's priority"},
	{regexp.MustCompile(`^vrrp\.instances\[\d+\]\.advert_interval$`), "the section's advert_interval"},
	{regexp.MustCompile(`^virtual_servers\[\d+\]\.persistence\.timeout$`), "600s"},
	{regexp.MustCompile(`^ipvs_timeouts\.tcp$`), "90s"},
	{regexp.MustCompile(`^management\.api\.port$`), "8080 (8443 with tls)"},
	{regexp.MustCompile(`^management\.log\.ring_lines$`), "2000"},
	{regexp.MustCompile(`^management\.config_history$`), "5"},
	{regexp.MustCompile(`^monitors\.[^.]+\.(interval)$`), "5s"},
	{regexp.MustCompile(`^monitors\.[^.]+\.(timeout)$`), "2s, or half the interval"},
	{regexp.MustCompile(`^monitors\.[^.]+\.(rise)$`), "2"},
	{regexp.MustCompile(`^monitors\.[^.]+\.(fall)$`), "3"},
}

// explicitZeros refuses a 0 written for a field whose 0 means its default.
func (pos *positions) explicitZeros(errs *cfgerr.List) {
	for _, n := range pos.nodes {
		if n.key || !isZero(n.value, n.tag) {
			continue
		}
		for _, z := range zeroDefaults {
			if z.re.MatchString(n.path) {
				errs.AddAt(n.path, n.line, "an explicit %s would silently become the default %s; leave the field out for the default, or give the value you mean", n.value, z.def)
				break
			}
		}
	}
}

func isZero(v, tag string) bool {
	switch tag {
	case "!!int":
		i, err := strconv.ParseInt(v, 0, 64)
		return err == nil && i == 0
	case "!!float":
		f, err := strconv.ParseFloat(v, 64)
		return err == nil && f == 0
	case "!!str":
		d, err := time.ParseDuration(strings.TrimSpace(v))
		return err == nil && d == 0
	}
	return false
}
