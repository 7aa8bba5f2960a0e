package config

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"
	"time"
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

// Defaults from the seed.
const (
	DefaultScheduler          Scheduler = "wrr"
	DefaultPersistenceTimeout           = 600 * time.Second
	DefaultTCPTimeout                   = 90 * time.Second
	DefaultMemberWeight                 = 1
)

// VirtualServer is one VIP:port (or port range) balanced over a pool.
type VirtualServer struct {
	Name string `yaml:"name"`
	VIP  IP     `yaml:"vip"`
	// Port is one port ("80") or an inclusive range ("8000-8010"); a range
	// becomes a firewall-mark service.
	Port     PortRange `yaml:"port"`
	Protocol Protocol  `yaml:"protocol"` // tcp (default) or udp
	Mode     Mode      `yaml:"mode"`     // nat (default), fullnat, dr, tun
	// Scheduler is an IPVS scheduler name; default wrr.
	Scheduler   Scheduler    `yaml:"scheduler"`
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
	// HTTP holds the L7 settings of mode http and https (see l7.go).
	HTTP *HTTPOptions `yaml:"http"`
}

// Persistence is L4 (source address) persistence.
type Persistence struct {
	Enabled *bool    `yaml:"enabled"`
	Timeout Duration `yaml:"timeout"`
	// Netmask groups clients: "255.255.255.0", "/24" or "24" (IPv4), a
	// prefix length for IPv6. Default: each client address on its own.
	Netmask Netmask `yaml:"netmask"`
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
	SorryServer *AddrPort `yaml:"sorry_server"`
	// PanicThreshold, like Envoy's panic threshold: when more than this
	// share of the pool's enabled members fail their checks at once, the
	// checks are not trusted (a loaded checker or path fails them all
	// together) and every enabled member keeps serving at its weight. Unset:
	// DefaultPanicThreshold, or off for a pool with a sorry server (that is
	// the operator's answer to a failed pool); 0% turns it off.
	PanicThreshold *Percent `yaml:"panic_threshold"`
	// SlowStart (off when absent or 0s): a member that comes back up, is
	// added or is re-enabled ramps linearly from a tenth of its weight to
	// its weight over this time, in 1 s steps, so a cold cache or JVM is not
	// flooded with new connections. Members up when lbd starts do not ramp.
	SlowStart Duration `yaml:"slow_start"`
}

// MaxSlowStart is the longest slow_start a pool may set.
const MaxSlowStart = time.Hour

// DefaultPanicThreshold is a pool's panic threshold when the config sets none.
const DefaultPanicThreshold Percent = 50

// Panic returns the pool's panic threshold (0: off).
func (p *Pool) Panic() Percent {
	if p.PanicThreshold != nil {
		return *p.PanicThreshold
	}
	if p.SorryServer != nil {
		return 0
	}
	return DefaultPanicThreshold
}

// Member is one real server.
type Member struct {
	Address IP `yaml:"address"`
	// Port is the member's port; 0 means the port the client connected to.
	Port   Port `yaml:"port"`
	Weight *int `yaml:"weight"`
}

// AddressPool is a set of IPv4 addresses given as single addresses or
// ranges ("198.51.100.201-198.51.100.209" or "198.51.100.201-209"). The
// addresses must form one contiguous range.
type AddressPool struct {
	Addresses []AddrRange `yaml:"addresses"`
}

// SNAT is the all-in-one source NAT for members' own outbound traffic.
type SNAT struct {
	IPools map[string]*AddressPool `yaml:"ipools"`
	Rules  []SNATRule              `yaml:"rules"`
}

// SNATRule chooses an IPool for traffic from Source leaving through Out.
type SNATRule struct {
	Source Prefix `yaml:"source"` // CIDR
	// Out is a NIC group name (default external) or an interface name.
	Out   string `yaml:"out"`
	IPool string `yaml:"ipool"`
}

// IPVSTimeouts are the global IPVS connection timeouts.
type IPVSTimeouts struct {
	TCP    Duration `yaml:"tcp"`    // ESTABLISHED idle; default 90s
	TCPFin Duration `yaml:"tcpfin"` // 0: kernel default
	UDP    Duration `yaml:"udp"`    // 0: kernel default
}

// PersistenceOn reports whether persistence is enabled (after defaults).
func (v *VirtualServer) PersistenceOn() bool {
	return v.Persistence != nil && v.Persistence.Enabled != nil && *v.Persistence.Enabled
}

// IsRange reports whether the VS covers more than one port (a fwmark service).
func (v *VirtualServer) IsRange() bool { return v.Port.IsRange() }

// NeedsMark reports whether the VS's packets get a firewall mark: port
// ranges (the mark is the IPVS fwmark service) and FullNAT (the mark selects
// the SNAT to the local address pool in postrouting; IPVS falls back to its
// address/port lookup when no fwmark service has the mark).
func (v *VirtualServer) NeedsMark() bool {
	return !v.Mode.L7() && (v.IsRange() || v.Mode == ModeFullNAT)
}

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

// Range returns the first and last address of the pool, which validation
// guarantees is one contiguous IPv4 range.
func (p *AddressPool) Range() (AddrRange, error) {
	var all []netip.Addr
	for _, r := range p.Addresses {
		for a := r.First; ; a = a.Next() {
			all = append(all, a)
			if a == r.Last || len(all) > 1<<16 {
				break
			}
		}
	}
	if len(all) == 0 {
		return AddrRange{}, fmt.Errorf("no addresses")
	}
	if len(all) > 1<<16 {
		return AddrRange{}, fmt.Errorf("more than 65536 addresses")
	}
	slices.SortFunc(all, func(a, b netip.Addr) int { return a.Compare(b) })
	for i := 1; i < len(all); i++ {
		if all[i] == all[i-1] {
			return AddrRange{}, fmt.Errorf("address %s is listed twice", all[i])
		}
		if all[i] != all[i-1].Next() {
			return AddrRange{}, fmt.Errorf("addresses must form one contiguous range; %s does not follow %s", all[i], all[i-1])
		}
	}
	for _, a := range all {
		if !a.Is4() {
			return AddrRange{}, fmt.Errorf("%s: IPv6 is not supported here yet", a)
		}
	}
	return AddrRange{all[0], all[len(all)-1]}, nil
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
			v.Protocol = TCP
		}
		if v.Mode == "" {
			v.Mode = ModeNAT
			if v.Internal {
				v.Mode = ModeFullNAT
			}
		}
		if v.Scheduler == "" {
			v.Scheduler = DefaultScheduler
		}
		if v.Mode.L7() {
			applyHTTPDefaults(v)
			continue // L4 persistence does not apply; the cookie does
		}
		if v.Persistence == nil {
			v.Persistence = &Persistence{}
		}
		if v.Persistence.Enabled == nil {
			on := true
			v.Persistence.Enabled = &on
		}
		if v.Persistence.Timeout == 0 {
			v.Persistence.Timeout = Duration(DefaultPersistenceTimeout)
		}
	}
	for i := range c.SNAT.Rules {
		if c.SNAT.Rules[i].Out == "" {
			c.SNAT.Rules[i].Out = string(External)
		}
	}
	if c.IPVSTimeouts.TCP == 0 {
		c.IPVSTimeouts.TCP = Duration(DefaultTCPTimeout)
	}
}

// PoolCheckPort is the port health checks of pool members with port 0 use
// when the monitor sets none: the port of the first single-port virtual
// server balancing over the pool.
func (c *Config) PoolCheckPort(pool string) (uint16, bool) {
	for i := range c.VirtualServers {
		v := &c.VirtualServers[i]
		if v.Pool == pool && !v.Port.IsRange() {
			return v.Port.From, true
		}
	}
	return 0, false
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

func poolAddrs(pools map[string]*AddressPool, used map[string]bool) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, name := range sortedKeys(pools) {
		p := pools[name]
		if !used[name] || p == nil {
			continue
		}
		r, err := p.Range()
		if err != nil {
			continue
		}
		for a := r.First; ; a = a.Next() {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
			if a == r.Last {
				break
			}
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// MemberRef names one pool member: its pool, its address and its configured
// port (0: the port the client connected to). It is the one spelling of a
// member for health checks, operator overrides, status and the API.
type MemberRef struct {
	Pool string
	Addr netip.Addr
	Port uint16
}

// Ref is the member's reference within pool.
func (m *Member) Ref(pool string) MemberRef {
	return MemberRef{Pool: pool, Addr: m.Address.Addr, Port: uint16(m.Port)}
}

// Endpoint is the member's address and configured port.
func (r MemberRef) Endpoint() netip.AddrPort { return netip.AddrPortFrom(r.Addr, r.Port) }

// String is "pool/addr:port" ("pool/198.51.100.11:0" for a member taking
// the VS port; IPv6 addresses in brackets).
func (r MemberRef) String() string { return r.Pool + "/" + r.Endpoint().String() }

// Label is the member as an operator writes it: "addr" or "addr:port".
func (r MemberRef) Label() string {
	if r.Port == 0 {
		return r.Addr.String()
	}
	return r.Endpoint().String()
}

// FindMember resolves an operator's spelling of a member of pool ("addr",
// "addr:port" or "[v6]:port") to its reference, or says what the pool has.
func (c *Config) FindMember(pool, member string) (MemberRef, error) {
	p := c.Pools[pool]
	if p == nil {
		return MemberRef{}, fmt.Errorf("no pool %q (pools: %s)", pool, nameList(sortedKeys(c.Pools)))
	}
	var labels []string
	for i := range p.Members {
		r := p.Members[i].Ref(pool)
		if member == r.Label() || member == r.Endpoint().String() || member == r.Addr.String() {
			return r, nil
		}
		labels = append(labels, r.Label())
	}
	return MemberRef{}, fmt.Errorf("pool %s has no member %q (members: %s)", pool, member, nameList(labels))
}
