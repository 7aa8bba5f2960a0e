package config

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
)

// LB is the load-balancing part of the config: virtual servers, pools, local
// address pools and SNAT. It is inlined at the top level of the document.
type LB struct {
	VirtualServers []VirtualServer `yaml:"virtual_servers"`
	// Pools are the member sets virtual servers balance over, by name.
	Pools map[string]*Pool `yaml:"pools"`
	// LocalAddressPools are FullNAT source addresses toward members, by name.
	// They are the appliance's own addresses on the Internal group and do not
	// move on failover.
	LocalAddressPools map[string]*AddressPool `yaml:"local_address_pools"`
	SNAT              SNAT                    `yaml:"snat"`
	IPVSTimeouts      IPVSTimeouts            `yaml:"ipvs_timeouts"`
}

// Forwarding modes of a virtual server.
const (
	ModeNAT     = "nat"     // IPVS masquerade; members route back through the appliance
	ModeFullNAT = "fullnat" // IPVS masquerade + SNAT to a local address pool
	ModeDR      = "dr"      // direct routing; members hold the VIP on lo and answer clients directly
	ModeTUN     = "tun"     // IP-in-IP tunnel; members decapsulate and answer clients directly
)

// Modes lists the accepted virtual server modes.
var Modes = []string{ModeNAT, ModeFullNAT, ModeDR, ModeTUN}

// Schedulers lists the mainline IPVS schedulers.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

// Defaults from the seed.
const (
	DefaultScheduler          = "wrr"
	DefaultPersistenceTimeout = 600 * time.Second
	DefaultTCPTimeout         = 90 * time.Second
	DefaultMemberWeight       = 1
)

// VirtualServer is one VIP:port (or port range) balanced over a pool.
type VirtualServer struct {
	Name string `yaml:"name"`
	VIP  string `yaml:"vip"`
	// Port is one port ("80") or an inclusive range ("8000-8010"); a range
	// becomes a firewall-mark service.
	Port     string `yaml:"port"`
	Protocol string `yaml:"protocol"` // tcp (default) or udp
	Mode     string `yaml:"mode"`     // nat (default), fullnat, dr, tun
	// Scheduler is an IPVS scheduler name; default wrr.
	Scheduler   string       `yaml:"scheduler"`
	Persistence *Persistence `yaml:"persistence"`
	Pool        string       `yaml:"pool"`
	// Internal marks an east-west VIP on the Internal side; it requires
	// FullNAT.
	Internal bool `yaml:"internal"`
	// LocalAddressPool names the FullNAT source addresses (fullnat only).
	LocalAddressPool string `yaml:"local_address_pool"`
	// FWMark overrides the firewall mark of a port-range or fullnat VS
	// (default: derived from VIP, protocol and port(s)).
	FWMark uint32 `yaml:"fwmark"`
}

// Persistence is L4 (source address) persistence.
type Persistence struct {
	Enabled *bool         `yaml:"enabled"`
	Timeout time.Duration `yaml:"timeout"`
	// Netmask groups clients: "255.255.255.0", "/24" or "24" (IPv4), a
	// prefix length for IPv6. Default: each client address on its own.
	Netmask string `yaml:"netmask"`
}

// Pool is a set of members with their health monitor.
type Pool struct {
	Members []Member `yaml:"members"`
	// Monitor names an entry of the monitors section.
	Monitor string `yaml:"monitor"`
	// Inhibit keeps a failed member in IPVS with weight 0 instead of
	// removing it (existing connections finish).
	Inhibit bool `yaml:"inhibit"`
	// Quorum is the number of healthy members below which the pool is
	// considered down and the sorry server takes over (0: only when none).
	Quorum int `yaml:"quorum"`
	// SorryServer ("addr:port") serves when the pool is down.
	SorryServer string `yaml:"sorry_server"`
}

// Member is one real server.
type Member struct {
	Address string `yaml:"address"`
	// Port is the member's port; 0 means the port the client connected to.
	Port   int  `yaml:"port"`
	Weight *int `yaml:"weight"`
}

// AddressPool is a set of IPv4 addresses given as single addresses or
// ranges ("198.51.100.201-198.51.100.209" or "198.51.100.201-209"). The
// addresses must form one contiguous range.
type AddressPool struct {
	Addresses []string `yaml:"addresses"`
}

// SNAT is the all-in-one source NAT for members' own outbound traffic.
type SNAT struct {
	IPools map[string]*AddressPool `yaml:"ipools"`
	Rules  []SNATRule              `yaml:"rules"`
}

// SNATRule chooses an IPool for traffic from Source leaving through Out.
type SNATRule struct {
	Source string `yaml:"source"` // CIDR
	// Out is a NIC group name (default external) or an interface name.
	Out   string `yaml:"out"`
	IPool string `yaml:"ipool"`
}

// IPVSTimeouts are the global IPVS connection timeouts.
type IPVSTimeouts struct {
	TCP    time.Duration `yaml:"tcp"`    // ESTABLISHED idle; default 90s
	TCPFin time.Duration `yaml:"tcpfin"` // 0: kernel default
	UDP    time.Duration `yaml:"udp"`    // 0: kernel default
}

// PersistenceOn reports whether persistence is enabled (after defaults).
func (v *VirtualServer) PersistenceOn() bool {
	return v.Persistence != nil && v.Persistence.Enabled != nil && *v.Persistence.Enabled
}

// Ports returns the parsed port range (from == to for one port).
func (v *VirtualServer) Ports() (from, to uint16, err error) {
	return ParsePortRange(v.Port)
}

// IsRange reports whether the VS covers more than one port (a fwmark service).
func (v *VirtualServer) IsRange() bool {
	f, t, err := v.Ports()
	return err == nil && f != t
}

// NeedsMark reports whether the VS's packets get a firewall mark: port
// ranges (the mark is the IPVS fwmark service) and FullNAT (the mark selects
// the SNAT to the local address pool in postrouting; IPVS falls back to its
// address/port lookup when no fwmark service has the mark).
func (v *VirtualServer) NeedsMark() bool { return v.IsRange() || v.Mode == ModeFullNAT }

// Mark returns the VS's firewall mark (see NeedsMark): FWMark if set,
// otherwise derived from VIP, protocol and port(s) (stable across config
// edits, so reordering virtual servers does not recreate services).
func (v *VirtualServer) Mark() uint32 {
	if v.FWMark != 0 {
		return v.FWMark
	}
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%s/%s", v.VIP, v.Protocol, v.Port)
	// 0x00100000..0x001fffff: clear of small hand-picked marks.
	return 0x00100000 | h.Sum32()&0x000fffff
}

// MemberWeight is the member's weight after defaults.
func (m *Member) MemberWeight() int {
	if m.Weight == nil {
		return DefaultMemberWeight
	}
	return *m.Weight
}

// ParsePortRange parses "80" or "8000-8010".
func ParsePortRange(s string) (from, to uint16, err error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	pf, err := parsePort(a)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return pf, pf, nil
	}
	pt, err := parsePort(b)
	if err != nil {
		return 0, 0, err
	}
	if pt < pf {
		return 0, 0, fmt.Errorf("range %q ends before it starts", s)
	}
	return pf, pt, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port (1..65535)", s)
	}
	return uint16(n), nil
}

// ParseAddressRange parses one address or a range of IPv4 addresses
// ("a.b.c.d-a.b.c.e" or "a.b.c.d-e").
func ParseAddressRange(s string) (first, last netip.Addr, err error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	first, err = netip.ParseAddr(a)
	if err != nil {
		return first, last, fmt.Errorf("%q is not an address or address range", s)
	}
	if !isRange {
		return first, first, nil
	}
	if !first.Is4() {
		return first, last, fmt.Errorf("%q: ranges are IPv4 only", s)
	}
	if !strings.Contains(b, ".") {
		n, err := strconv.Atoi(b)
		if err != nil || n < 0 || n > 255 {
			return first, last, fmt.Errorf("%q is not an address range", s)
		}
		o := first.As4()
		o[3] = byte(n)
		last = netip.AddrFrom4(o)
	} else if last, err = netip.ParseAddr(b); err != nil || !last.Is4() {
		return first, last, fmt.Errorf("%q is not an address range", s)
	}
	if last.Less(first) {
		return first, last, fmt.Errorf("range %q ends before it starts", s)
	}
	return first, last, nil
}

// Range returns the first and last address of the pool, which validation
// guarantees is one contiguous IPv4 range.
func (p *AddressPool) Range() (first, last netip.Addr, err error) {
	var all []netip.Addr
	for _, s := range p.Addresses {
		f, l, err := ParseAddressRange(s)
		if err != nil {
			return first, last, err
		}
		for a := f; ; a = a.Next() {
			all = append(all, a)
			if a == l || len(all) > 1<<16 {
				break
			}
		}
	}
	if len(all) == 0 {
		return first, last, fmt.Errorf("no addresses")
	}
	if len(all) > 1<<16 {
		return first, last, fmt.Errorf("more than 65536 addresses")
	}
	slices.SortFunc(all, func(a, b netip.Addr) int { return a.Compare(b) })
	for i := 1; i < len(all); i++ {
		if all[i] == all[i-1] {
			return first, last, fmt.Errorf("address %s is listed twice", all[i])
		}
		if all[i] != all[i-1].Next() {
			return first, last, fmt.Errorf("addresses must form one contiguous range; %s does not follow %s", all[i], all[i-1])
		}
	}
	for _, a := range all {
		if !a.Is4() {
			return first, last, fmt.Errorf("%s: IPv6 is not supported here yet", a)
		}
	}
	return all[0], all[len(all)-1], nil
}

// ParseNetmask turns a persistence netmask into a prefix length.
func ParseNetmask(s string, v6 bool) (int, error) {
	max := 32
	if v6 {
		max = 128
	}
	if s == "" {
		return max, nil
	}
	t := strings.TrimPrefix(s, "/")
	if n, err := strconv.Atoi(t); err == nil {
		if n < 0 || n > max {
			return 0, fmt.Errorf("prefix length %d is out of range (0..%d)", n, max)
		}
		return n, nil
	}
	if v6 {
		return 0, fmt.Errorf("%q: give an IPv6 netmask as a prefix length", s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("%q is not a netmask (255.255.255.0 or /24)", s)
	}
	o := a.As4()
	m := uint32(o[0])<<24 | uint32(o[1])<<16 | uint32(o[2])<<8 | uint32(o[3])
	n := 0
	for m&0x80000000 != 0 {
		n++
		m <<= 1
	}
	if m != 0 {
		return 0, fmt.Errorf("%q is not a contiguous netmask", s)
	}
	return n, nil
}

// OutInterface resolves a SNAT rule's out field to an interface name.
func (c *Config) OutInterface(out string) string {
	if b := c.Network.Group(Group(out)); b != nil {
		return b.Bond
	}
	return out
}

func (c *Config) applyLBDefaults() {
	for i := range c.VirtualServers {
		v := &c.VirtualServers[i]
		if v.Protocol == "" {
			v.Protocol = "tcp"
		}
		if v.Mode == "" {
			if v.Internal {
				v.Mode = ModeFullNAT
			} else {
				v.Mode = ModeNAT
			}
		}
		if v.Scheduler == "" {
			v.Scheduler = DefaultScheduler
		}
		if v.Persistence == nil {
			v.Persistence = &Persistence{}
		}
		if v.Persistence.Enabled == nil {
			on := true
			v.Persistence.Enabled = &on
		}
		if v.Persistence.Timeout == 0 {
			v.Persistence.Timeout = DefaultPersistenceTimeout
		}
	}
	for i := range c.SNAT.Rules {
		if c.SNAT.Rules[i].Out == "" {
			c.SNAT.Rules[i].Out = string(External)
		}
	}
	if c.IPVSTimeouts.TCP == 0 {
		c.IPVSTimeouts.TCP = DefaultTCPTimeout
	}
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// internalNets returns the Internal group's directly connected subnets and
// the prefixes routed through it (routes on the internal group or via a
// gateway on an internal subnet).
func (c *Config) internalNets() (direct, routed []netip.Prefix) {
	for _, a := range c.Network.Internal.Addresses {
		if p, err := netip.ParsePrefix(a); err == nil {
			direct = append(direct, p.Masked())
		}
	}
	for _, r := range c.Network.Routes {
		to, err := netip.ParsePrefix(r.To)
		if err != nil {
			continue
		}
		via, _ := netip.ParseAddr(r.Via)
		onInternal := r.Group == Internal
		if r.Group == "" && via.IsValid() {
			for _, d := range direct {
				if d.Contains(via) {
					onInternal = true
				}
			}
		}
		if onInternal {
			routed = append(routed, to.Masked())
		}
	}
	return direct, routed
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
	direct, routed := c.internalNets()

	validPool := func(path string, p *AddressPool) {
		if p == nil || len(p.Addresses) == 0 {
			errs.Add(path, "needs at least one address")
			return
		}
		ok := true
		for i, s := range p.Addresses {
			if _, _, err := ParseAddressRange(s); err != nil {
				errs.Add(cfgerr.Index(cfgerr.Join(path, "addresses"), i), "%v", err)
				ok = false
			}
		}
		if ok {
			if _, _, err := p.Range(); err != nil {
				errs.Add(cfgerr.Join(path, "addresses"), "%v", err)
			}
		}
	}
	for _, name := range sortedKeys(c.LocalAddressPools) {
		p := cfgerr.Join("local_address_pools", name)
		if !nameRE.MatchString(name) {
			errs.Add(p, "%q is not a valid name (letters, digits, '_', '.', '-')", name)
		}
		validPool(p, c.LocalAddressPools[name])
		if lp := c.LocalAddressPools[name]; lp != nil {
			if f, l, err := lp.Range(); err == nil && (!containedIn(f, direct) || !containedIn(l, direct)) {
				errs.Add(cfgerr.Join(p, "addresses"), "local addresses %s-%s must be on a directly connected Internal subnet (%s)", f, l, prefixList(direct))
			}
		}
	}
	for _, name := range sortedKeys(c.SNAT.IPools) {
		p := cfgerr.Join("snat.ipools", name)
		if !nameRE.MatchString(name) {
			errs.Add(p, "%q is not a valid name (letters, digits, '_', '.', '-')", name)
		}
		validPool(p, c.SNAT.IPools[name])
	}
	for i, r := range c.SNAT.Rules {
		rp := cfgerr.Index("snat.rules", i)
		if _, err := netip.ParsePrefix(r.Source); err != nil {
			errs.Add(cfgerr.Join(rp, "source"), "%q is not a CIDR prefix", r.Source)
		} else if !netip.MustParsePrefix(r.Source).Addr().Is4() {
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

	// Pools and members.
	for _, name := range sortedKeys(c.Pools) {
		pp := cfgerr.Join("pools", name)
		pool := c.Pools[name]
		if !nameRE.MatchString(name) {
			errs.Add(pp, "%q is not a valid name (letters, digits, '_', '.', '-')", name)
		}
		if pool == nil {
			errs.Add(pp, "empty pool definition")
			continue
		}
		if pool.Monitor != "" {
			if _, ok := c.Monitors[pool.Monitor]; !ok {
				errs.Add(cfgerr.Join(pp, "monitor"), "unknown monitor %q (monitors has %s)", pool.Monitor, nameList(sortedKeys(c.Monitors)))
			}
		}
		if pool.Quorum < 0 || pool.Quorum > len(pool.Members) {
			errs.Add(cfgerr.Join(pp, "quorum"), "%d is out of range (0..%d members)", pool.Quorum, len(pool.Members))
		}
		if pool.SorryServer != "" {
			if ap, err := netip.ParseAddrPort(pool.SorryServer); err != nil || ap.Port() == 0 {
				errs.Add(cfgerr.Join(pp, "sorry_server"), "%q is not address:port", pool.SorryServer)
			} else if !containedIn(ap.Addr(), direct) && !containedIn(ap.Addr(), routed) {
				errs.Add(cfgerr.Join(pp, "sorry_server"), "%s is not reachable through the Internal group (subnets %s)", ap.Addr(), prefixList(append(direct, routed...)))
			}
		}
		seen := map[netip.AddrPort]int{}
		for i, m := range pool.Members {
			mp := cfgerr.Index(cfgerr.Join(pp, "members"), i)
			a, err := netip.ParseAddr(m.Address)
			if err != nil || a.Zone() != "" {
				errs.Add(cfgerr.Join(mp, "address"), "%q is not an IP address", m.Address)
				continue
			}
			if m.Port < 0 || m.Port > 65535 {
				errs.Add(cfgerr.Join(mp, "port"), "%d is not a port (1..65535, or 0 for the VS port)", m.Port)
			}
			if w := m.MemberWeight(); w < 0 || w > 65535 {
				errs.Add(cfgerr.Join(mp, "weight"), "%d is out of range (0..65535)", w)
			}
			key := netip.AddrPortFrom(a, uint16(m.Port))
			if j, dup := seen[key]; dup {
				errs.Add(mp, "member %s is already listed as members[%d]", key, j)
			}
			seen[key] = i
			if !containedIn(a, direct) && !containedIn(a, routed) {
				errs.Add(cfgerr.Join(mp, "address"), "member %s is not reachable: it is on no Internal subnet and no route through the Internal group covers it (%s)", a, prefixList(append(direct, routed...)))
			}
		}
	}

	// Virtual servers.
	type claim struct {
		idx      int
		vip      netip.Addr
		proto    string
		from, to uint16
	}
	var claims []claim
	names := map[string]int{}
	marks := map[uint32]int{}
	for i := range c.VirtualServers {
		v := &c.VirtualServers[i]
		vp := cfgerr.Index("virtual_servers", i)
		if !nameRE.MatchString(v.Name) {
			errs.Add(cfgerr.Join(vp, "name"), "%q is not a valid name (letters, digits, '_', '.', '-')", v.Name)
		} else if j, dup := names[v.Name]; dup {
			errs.Add(cfgerr.Join(vp, "name"), "name %q is already used by virtual_servers[%d]", v.Name, j)
		} else {
			names[v.Name] = i
		}
		vip, vipErr := netip.ParseAddr(v.VIP)
		if vipErr != nil || vip.Zone() != "" || vip.IsUnspecified() || vip.IsMulticast() {
			errs.Add(cfgerr.Join(vp, "vip"), "%q is not a usable IP address", v.VIP)
			vipErr = fmt.Errorf("bad vip")
		}
		from, to, portErr := v.Ports()
		if portErr != nil {
			errs.Add(cfgerr.Join(vp, "port"), "%v", portErr)
		}
		if v.Protocol != "tcp" && v.Protocol != "udp" {
			errs.Add(cfgerr.Join(vp, "protocol"), "%q must be tcp or udp", v.Protocol)
		}
		if !slices.Contains(Modes, v.Mode) {
			errs.Add(cfgerr.Join(vp, "mode"), "unknown mode %q (one of %s)", v.Mode, strings.Join(Modes, ", "))
		}
		if !slices.Contains(Schedulers, v.Scheduler) {
			errs.Add(cfgerr.Join(vp, "scheduler"), "unknown scheduler %q (one of %s)", v.Scheduler, strings.Join(Schedulers, ", "))
		}
		if p := v.Persistence; p != nil {
			if p.Timeout < time.Second || p.Timeout > 30*24*time.Hour || p.Timeout%time.Second != 0 {
				errs.Add(cfgerr.Join(vp, "persistence.timeout"), "%s is out of range (whole seconds, 1s..720h)", p.Timeout)
			}
			if _, err := ParseNetmask(p.Netmask, vipErr == nil && vip.Is6()); err != nil {
				errs.Add(cfgerr.Join(vp, "persistence.netmask"), "%v", err)
			}
		}
		if v.Internal && v.Mode != ModeFullNAT {
			errs.Add(cfgerr.Join(vp, "mode"), "an internal (east-west) virtual server needs mode fullnat, not %s", v.Mode)
		}
		if v.Mode == ModeFullNAT {
			if v.LocalAddressPool == "" {
				errs.Add(cfgerr.Join(vp, "local_address_pool"), "missing: mode fullnat needs a local address pool (local_address_pools has %s)", nameList(sortedKeys(c.LocalAddressPools)))
			} else if _, ok := c.LocalAddressPools[v.LocalAddressPool]; !ok {
				errs.Add(cfgerr.Join(vp, "local_address_pool"), "unknown local address pool %q (local_address_pools has %s)", v.LocalAddressPool, nameList(sortedKeys(c.LocalAddressPools)))
			}
		} else if v.LocalAddressPool != "" {
			errs.Add(cfgerr.Join(vp, "local_address_pool"), "only applies to mode fullnat, not %s", v.Mode)
		}
		if vipErr == nil && vip.Is6() && (v.Mode == ModeFullNAT || (portErr == nil && from != to)) {
			errs.Add(cfgerr.Join(vp, "vip"), "IPv6 is not supported yet for fullnat or port ranges")
		}
		if portErr == nil && (from != to || v.Mode == ModeFullNAT) {
			m := v.Mark()
			if j, dup := marks[m]; dup {
				errs.Add(cfgerr.Join(vp, "fwmark"), "firewall mark %#x is already used by virtual_servers[%d]; set fwmark explicitly", m, j)
			}
			marks[m] = i
		} else if v.FWMark != 0 {
			errs.Add(cfgerr.Join(vp, "fwmark"), "only applies to port ranges and fullnat")
		}
		if vipErr == nil && portErr == nil {
			for _, o := range claims {
				if o.vip == vip && o.proto == v.Protocol && from <= o.to && o.from <= to {
					errs.Add(cfgerr.Join(vp, "port"), "%s %s port %s overlaps virtual_servers[%d] (%s)", v.Protocol, vip, v.Port, o.idx, c.VirtualServers[o.idx].Name)
				}
			}
			claims = append(claims, claim{i, vip, v.Protocol, from, to})
		}

		if v.Pool == "" {
			errs.Add(cfgerr.Join(vp, "pool"), "missing: name an entry of pools")
			continue
		}
		pool, ok := c.Pools[v.Pool]
		if !ok || pool == nil {
			errs.Add(cfgerr.Join(vp, "pool"), "unknown pool %q (pools has %s)", v.Pool, nameList(sortedKeys(c.Pools)))
			continue
		}
		for j, m := range pool.Members {
			a, err := netip.ParseAddr(m.Address)
			if err != nil {
				continue // reported under pools
			}
			mp := cfgerr.Index(cfgerr.Join(cfgerr.Join("pools", v.Pool), "members"), j)
			switch v.Mode {
			case ModeNAT:
				if !containedIn(a, direct) {
					errs.Add(cfgerr.Join(vp, "mode"), "nat: member %s (%s) is not on a directly connected Internal subnet (%s), so its replies cannot be routed back through the appliance; use fullnat", a, mp, prefixList(direct))
				}
			case ModeDR:
				if !containedIn(a, direct) {
					errs.Add(cfgerr.Join(vp, "mode"), "dr: member %s (%s) must be on a directly connected Internal subnet (%s)", a, mp, prefixList(direct))
				}
			}
			if (v.Mode == ModeDR || v.Mode == ModeTUN) && m.Port != 0 && portErr == nil && (from != to || m.Port != int(from)) {
				errs.Add(cfgerr.Join(vp, "mode"), "%s cannot change the destination port: %s has port %d, the VS %s (leave the member port 0)", v.Mode, mp, m.Port, v.Port)
			}
			if portErr == nil && from != to && m.Port != 0 {
				errs.Add(cfgerr.Join(vp, "port"), "a port range keeps the client's port: %s must not set a port", mp)
			}
			if vipErr == nil && a.Is4() != vip.Is4() {
				errs.Add(cfgerr.Join(vp, "vip"), "VIP %s and member %s (%s) are of different address families", vip, a, mp)
			}
		}
	}
	for name, d := range map[string]time.Duration{"tcp": c.IPVSTimeouts.TCP, "tcpfin": c.IPVSTimeouts.TCPFin, "udp": c.IPVSTimeouts.UDP} {
		if d < 0 || d%time.Second != 0 || d > 30*24*time.Hour {
			errs.Add(cfgerr.Join("ipvs_timeouts", name), "%s is out of range (whole seconds up to 720h)", d)
		}
	}
	c.validateFloatingOwnership(errs)
	c.validateMonitorPorts(errs)
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
			g := External
			if a.Group == "internal" {
				g = Internal
			}
			floating[g][a.Addr.Unmap()] = true
		}
	}
	for i, v := range c.VirtualServers {
		vip, err := netip.ParseAddr(v.VIP)
		if err != nil {
			continue // reported above
		}
		g := External
		if v.Internal {
			g = Internal
		}
		if !floating[g][vip.Unmap()] {
			errs.Add(cfgerr.Join(cfgerr.Index("virtual_servers", i), "vip"), "%s is not a virtual address of the %s group in any vrrp instance; with vrrp on, vrrpd owns VIPs, so this VIP would never be announced (add it to a vrrp instance's %s list)", vip, g, g)
		}
	}
	reported := map[string]bool{}
	for _, r := range c.SNAT.Rules {
		p := c.SNAT.IPools[r.IPool]
		if p == nil || reported[r.IPool] {
			continue
		}
		g := Group(r.Out)
		if g != Internal && g != External {
			continue // an interface outside the NIC groups: vrrp cannot float it either way
		}
		f, l, err := p.Range()
		if err != nil {
			continue
		}
		var missing []string
		for a := f; ; a = a.Next() {
			if !floating[g][a] {
				missing = append(missing, a.String())
			}
			if a == l {
				break
			}
		}
		if len(missing) > 0 {
			reported[r.IPool] = true
			errs.Add(cfgerr.Join(cfgerr.Join("snat.ipools", r.IPool), "addresses"), "%s: not virtual addresses of the %s group in any vrrp instance; with vrrp on, vrrpd owns SNAT addresses, so these would never be announced (add them to a vrrp instance's %s list)", strings.Join(missing, ", "), g, g)
		}
	}
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

// PoolCheckPort is the port health checks of pool members with port 0 use
// when the monitor sets none: the port of the first single-port virtual
// server balancing over the pool.
func (c *Config) PoolCheckPort(pool string) (uint16, bool) {
	for i := range c.VirtualServers {
		v := &c.VirtualServers[i]
		if v.Pool != pool {
			continue
		}
		if f, t, err := v.Ports(); err == nil && f == t {
			return f, true
		}
	}
	return 0, false
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

// LocalAddresses lists every address of the local address pools that a
// virtual server uses. The appliance must own them on the Internal bond
// (netsetup adds them) so members' replies to FullNAT connections reach it.
func (c *Config) LocalAddresses() []netip.Addr {
	used := map[string]bool{}
	for _, v := range c.VirtualServers {
		if v.Mode == ModeFullNAT && v.LocalAddressPool != "" {
			used[v.LocalAddressPool] = true
		}
	}
	return poolAddrs(c.LocalAddressPools, used)
}

// SNATAddresses lists every address of the SNAT IPools a rule uses. The
// appliance must own them on the rule's out interface (the External bond,
// floating with VRRP like the VIPs) so replies from the outside reach it.
func (c *Config) SNATAddresses() []netip.Addr {
	used := map[string]bool{}
	for _, r := range c.SNAT.Rules {
		used[r.IPool] = true
	}
	return poolAddrs(c.SNAT.IPools, used)
}

func poolAddrs(pools map[string]*AddressPool, used map[string]bool) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, name := range sortedKeys(pools) {
		p := pools[name]
		if !used[name] || p == nil {
			continue
		}
		f, l, err := p.Range()
		if err != nil {
			continue
		}
		for a := f; ; a = a.Next() {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
			if a == l {
				break
			}
		}
	}
	return out
}
