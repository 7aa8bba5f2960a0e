package config

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
)

// Group names the three NIC groups of the appliance.
type Group string

// The appliance's NIC groups.
const (
	Failover Group = "failover"
	Internal Group = "internal"
	External Group = "external"
)

// Groups lists the NIC groups in bring-up order.
var Groups = []Group{Failover, Internal, External}

// Network is the appliance's link and address configuration.
type Network struct {
	Failover   BondGroup         `yaml:"failover"`
	Internal   BondGroup         `yaml:"internal"`
	External   BondGroup         `yaml:"external"`
	Management *Management       `yaml:"management"`
	Routes     []Route           `yaml:"routes"`
	Rules      []Rule            `yaml:"rules"`
	Sysctls    map[string]string `yaml:"sysctls"`
}

// BondGroup is one NIC group: a Linux bond over 1..8 member NICs.
type BondGroup struct {
	// Bond is the bond device name; defaults to the group name.
	Bond string `yaml:"bond"`
	// Members are NICs chosen by interface name ("eth0") or MAC address.
	Members []string `yaml:"members"`
	// Mode is the bonding mode: active-backup, 802.3ad, balance-xor,
	// balance-rr, balance-tlb, balance-alb or broadcast.
	Mode           string `yaml:"mode"`
	XmitHashPolicy string `yaml:"xmit_hash_policy"`
	// MIIMon is the link monitoring interval in milliseconds.
	MIIMon int `yaml:"miimon"`
	// LACPRate is slow or fast (802.3ad only).
	LACPRate string `yaml:"lacp_rate"`
	MTU      int    `yaml:"mtu"`
	// Addresses are this node's own (non-floating) self IPs, in CIDR form.
	Addresses []Prefix `yaml:"addresses"`
}

// Management is the optional out-of-band management NIC.
type Management struct {
	// Interface is a NIC name or MAC address.
	Interface string `yaml:"interface"`
	// DHCP takes the address, router and DNS from a DHCP server (default on
	// when no static address is given).
	DHCP *bool `yaml:"dhcp"`
	// Address is a static CIDR address, used when DHCP is off.
	Address Prefix `yaml:"address"`
	Gateway IP     `yaml:"gateway"`
}

// Route is a static route through one of the NIC groups.
type Route struct {
	To     RoutePrefix `yaml:"to"`  // CIDR, or "default"
	Via    IP          `yaml:"via"` // gateway address
	Group  Group       `yaml:"group"`
	Table  int         `yaml:"table"` // 0 = main
	Metric int         `yaml:"metric"`
}

// Rule is a policy routing rule.
type Rule struct {
	From     Prefix `yaml:"from"`
	To       Prefix `yaml:"to"`
	Table    int    `yaml:"table"`
	Priority int    `yaml:"priority"`
}

// Bond modes accepted in BondGroup.Mode.
var BondModes = []string{"balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"}

// Transmit hash policies accepted in BondGroup.XmitHashPolicy.
var XmitHashPolicies = []string{"layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4", "vlan+srcmac"}

// Group returns the bond group g.
func (n *Network) Group(g Group) *BondGroup {
	switch g {
	case Failover:
		return &n.Failover
	case Internal:
		return &n.Internal
	case External:
		return &n.External
	}
	return nil
}

// DefaultSysctls are applied before the config's own sysctls: forwarding on,
// reverse-path filtering loose (VIPs and asymmetric paths), and the ARP
// settings that keep a node from answering for addresses on other links.
// The conntrack table is sized for a load balancer rather than by the
// kernel's memory heuristic (4096 entries on a small box: a flood of idle
// connections against any admitted port filled it and every new flow,
// VIP traffic included, was dropped); 262144 entries cost at most ~80 MiB.
// IPVS sync resends a connection with traffic every 5 s
// (sync_refresh_period, with sync_period 0 instead of every 50th packet):
// the kernel has no bulk transfer, so this is what brings a returning
// node's table up to date before it preempts, and what keeps the backup's
// copies from expiring while the connection is busy. TCP window tracking
// is liberal, as conntrackd's manual asks of synced nodes: an entry a node
// kept from its own time as master has the sequence window of that time,
// and after a failback and a switchover the flow's packets are far past
// it; strict tracking marks them invalid, NAT skips them and the member
// resets the connection.
func DefaultSysctls() map[string]string {
	return map[string]string{
		"net.ipv4.ip_forward":                       "1",
		"net.ipv6.conf.all.forwarding":              "1",
		"net.ipv4.conf.all.rp_filter":               "2",
		"net.ipv4.conf.default.rp_filter":           "2",
		"net.ipv4.conf.all.arp_ignore":              "1",
		"net.ipv4.conf.all.arp_announce":            "2",
		"net.ipv4.vs.conntrack":                     "1",
		"net.ipv4.vs.expire_nodest_conn":            "1",
		"net.ipv4.vs.expire_quiescent_template":     "1",
		"net.ipv4.vs.sync_refresh_period":           "5",
		"net.ipv4.vs.sync_threshold":                "3 0",
		"net.netfilter.nf_conntrack_max":            "262144",
		"net.netfilter.nf_conntrack_tcp_be_liberal": "1",
	}
}

func (n *Network) applyDefaults() {
	for _, g := range Groups {
		b := n.Group(g)
		if b.Bond == "" {
			b.Bond = string(g)
		}
		if b.Mode == "" {
			if g == Failover {
				b.Mode = "active-backup"
			} else {
				b.Mode = "802.3ad"
			}
		}
		if b.XmitHashPolicy == "" && (b.Mode == "802.3ad" || b.Mode == "balance-xor" || b.Mode == "balance-tlb" || b.Mode == "balance-alb") {
			b.XmitHashPolicy = "layer3+4"
		}
		if b.MIIMon == 0 {
			b.MIIMon = 100
		}
		if b.LACPRate == "" && b.Mode == "802.3ad" {
			b.LACPRate = "fast"
		}
		if b.MTU == 0 {
			b.MTU = 1500
		}
	}
}

var (
	ifnameRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)
)

// IsMAC reports whether a member selector is a MAC address rather than a name.
func IsMAC(s string) bool {
	hw, err := net.ParseMAC(s)
	return err == nil && len(hw) == 6
}

// Validate checks the network section.
func (n *Network) Validate() error {
	var errs cfgerr.List
	seen := netSeen{member: map[string]string{}, bond: map[string]string{}}
	for _, g := range Groups {
		n.Group(g).validate(&errs, g, &seen)
	}
	n.validateManagement(&errs, seen.member)
	for i, r := range n.Routes {
		n.validateRoute(&errs, cfgerr.Index("routes", i), r)
	}
	for i, r := range n.Rules {
		validateRule(&errs, cfgerr.Index("rules", i), r)
	}
	n.validateSysctls(&errs)
	n.validateBondNames(&errs)
	return errs.Err()
}

// netSeen is what the groups already claimed: NICs and bond names.
type netSeen struct {
	member, bond map[string]string
}

func (b *BondGroup) validate(errs *cfgerr.List, g Group, seen *netSeen) {
	p := string(g)
	if !ifnameRE.MatchString(b.Bond) {
		errs.Add(cfgerr.Join(p, "bond"), "%q is not a valid interface name (at most 15 characters)", b.Bond)
	} else if other, dup := seen.bond[b.Bond]; dup {
		errs.Add(cfgerr.Join(p, "bond"), "bond name %q is already used by group %s", b.Bond, other)
	}
	seen.bond[b.Bond] = p
	// The seed: Failover is the two-link heartbeat; one link is accepted
	// (a lab, or a box with few ports) but never more than two.
	min, max := 1, 8
	if g == Failover {
		max = 2
	}
	if len(b.Members) < min || len(b.Members) > max {
		errs.Add(cfgerr.Join(p, "members"), "needs %d to %d member NICs, has %d", min, max, len(b.Members))
	}
	for i, m := range b.Members {
		mp := cfgerr.Index(cfgerr.Join(p, "members"), i)
		key := nicKey(m)
		if !IsMAC(m) && !ifnameRE.MatchString(m) {
			errs.Add(mp, "%q is neither an interface name nor a MAC address", m)
			continue
		}
		if other, dup := seen.member[key]; dup {
			errs.Add(mp, "NIC %q is already a member of %s", m, other)
		}
		seen.member[key] = "network." + mp
	}
	b.validateLink(errs, p)
	// Subnets of different groups: Config.validateSubnets.
	for i, a := range b.Addresses {
		for _, other := range b.Addresses[:i] {
			if other.Masked() == a.Masked() {
				errs.Add(cfgerr.Index(cfgerr.Join(p, "addresses"), i), "subnet %s is already on this group (%s)", a.Masked(), other)
			}
		}
	}
}

// validateLink checks the bonding settings.
func (b *BondGroup) validateLink(errs *cfgerr.List, p string) {
	if !slices.Contains(BondModes, b.Mode) {
		errs.Add(cfgerr.Join(p, "mode"), "unknown bond mode %q (one of %s)", b.Mode, strings.Join(BondModes, ", "))
	}
	if b.XmitHashPolicy != "" && !slices.Contains(XmitHashPolicies, b.XmitHashPolicy) {
		errs.Add(cfgerr.Join(p, "xmit_hash_policy"), "unknown policy %q (one of %s)", b.XmitHashPolicy, strings.Join(XmitHashPolicies, ", "))
	}
	if b.MIIMon < 0 || b.MIIMon > 10000 {
		errs.Add(cfgerr.Join(p, "miimon"), "%d ms is out of range (1..10000)", b.MIIMon)
	}
	if b.LACPRate != "" && b.LACPRate != "slow" && b.LACPRate != "fast" {
		errs.Add(cfgerr.Join(p, "lacp_rate"), "%q must be slow or fast", b.LACPRate)
	}
	if b.LACPRate != "" && b.Mode != "802.3ad" {
		errs.Add(cfgerr.Join(p, "lacp_rate"), "only applies to mode 802.3ad, not %s", b.Mode)
	}
	if b.MTU < 576 || b.MTU > 9216 {
		errs.Add(cfgerr.Join(p, "mtu"), "%d is out of range (576..9216)", b.MTU)
	}
}

func (n *Network) validateManagement(errs *cfgerr.List, seenMember map[string]string) {
	m := n.Management
	if m == nil {
		return
	}
	if m.Interface == "" {
		errs.Add("management.interface", "missing: name the management NIC by name or MAC")
	} else if !IsMAC(m.Interface) && !ifnameRE.MatchString(m.Interface) {
		errs.Add("management.interface", "%q is neither an interface name nor a MAC address", m.Interface)
	} else if other, dup := seenMember[nicKey(m.Interface)]; dup {
		errs.Add("management.interface", "NIC %q is already used as %s", m.Interface, other)
	}
	if m.Address.IsValid() && m.DHCP != nil && *m.DHCP {
		errs.Add("management.dhcp", "dhcp and a static address exclude each other")
	}
}

func (n *Network) validateRoute(errs *cfgerr.List, rp string, r Route) {
	if !r.To.IsValid() {
		errs.Add(cfgerr.Join(rp, "to"), "missing: a CIDR prefix or \"default\"")
	}
	if !r.Via.IsValid() && r.Group == "" {
		errs.Add(rp, "needs a gateway (via) or a group to route through")
	}
	if r.Group != "" && n.Group(r.Group) == nil {
		errs.Add(cfgerr.Join(rp, "group"), "unknown group %q (failover, internal or external)", r.Group)
	}
	if r.Table < 0 || r.Table > 252 && r.Table != 254 {
		errs.Add(cfgerr.Join(rp, "table"), "table %d is out of range (0..252, or 254 for main)", r.Table)
	}
	if r.Metric < 0 {
		errs.Add(cfgerr.Join(rp, "metric"), "must not be negative")
	}
}

func validateRule(errs *cfgerr.List, rp string, r Rule) {
	if !r.From.IsValid() && !r.To.IsValid() {
		errs.Add(rp, "needs from and/or to")
	}
	if r.Table < 1 || r.Table > 252 {
		errs.Add(cfgerr.Join(rp, "table"), "table %d is out of range (1..252)", r.Table)
	}
	if r.Priority < 0 || r.Priority > 32765 {
		errs.Add(cfgerr.Join(rp, "priority"), "priority %d is out of range (0..32765)", r.Priority)
	}
}

// Describe is a one-line summary of a bond group for logs.
func (b *BondGroup) Describe() string {
	addrs := make([]string, len(b.Addresses))
	for i, a := range b.Addresses {
		addrs[i] = a.String()
	}
	return fmt.Sprintf("%s mode=%s members=%s mtu=%d addrs=%s", b.Bond, b.Mode, strings.Join(b.Members, ","), b.MTU, strings.Join(addrs, ","))
}
