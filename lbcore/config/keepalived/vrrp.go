package keepalived

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

type kAddr struct {
	text   string
	prefix netip.Prefix
	dev    string
	node   *Node
}

type kInstance struct {
	node         *Node
	name         string
	vrid         int
	priority     int
	advert       int // centiseconds; 0: keepalived's default
	iface        string
	nopreempt    bool
	preemptDelay time.Duration
	version      int
	addrs        []kAddr
	peers        []*Node
	tracks       []*Node
	noPrimary    bool // dont_track_primary
	used         bool
}

func (c *converter) vrrpInstance(n *Node) {
	in := &kInstance{node: n, priority: kaPriority}
	if len(n.Args) > 0 {
		in.name = n.Args[0]
	}
	ctx := "vrrp_instance " + in.name + ": "
	for _, d := range n.Children {
		d.read = true
		switch d.Key {
		case "virtual_router_id":
			if v, err := intArg(d); err == nil && v >= 1 && v <= 255 {
				in.vrid = v
			} else {
				c.note(d, "%svirtual_router_id %s: not 1..255", ctx, strings.Join(d.Args, " "))
			}
		case "priority":
			if v, err := intArg(d); err == nil && v >= 1 && v <= 255 {
				in.priority = v
			} else {
				c.note(d, "%spriority %s: not 1..255; 100 used", ctx, strings.Join(d.Args, " "))
			}
		case "advert_int":
			if v, err := secondsArg(d); err == nil && v >= 10*time.Millisecond && v <= 40950*time.Millisecond {
				in.advert = int(v / (10 * time.Millisecond))
			} else {
				c.note(d, "%sadvert_int %s: not 0.01..40.95 seconds; keepalived's 1 s used", ctx, strings.Join(d.Args, " "))
			}
		case "interface":
			if len(d.Args) == 1 {
				in.iface = d.Args[0]
			}
			c.note(d, "%sinterface %s: Fulcrum sends adverts on the Failover bond (the addresses still go on their own group's bond)", ctx, strings.Join(d.Args, " "))
		case "state":
			c.note(d, "%sstate %s: not converted: Fulcrum starts every node as backup and elects by priority", ctx, strings.Join(d.Args, " "))
		case "nopreempt":
			in.nopreempt = true
		case "preempt":
		case "preempt_delay":
			if v, err := secondsArg(d); err == nil && v <= time.Hour {
				in.preemptDelay = v
			} else {
				c.note(d, "%spreempt_delay %s: not 0..3600 s", ctx, strings.Join(d.Args, " "))
			}
		case "version":
			if v, err := intArg(d); err == nil && (v == 2 || v == 3) {
				in.version = v
			} else {
				c.note(d, "%sversion %s: not 2 or 3", ctx, strings.Join(d.Args, " "))
			}
		case "virtual_ipaddress", "virtual_ipaddress_excluded":
			for _, a := range d.Children {
				a.read = true
				c.vrrpAddress(in, a, ctx)
			}
		case "unicast_peer":
			in.peers = append(in.peers, d.Children...)
		case "track_interface":
			in.tracks = append(in.tracks, d.Children...)
		case "dont_track_primary":
			in.noPrimary = true
		default:
			c.unsupportedNote(d, ctx)
		}
	}
	if in.vrid == 0 {
		c.note(n, "%sno valid virtual_router_id; instance not converted", ctx)
		return
	}
	c.instances = append(c.instances, in)
}

func (c *converter) vrrpAddress(in *kInstance, a *Node, ctx string) {
	p, err := netip.ParsePrefix(a.Key)
	text := a.Key
	if err != nil {
		ad, aerr := netip.ParseAddr(a.Key)
		if aerr != nil || ad.Zone() != "" {
			c.note(a, "%svirtual address %s: not an address; not converted", ctx, a.Key)
			return
		}
		p = netip.PrefixFrom(ad, ad.BitLen())
	}
	ka := kAddr{text: text, prefix: p, node: a}
	for i := 0; i < len(a.Args); i++ {
		switch a.Args[i] {
		case "dev":
			if i+1 < len(a.Args) {
				ka.dev = a.Args[i+1]
				i++
			}
		case "label", "scope", "brd", "broadcast", "preferred_lft", "track_group":
			c.note(a, "%svirtual address %s: option %s not converted (Fulcrum adds the address to its group's bond)", ctx, a.Key, a.Args[i])
			i++
		default:
			c.note(a, "%svirtual address %s: option %s not converted", ctx, a.Key, a.Args[i])
		}
	}
	in.addrs = append(in.addrs, ka)
}

// groupOf decides whether a floating address belongs on the internal or the
// external bond: the base config's subnets, then the interface it was on,
// then whether it is a virtual server's VIP.
func (c *converter) groupOf(a kAddr, iface string) (string, bool) {
	if c.base != nil {
		for _, g := range []string{"internal", "external", "failover"} {
			for _, s := range c.base.nets[g] {
				if s.Contains(a.prefix.Addr()) {
					return g, true
				}
			}
		}
	}
	for _, dev := range []string{a.dev, iface} {
		if g, ok := c.ifGroup[strings.ToLower(dev)]; ok && dev != "" {
			return g, true
		}
	}
	if c.vips[a.prefix.Addr()] {
		return "external", true
	}
	return "", false
}

// vrrpSection builds the vrrp section: one Fulcrum instance per sync group
// (its addresses move together, as in keepalived) and per instance outside
// any sync group.
func (c *converter) vrrpSection() *yaml.Node {
	if len(c.instances) == 0 {
		for _, g := range c.syncGroups {
			c.note(g, "vrrp_sync_group %s: no vrrp_instance to group; not converted", strings.Join(g.Args, " "))
		}
		return nil
	}
	groups, groupNames := c.instanceGroups()
	c.learnIfGroups()
	version := c.vrrpVersionUsed()

	sec := ymap()
	sec.HeadComment = "VRRP from keepalived. Version and interval as keepalived ran them, so a\nkeepalived peer interoperates; once both nodes run Fulcrum, version 3 with\nFulcrum's 200 ms adverts fails over in under a second."
	yset(sec, "version", yint(version))
	first := c.instances[0]
	yset(sec, "priority", yint(first.priority))
	advert := first.advert
	if advert == 0 {
		advert = kaAdvert
	}
	if version == 2 && advert%100 != 0 {
		c.note(first.node, "vrrp_instance %s: advert_int %d cs is not whole seconds, which VRRP version 2 needs; rounded up", first.name, advert)
		advert = (advert + 99) / 100 * 100
	}
	yset(sec, "advert_interval", yint(advert))
	c.preemption(sec)
	peers := c.unicastPeers()
	if peers != nil {
		yset(sec, "unicast_peers", peers)
	}
	if bp := c.basePeers(); bp != nil {
		yset(sec, "peers", bp)
	} else if peers == nil {
		c.note(first.node, "keepalived accepted adverts from any host (multicast, no unicast_peer); Fulcrum requires the other node's failover address in vrrp.peers: add it (or put vrrp.peers in the base config)")
	}
	if c.garp != nil {
		yset(sec, "garp", yflow(c.garp))
	}
	if tr := c.tracks(); tr != nil {
		yset(sec, "track", tr)
	}
	insts := yseq()
	for i, members := range groups {
		insts.Content = append(insts.Content, c.instanceNode(members, groupNames[i], advert, version))
	}
	yset(sec, "instances", insts)
	c.nInstances = len(groups)
	return sec
}

// instanceGroups groups the instances by vrrp_sync_group; an instance in
// no sync group is a group of its own. The names are the groups' (or the
// lone instance's).
func (c *converter) instanceGroups() ([][]*kInstance, []string) {
	byName := map[string]*kInstance{}
	for _, in := range c.instances {
		byName[in.name] = in
	}
	var groups [][]*kInstance
	var groupNames []string
	for _, g := range c.syncGroups {
		name := strings.Join(g.Args, " ")
		var members []*kInstance
		for _, d := range g.Children {
			d.read = true
			if d.Key != "group" {
				c.unsupportedNote(d, "vrrp_sync_group "+name+": ")
				continue
			}
			for _, m := range d.Children {
				m.read = true
				in, ok := byName[m.Key]
				switch {
				case !ok:
					c.note(m, "vrrp_sync_group %s: no vrrp_instance %s", name, m.Key)
				case in.used:
					c.note(m, "vrrp_sync_group %s: vrrp_instance %s is already in another sync group; left there", name, m.Key)
				default:
					in.used = true
					members = append(members, in)
				}
			}
		}
		if len(members) > 0 {
			groups = append(groups, members)
			groupNames = append(groupNames, name)
		}
	}
	for _, in := range c.instances {
		if !in.used {
			groups = append(groups, []*kInstance{in})
			groupNames = append(groupNames, in.name)
		}
	}
	return groups, groupNames
}

// learnIfGroups learns which interface carries which group from addresses
// placed by the base config or by being a VIP, so the others on that
// interface (and track_interface) follow.
func (c *converter) learnIfGroups() {
	for _, in := range c.instances {
		for _, a := range in.addrs {
			if g, ok := c.groupOf(a, in.iface); ok && g != "failover" {
				for _, dev := range []string{a.dev, in.iface} {
					if _, known := c.ifGroup[strings.ToLower(dev)]; dev != "" && !known {
						c.ifGroup[strings.ToLower(dev)] = g
					}
				}
			}
		}
	}
}

// vrrpVersionUsed is the one VRRP version for every instance: the
// configured (or keepalived's default) one, 3 if any address is IPv6.
func (c *converter) vrrpVersionUsed() int {
	version := c.vrrpVersion
	if version == 0 {
		version = kaVRRPVersion
	}
	v6 := false
	for _, in := range c.instances {
		if in.version != 0 && in.version != version {
			c.note(in.node, "vrrp_instance %s: version %d differs from the others'; Fulcrum uses one version (%d) for every instance", in.name, in.version, version)
		}
		for _, a := range in.addrs {
			if a.prefix.Addr().Is6() {
				v6 = true
			}
		}
	}
	if version == 2 && v6 {
		version = 3
		c.note(c.instances[0].node, "IPv6 virtual addresses need VRRP version 3; version 3 used for every instance (keepalived does the same for IPv6 instances)")
	}
	return version
}

// preemption sets the node-wide nopreempt and preempt_delay: nopreempt if
// any instance has it, else the longest preempt_delay.
func (c *converter) preemption(sec *yaml.Node) {
	nopreempt, delay := false, time.Duration(0)
	for _, in := range c.instances {
		if in.nopreempt {
			nopreempt = true
		}
		if in.preemptDelay > delay {
			delay = in.preemptDelay
		}
	}
	if nopreempt {
		for _, in := range c.instances {
			if !in.nopreempt {
				c.note(in.node, "vrrp_instance %s: preempts, but another instance has nopreempt; Fulcrum sets preemption for the node, and nopreempt is used", in.name)
			}
		}
		yset(sec, "nopreempt", ybool(true))
		if delay > 0 {
			c.note(c.instances[0].node, "preempt_delay has no effect with nopreempt; not converted")
			delay = 0
		}
	}
	if delay > 0 {
		yset(sec, "preempt_delay", ystr(delay.String()))
	}
}

// instanceNode is the Fulcrum instance of one group of keepalived
// instances (led by the first), carrying all their addresses.
func (c *converter) instanceNode(members []*kInstance, groupName string, advert, version int) *yaml.Node {
	lead := members[0]
	n := ymap()
	if len(members) > 1 {
		names := make([]string, len(members))
		for j, m := range members {
			names[j] = m.name
		}
		n.HeadComment = fmt.Sprintf("vrrp_sync_group %s (%s): one instance, so the addresses move together", groupName, strings.Join(names, ", "))
		for _, m := range members[1:] {
			c.note(m.node, "vrrp_instance %s (virtual_router_id %d): merged into %s's instance (virtual_router_id %d): a Fulcrum instance carries the addresses of a whole sync group", m.name, m.vrid, lead.name, lead.vrid)
			if m.priority != lead.priority {
				c.note(m.node, "vrrp_instance %s: priority %d differs from %s's %d; the merged instance uses %d", m.name, m.priority, lead.name, lead.priority, lead.priority)
			}
		}
	} else {
		n.HeadComment = fmt.Sprintf("%s vrrp_instance %s", lead.node.Pos(), lead.name)
	}
	yset(n, "name", ystr(c.instanceName(groupName)))
	yset(n, "vrid", yint(lead.vrid))
	if lead.priority != c.instances[0].priority {
		yset(n, "priority", yint(lead.priority))
	}
	if lead.advert != 0 && lead.advert != advert && (version == 3 || lead.advert%100 == 0) {
		yset(n, "advert_interval", yint(lead.advert))
	}
	internal, external := ystrs(nil), ystrs(nil)
	for _, m := range members {
		for _, a := range m.addrs {
			g, ok := c.groupOf(a, m.iface)
			switch {
			case !ok:
				g = "external"
				c.note(a.node, "vrrp_instance %s: %s is not in a subnet of the base config and not a VIP; placed on external as a guess, check it", m.name, a.text)
			case g == "failover":
				c.note(a.node, "vrrp_instance %s: %s is on the Failover subnet; Fulcrum floats addresses on the internal and external bonds only; not converted", m.name, a.text)
				continue
			}
			if g == "internal" {
				internal.Content = append(internal.Content, ystr(a.text))
			} else {
				external.Content = append(external.Content, ystr(a.text))
			}
		}
	}
	if len(internal.Content) > 0 {
		yset(n, "internal", internal)
	}
	if len(external.Content) > 0 {
		yset(n, "external", external)
	}
	return n
}

func (c *converter) instanceName(s string) string {
	s = strings.Trim(nameCharRE.ReplaceAllString(s, "-"), "-")
	if s == "" {
		s = "vrrp"
	}
	if len(s) > 32 {
		s = s[:32]
	}
	return s
}

func (c *converter) unicastPeers() *yaml.Node {
	seen := map[netip.Addr]bool{}
	out := ystrs(nil)
	for _, in := range c.instances {
		for _, p := range in.peers {
			p.read = true
			a, err := netip.ParseAddr(p.Key)
			if err != nil {
				c.note(p, "vrrp_instance %s: unicast_peer %s is not an address; not converted", in.name, p.Key)
				continue
			}
			if seen[a] {
				continue
			}
			seen[a] = true
			if c.base != nil && len(c.base.nets["failover"]) > 0 {
				on := false
				for _, s := range c.base.nets["failover"] {
					on = on || s.Contains(a)
				}
				if !on {
					c.note(p, "vrrp_instance %s: unicast_peer %s is not on the Failover subnet, where Fulcrum sends adverts; not converted (list the peer's Failover address in vrrp.unicast_peers)", in.name, a)
					continue
				}
			}
			out.Content = append(out.Content, ystr(a.String()))
		}
	}
	if len(out.Content) == 0 {
		return nil
	}
	return out
}

// tracks converts track_interface: an interface of the internal or
// external group becomes a tracked bond.
func (c *converter) tracks() *yaml.Node {
	seen := map[string]bool{}
	out := yseq()
	// keepalived faults an instance when its own interface goes down
	// (unless dont_track_primary): the group of that interface is tracked
	// with action fault.
	for _, in := range c.instances {
		g, ok := c.ifGroup[strings.ToLower(in.iface)]
		if in.noPrimary || !ok || g == "failover" || seen[g] {
			continue
		}
		seen[g] = true
		e := yflow(ymap())
		yset(e, "group", ystr(g))
		yset(e, "action", ystr("fault"))
		out.Content = append(out.Content, e)
	}
	for _, in := range c.instances {
		for _, t := range in.tracks {
			t.read = true
			g, ok := c.ifGroup[strings.ToLower(t.Key)]
			if !ok || g == "failover" {
				c.note(t, "vrrp_instance %s: track_interface %s: not an interface of the internal or external group; not converted", in.name, t.Key)
				continue
			}
			if seen[g] {
				if len(t.Args) > 0 {
					c.note(t, "vrrp_instance %s: track_interface %s %s: the %s group is already tracked (an instance's own interface faults it, as in keepalived); not converted", in.name, t.Key, strings.Join(t.Args, " "), g)
				}
				continue
			}
			seen[g] = true
			e := yflow(ymap())
			yset(e, "group", ystr(g))
			weight := 0
			if len(t.Args) == 2 && t.Args[0] == "weight" {
				w, err := strconv.Atoi(t.Args[1])
				if err != nil || w < -254 || w > 254 {
					c.note(t, "vrrp_instance %s: track_interface %s: weight %s is not -254..254; the bond's loss faults the node instead", in.name, t.Key, t.Args[1])
				} else {
					weight = w
				}
			} else if len(t.Args) > 0 {
				c.note(t, "vrrp_instance %s: track_interface %s: %s not converted", in.name, t.Key, strings.Join(t.Args, " "))
			}
			switch {
			case weight == 0:
				yset(e, "action", ystr("fault"))
			case weight < 0:
				yset(e, "action", ystr("decrement"))
				yset(e, "weight", yint(-weight))
			default:
				c.note(t, "vrrp_instance %s: track_interface %s weight %d: keepalived adds %d while the link is up, Fulcrum subtracts %d while the bond is down; compare the two nodes' priorities with that in mind", in.name, t.Key, weight, weight, weight)
				yset(e, "action", ystr("decrement"))
				yset(e, "weight", yint(weight))
			}
			out.Content = append(out.Content, e)
		}
	}
	if len(out.Content) == 0 {
		return nil
	}
	return out
}

// basePeers returns the base config's vrrp.peers (the other node's failover
// address), which the imported vrrp section keeps.
func (c *converter) basePeers() *yaml.Node {
	if c.base == nil {
		return nil
	}
	p := yget(yget(c.base.doc, "vrrp"), "peers")
	if p == nil || p.Kind != yaml.SequenceNode || len(p.Content) == 0 {
		return nil
	}
	return p
}
