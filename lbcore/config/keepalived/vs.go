package keepalived

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// vsTarget is one address and port a keepalived virtual_server answers on.
type vsTarget struct {
	vip  netip.Addr
	port int
	src  *Node
}

// monitor is a health check as Fulcrum can express it.
type monitor struct {
	Type     string
	Port     int
	Source   string
	Interval time.Duration
	Timeout  time.Duration
	Fall     int
	Initial  string
	Path     string
	Host     string
	SNI      string
	Status   string
	Body     string
}

type member struct {
	addr   netip.Addr
	port   int
	weight int
	node   *Node
	mon    *monitor
	monSrc *Node
}

// vsOptions are a virtual_server block's own directives, keepalived's
// defaults filled in.
type vsOptions struct {
	mode, sched, proto string
	persist            *yaml.Node
	netmask            string
	quorum             int
	quorumNode         *Node
	sorry              string
	inhibit, alpha     bool
	host               string
	delayLoop          time.Duration
	connectTimeout     *time.Duration
	retry              int
	members            []*member
}

// virtualServer converts one virtual_server block (one Fulcrum virtual
// server per address and port it covers, sharing one pool).
func (c *converter) virtualServer(n *Node) {
	ctx := "virtual_server " + strings.Join(n.Args, " ") + ": "
	targets := c.vsTargets(n, ctx)
	if len(targets) == 0 {
		n.noted = true // the reason is reported; nothing inside is used
		return
	}
	o := &vsOptions{mode: "nat", sched: "wlc", proto: "tcp", quorum: 1, delayLoop: kaDelayLoop, retry: -1} // keepalived's defaults
	for _, d := range n.Children {
		d.read = true
		if !c.vsDirective(o, d, ctx) {
			n.noted = true
			return
		}
	}
	poolMon := c.vsMonitor(o, ctx)
	if len(o.members) == 0 {
		c.note(n, "%sno real_server; virtual server not converted", ctx)
		return
	}
	first := targets[0]
	name := c.uniqueName(fmt.Sprintf("%s-%s-%d", o.proto, first.vip, first.port))
	c.vsPool(n, o, name, poolMon, first.port, ctx)
	c.vsEntries(n, o, name, targets)
}

// vsDirective reads one directive of a virtual_server block into o; false
// means the whole virtual server cannot be converted (the reason is noted).
func (c *converter) vsDirective(o *vsOptions, d *Node, ctx string) bool {
	args := strings.Join(d.Args, " ")
	switch d.Key {
	case "delay_loop":
		if v, err := secondsArg(d); err == nil && v >= 10*time.Millisecond {
			o.delayLoop = v
		} else {
			c.note(d, "%sdelay_loop %s: not a usable interval; keepalived's 60 s kept", ctx, args)
		}
	case "lb_algo", "lvs_sched":
		if len(d.Args) == 1 && slices.Contains(schedulers, d.Args[0]) {
			o.sched = d.Args[0]
		} else {
			c.note(d, "%s%s %s: not an IPVS scheduler Fulcrum offers (%s); keepalived's default wlc used", ctx, d.Key, args, strings.Join(schedulers, ", "))
		}
	case "lb_kind", "lvs_method":
		if m, ok := map[string]string{"NAT": "nat", "DR": "dr", "TUN": "tun"}[strings.ToUpper(args)]; ok {
			o.mode = m
		} else {
			c.note(d, "%s%s %s: not a forwarding method (NAT, DR or TUN); NAT used", ctx, d.Key, args)
		}
	case "protocol":
		p, ok := map[string]string{"TCP": "tcp", "UDP": "udp"}[strings.ToUpper(args)]
		if !ok {
			c.note(d, "%sprotocol %s: Fulcrum balances TCP and UDP only; virtual server not converted", ctx, args)
			return false
		}
		o.proto = p
	case "persistence_timeout":
		o.persist = c.vsPersistence(d, ctx)
	case "persistence_granularity":
		if len(d.Args) == 1 {
			o.netmask = d.Args[0]
		}
	case "quorum":
		if v, err := intArg(d); err == nil && v >= 0 {
			o.quorum, o.quorumNode = v, d
		} else {
			c.note(d, "%squorum %s: not a whole number", ctx, args)
		}
	case "sorry_server":
		if s := c.sorryServer(d, ctx); s != "" {
			o.sorry = s
		}
	case "virtualhost":
		if len(d.Args) == 1 {
			o.host = d.Args[0]
		}
	case "alpha":
		o.alpha = true
	case "inhibit_on_failure":
		o.inhibit = true
	case "connect_timeout":
		if v, err := secondsArg(d); err == nil {
			o.connectTimeout = &v
		}
	case "retry":
		if v, err := intArg(d); err == nil && v >= 0 {
			o.retry = v
		}
	case "real_server":
		if m := c.realServer(d, ctx); m != nil {
			o.members = append(o.members, m)
		}
	default:
		c.unsupportedNote(d, ctx)
	}
	return true
}

// vsPersistence converts persistence_timeout (keepalived's 360 s without
// an argument or with an unusable one).
func (c *converter) vsPersistence(d *Node, ctx string) *yaml.Node {
	t := kaPersistence
	if len(d.Args) > 0 {
		v, err := secondsArg(d)
		if err != nil || v < time.Second || v > 30*24*time.Hour || v%time.Second != 0 {
			c.note(d, "%spersistence_timeout %s: not whole seconds (1..2592000); keepalived's 360 s used", ctx, strings.Join(d.Args, " "))
		} else {
			t = v
		}
	}
	persist := ymap()
	yset(persist, "enabled", ybool(true))
	yset(persist, "timeout", ystr(t.String()))
	return persist
}

// sorryServer converts "sorry_server ADDRESS PORT"; "" if it is not that.
func (c *converter) sorryServer(d *Node, ctx string) string {
	if len(d.Args) == 2 {
		if a, err := netip.ParseAddr(d.Args[0]); err == nil {
			if p, err := strconv.Atoi(d.Args[1]); err == nil && p > 0 && p < 65536 {
				return netip.AddrPortFrom(a, uint16(p)).String()
			}
		}
	}
	c.note(d, "%ssorry_server %s: not ADDRESS PORT; not converted", ctx, strings.Join(d.Args, " "))
	return ""
}

// vsMonitor fills the members' checks with the virtual server's defaults
// and picks the pool's one monitor (the first member's), noting members
// whose check differs or is missing. nil: no member has a check.
func (c *converter) vsMonitor(o *vsOptions, ctx string) *monitor {
	var poolMon *monitor
	var poolMonSrc *member
	for _, m := range o.members {
		if m.mon == nil {
			continue
		}
		mon := m.mon
		c.monitorDefaults(o, m, ctx)
		if poolMon == nil {
			poolMon, poolMonSrc = mon, m
		} else if *mon != *poolMon {
			c.note(m.monSrc, "%sreal_server %s %d: its check differs from real_server %s %d's; Fulcrum has one monitor per pool, so the first one is used for every member", ctx, m.addr, m.port, poolMonSrc.addr, poolMonSrc.port)
		}
	}
	if poolMon != nil {
		for _, m := range o.members {
			if m.mon == nil {
				c.note(m.node, "%sreal_server %s %d has no check; Fulcrum checks it with the pool's monitor", ctx, m.addr, m.port)
			}
		}
	}
	return poolMon
}

// monitorDefaults completes m's check from the virtual server's
// delay_loop, connect_timeout, retry, virtualhost and alpha.
func (c *converter) monitorDefaults(o *vsOptions, m *member, ctx string) {
	mon := m.mon
	if mon.Interval == 0 {
		mon.Interval = o.delayLoop
	}
	if mon.Timeout == 0 {
		mon.Timeout = kaConnectTimeout
		if o.connectTimeout != nil {
			mon.Timeout = *o.connectTimeout
		}
	}
	if mon.Fall == 0 {
		r := kaRetry
		if o.retry >= 0 {
			r = o.retry
		}
		mon.Fall = r + 1
	}
	if mon.Host == "" && o.host != "" && (mon.Type == "http" || mon.Type == "https") {
		mon.Host = o.host
	}
	if mon.Type == "https" && mon.SNI == "sni" {
		mon.SNI = mon.Host
	} else if mon.SNI == "sni" {
		mon.SNI = ""
	}
	mon.Initial = "up" // keepalived starts real servers in service
	if o.alpha {
		mon.Initial = "down"
	}
	if mon.Timeout >= mon.Interval {
		c.note(m.monSrc, "%sconnect_timeout %s is not shorter than delay_loop %s: Fulcrum needs timeout < interval; timeout set to %s", ctx, mon.Timeout, mon.Interval, mon.Interval/2)
		mon.Timeout = mon.Interval / 2
	}
}

// vsPool emits the pool (and its monitor) of a virtual_server block.
func (c *converter) vsPool(n *Node, o *vsOptions, name string, poolMon *monitor, vsPort int, ctx string) {
	pool := ymap()
	pool.HeadComment = fmt.Sprintf("from %s virtual_server %s", n.Pos(), strings.Join(n.Args, " "))
	if poolMon != nil {
		yset(pool, "monitor", ystr(name))
		yset(c.monitors, name, monitorNode(poolMon))
	}
	if o.inhibit {
		yset(pool, "inhibit", ybool(true))
	}
	if q, ok := c.quorum(o.quorum, o.quorumNode, o.members, ctx); ok && q > 1 {
		yset(pool, "quorum", yint(q))
	}
	if o.sorry != "" {
		yset(pool, "sorry_server", ystr(o.sorry))
	}
	mems := yseq()
	for _, m := range o.members {
		e := yflow(ymap())
		yset(e, "address", ystr(m.addr.String()))
		switch {
		case o.mode == "nat":
			yset(e, "port", yint(m.port))
		case m.port != 0 && m.port != vsPort:
			c.note(m.node, "%sreal_server %s %d: %s cannot change the destination port (the VS port is %d); member port dropped", ctx, m.addr, m.port, strings.ToUpper(o.mode), vsPort)
		}
		if m.weight != 1 {
			yset(e, "weight", yint(m.weight))
		}
		mems.Content = append(mems.Content, e)
	}
	yset(pool, "members", mems)
	yset(c.pools, name, pool)
}

// vsEntries emits one virtual server per target, all on the pool name
// (the first one also named name).
func (c *converter) vsEntries(n *Node, o *vsOptions, name string, targets []vsTarget) {
	for i, t := range targets {
		vsName := name
		if i > 0 {
			vsName = c.uniqueName(fmt.Sprintf("%s-%s-%d", o.proto, t.vip, t.port))
		}
		vs := ymap()
		vs.HeadComment = fmt.Sprintf("%s virtual_server %s", t.src.Pos(), strings.Join(n.Args, " "))
		yset(vs, "name", ystr(vsName))
		yset(vs, "vip", ystr(t.vip.String()))
		yset(vs, "port", ystr(strconv.Itoa(t.port)))
		yset(vs, "protocol", ystr(o.proto))
		yset(vs, "mode", ystr(o.mode))
		yset(vs, "scheduler", ystr(o.sched))
		if o.persist == nil {
			yset(vs, "persistence", yflow(yset(ymap(), "enabled", ybool(false))))
		} else {
			p := yflow(ymap())
			p.Content = append(p.Content, o.persist.Content...)
			if o.netmask != "" {
				yset(p, "netmask", ystr(o.netmask))
			}
			yset(vs, "persistence", p)
		}
		yset(vs, "pool", ystr(name))
		c.virtualServers = append(c.virtualServers, vs)
		c.vips[t.vip] = true
	}
}

// quorum maps keepalived's quorum (the least total weight of live real
// servers) onto Fulcrum's (the least number of healthy members).
func (c *converter) quorum(q int, src *Node, members []*member, ctx string) (int, bool) {
	if src == nil || q <= 1 {
		return 0, true
	}
	w := members[0].weight
	for _, m := range members {
		if m.weight != w {
			c.note(src, "%squorum %d is a total weight and the real servers' weights differ; Fulcrum's quorum counts members, so it is not converted", ctx, q)
			return 0, false
		}
	}
	if w <= 0 {
		c.note(src, "%squorum %d with zero weights cannot be met; not converted", ctx, q)
		return 0, false
	}
	n := (q + w - 1) / w
	if n > len(members) {
		c.note(src, "%squorum %d needs %d members of weight %d but there are %d; not converted", ctx, q, n, w, len(members))
		return 0, false
	}
	return n, true
}

func (c *converter) vsTargets(n *Node, ctx string) []vsTarget {
	switch {
	case len(n.Args) == 2 && n.Args[0] == "fwmark":
		c.note(n, "%sa firewall-mark virtual server is not converted: Fulcrum sets marks itself (give it a VIP with a port range instead)", ctx)
		return nil
	case len(n.Args) == 2 && n.Args[0] == "group":
		g, ok := c.vsgroups[n.Args[1]]
		c.vsgroupUsed[n.Args[1]] = true
		if !ok {
			c.note(n, "%sno virtual_server_group %s; not converted", ctx, n.Args[1])
			return nil
		}
		var out []vsTarget
		for _, e := range g.Children {
			e.read = true
			out = append(out, c.groupEntry(e, "virtual_server_group "+n.Args[1]+": ")...)
		}
		return out
	case len(n.Args) == 2:
		a, err := netip.ParseAddr(n.Args[0])
		p, perr := strconv.Atoi(n.Args[1])
		if err != nil || a.Zone() != "" {
			c.note(n, "%s%q is not an IP address; not converted", ctx, n.Args[0])
			return nil
		}
		if perr != nil || p < 1 || p > 65535 {
			c.note(n, "%sport %s: Fulcrum needs a port 1..65535 (keepalived's port 0 means every port); not converted", ctx, n.Args[1])
			return nil
		}
		return []vsTarget{{vip: a, port: p, src: n}}
	}
	c.note(n, "%snot ADDRESS PORT, fwmark N or group NAME; not converted", ctx)
	return nil
}

// groupEntry reads "ADDRESS PORT", "A.B.C.D-E PORT" or "fwmark N" of a
// virtual_server_group.
func (c *converter) groupEntry(e *Node, ctx string) []vsTarget {
	words := append([]string{e.Key}, e.Args...)
	if words[0] == "fwmark" {
		c.note(e, "%sfwmark %s: Fulcrum sets marks itself; not converted", ctx, strings.Join(e.Args, " "))
		return nil
	}
	if len(words) != 2 {
		c.note(e, "%s%s: not ADDRESS PORT; not converted", ctx, strings.Join(words, " "))
		return nil
	}
	p, err := strconv.Atoi(words[1])
	if err != nil || p < 1 || p > 65535 {
		c.note(e, "%s%s: port %s is not 1..65535; not converted", ctx, strings.Join(words, " "), words[1])
		return nil
	}
	first, lastS, isRange := strings.Cut(words[0], "-")
	a, err := netip.ParseAddr(first)
	if err != nil {
		c.note(e, "%s%s is not an address; not converted", ctx, words[0])
		return nil
	}
	if !isRange {
		return []vsTarget{{vip: a, port: p, src: e}}
	}
	// keepalived's range: the last part of the address counts up to lastS
	// (the last byte for IPv4, the last 16-bit group for IPv6).
	base := 10
	if a.Is6() {
		base = 16
	}
	last, err := strconv.ParseUint(lastS, base, 16)
	if err != nil {
		c.note(e, "%s%s is not an address range; not converted", ctx, words[0])
		return nil
	}
	var out []vsTarget
	for x := a; ; x = x.Next() {
		b := x.AsSlice()
		cur := uint64(b[len(b)-1])
		if a.Is6() {
			cur = uint64(b[len(b)-2])<<8 | cur
		}
		if cur > last || len(out) >= 256 || !x.IsValid() {
			break
		}
		out = append(out, vsTarget{vip: x, port: p, src: e})
		if cur == last {
			break
		}
	}
	if len(out) == 0 {
		c.note(e, "%s%s is an empty range; not converted", ctx, words[0])
	}
	return out
}

func (c *converter) realServer(n *Node, vsCtx string) *member {
	if len(n.Args) < 1 || len(n.Args) > 2 {
		c.note(n, "%sreal_server %s: not ADDRESS PORT; not converted", vsCtx, strings.Join(n.Args, " "))
		return nil
	}
	a, err := netip.ParseAddr(n.Args[0])
	if err != nil || a.Zone() != "" {
		c.note(n, "%sreal_server %s: not an IP address; not converted", vsCtx, n.Args[0])
		return nil
	}
	m := &member{addr: a, weight: 1, node: n}
	if len(n.Args) == 2 {
		p, err := strconv.Atoi(n.Args[1])
		if err != nil || p < 0 || p > 65535 {
			c.note(n, "%sreal_server %s: port %s is not 0..65535; not converted", vsCtx, n.Args[0], n.Args[1])
			return nil
		}
		m.port = p
	}
	ctx := fmt.Sprintf("%sreal_server %s: ", vsCtx, strings.Join(n.Args, " "))
	for _, d := range n.Children {
		d.read = true
		switch d.Key {
		case "weight":
			if v, err := intArg(d); err == nil && v >= 0 && v <= 65535 {
				m.weight = v
			} else {
				c.note(d, "%sweight %s: not 0..65535; weight 1 used", ctx, strings.Join(d.Args, " "))
			}
		case "TCP_CHECK", "HTTP_GET", "SSL_GET":
			if m.mon != nil {
				c.note(d, "%s%s: Fulcrum runs one check per member; only the first (%s) is used", ctx, d.Key, m.monSrc.Key)
				continue
			}
			m.mon, m.monSrc = c.check(d, ctx), d
		case "MISC_CHECK":
			c.note(d, "%sMISC_CHECK: not converted: Fulcrum runs no scripts (use a tcp, http, https or ssl monitor)", ctx)
		case "SMTP_CHECK", "DNS_CHECK", "UDP_CHECK", "PING_CHECK", "BFD_CHECK", "FILE_CHECK":
			c.note(d, "%s%s: not converted: Fulcrum's monitors are tcp, tcp_half_open, http, https and ssl", ctx, d.Key)
		case "inhibit_on_failure":
			c.note(d, "%sinhibit_on_failure: Fulcrum sets it per pool; set inhibit: true on the pool if every member should keep weight 0 when down", ctx)
		case "delay_loop":
			c.note(d, "%sdelay_loop: Fulcrum's interval is per monitor; the virtual server's is used", ctx)
		default:
			c.unsupportedNote(d, ctx)
		}
	}
	return m
}

// check converts a TCP_CHECK, HTTP_GET or SSL_GET block.
func (c *converter) check(n *Node, ctx string) *monitor {
	mon := &monitor{}
	switch n.Key {
	case "TCP_CHECK":
		mon.Type = "tcp"
	case "HTTP_GET":
		mon.Type = "http"
	case "SSL_GET":
		mon.Type = "https"
	}
	ctx += n.Key + ": "
	urls := 0
	for _, d := range n.Children {
		d.read = true
		switch d.Key {
		case "connect_port":
			if v, err := intArg(d); err == nil && v > 0 && v < 65536 {
				mon.Port = v
			} else {
				c.note(d, "%sconnect_port %s: not a port", ctx, strings.Join(d.Args, " "))
			}
		case "bindto":
			if len(d.Args) >= 1 {
				if _, err := netip.ParseAddr(d.Args[0]); err == nil {
					mon.Source = d.Args[0]
				} else {
					c.note(d, "%sbindto %s: not an address", ctx, d.Args[0])
				}
			}
		case "connect_timeout":
			if v, err := secondsArg(d); err == nil && v > 0 {
				mon.Timeout = v
			} else {
				c.note(d, "%sconnect_timeout %s: not a positive number of seconds", ctx, strings.Join(d.Args, " "))
			}
		case "retry", "nb_get_retry":
			if v, err := intArg(d); err == nil && v >= 0 && v < 100 {
				mon.Fall = v + 1
			} else {
				c.note(d, "%s%s %s: not a small whole number", ctx, d.Key, strings.Join(d.Args, " "))
			}
		case "delay_loop":
			if v, err := secondsArg(d); err == nil && v >= 10*time.Millisecond {
				mon.Interval = v
			}
		case "virtualhost":
			if len(d.Args) == 1 && mon.Type != "tcp" {
				mon.Host = d.Args[0]
			}
		case "enable_sni":
			mon.SNI = "sni" // resolved to the host once known
		case "url":
			urls++
			if urls > 1 {
				c.note(d, "%sanother url: Fulcrum checks one URL per monitor; only the first is used", ctx)
				continue
			}
			c.url(d, mon, ctx)
		default:
			c.unsupportedNote(d, ctx)
		}
	}
	if mon.Type != "tcp" {
		if urls == 0 {
			mon.Path = "/"
		}
		if mon.Status == "" {
			mon.Status = kaHTTPStatus
		}
	}
	return mon
}

func (c *converter) url(n *Node, mon *monitor, ctx string) {
	for _, d := range n.Children {
		d.read = true
		switch d.Key {
		case "path":
			if len(d.Args) == 1 && strings.HasPrefix(d.Args[0], "/") {
				mon.Path = d.Args[0]
			} else {
				c.note(d, "%surl path %s: must start with '/'; / used", ctx, strings.Join(d.Args, " "))
			}
		case "status_code":
			if len(d.Args) >= 1 {
				mon.Status = strings.Join(d.Args, ",")
			}
		case "regex":
			if len(d.Args) == 1 {
				mon.Body = d.Args[0]
			}
		case "virtualhost":
			if len(d.Args) == 1 {
				mon.Host = d.Args[0]
			}
		default:
			c.unsupportedNote(d, ctx+"url: ")
		}
	}
	if mon.Path == "" {
		mon.Path = "/"
	}
}

func monitorNode(m *monitor) *yaml.Node {
	n := ymap()
	yset(n, "type", ystr(m.Type))
	yset(n, "interval", ystr(m.Interval.String()))
	yset(n, "timeout", ystr(m.Timeout.String()))
	yset(n, "rise", yint(1))
	yset(n, "fall", yint(m.Fall))
	yset(n, "initial_state", ystr(m.Initial))
	if m.Port != 0 {
		yset(n, "port", yint(m.Port))
	}
	if m.Source != "" {
		yset(n, "source", ystr(m.Source))
	}
	if m.Type == "http" || m.Type == "https" {
		yset(n, "path", ystr(m.Path))
		if m.Host != "" {
			yset(n, "host", ystr(m.Host))
		}
		yset(n, "expect_status", ystr(m.Status))
		if m.Body != "" {
			yset(n, "expect_body", ystr(m.Body))
		}
	}
	if m.SNI != "" && m.Type == "https" {
		yset(n, "sni", ystr(m.SNI))
	}
	return n
}
