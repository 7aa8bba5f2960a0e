package keepalived

import (
	"bytes"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Result is a converted config.
type Result struct {
	// YAML is the Fulcrum config text.
	YAML []byte
	// Issues lists every keepalived directive (or part of one) that was not
	// carried over, or carried over differently, with its file and line.
	Issues []Issue
	// Complete reports whether a network section (from the base config)
	// is present, so the YAML is a whole appliance config.
	Complete bool
	// Counts of what was converted.
	VirtualServers, Instances int
}

// Import parses the keepalived config name in fsys and converts it. base is
// an optional Fulcrum config (YAML) whose network section and other settings
// the result keeps; baseName names it in reports.
func Import(fsys fs.FS, name string, base []byte, baseName string, opt Options) (*Result, error) {
	nodes, issues, err := Parse(fsys, name, opt)
	if err != nil {
		return nil, err
	}
	return Convert(nodes, issues, opt.Root+path.Clean(name), base, baseName)
}

// Keepalived's defaults where they differ from Fulcrum's.
const (
	kaDelayLoop      = 60 * time.Second
	kaConnectTimeout = 5 * time.Second
	kaRetry          = 1
	kaPriority       = 100
	kaAdvert         = 100 // centiseconds
	kaVRRPVersion    = 2
	kaPersistence    = 360 * time.Second
	kaHTTPStatus     = "200-299"
)

// fulcrum's IPVS schedulers (lbcore/config.Schedulers).
var schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

type baseInfo struct {
	doc      *yaml.Node // the mapping
	hostname string
	nets     map[string][]netip.Prefix // group → self subnets
	ifGroup  map[string]string         // bond or member NIC name → group
}

type converter struct {
	issues []Issue
	base   *baseInfo

	vips     map[netip.Addr]bool // VIPs of converted virtual servers
	ifGroup  map[string]string   // learned interface → group
	names    map[string]int
	vsgroups map[string]*Node
	// vsgroupUsed: virtual_server_group names a virtual_server refers to
	vsgroupUsed map[string]bool

	hostname     string
	vrrpVersion  int
	garp         *yaml.Node
	ipvsTimeouts *yaml.Node

	virtualServers []*yaml.Node
	pools          *yaml.Node
	monitors       *yaml.Node
	instances      []*kInstance
	syncGroups     []*Node
	nInstances     int
}

func (c *converter) note(n *Node, format string, args ...any) {
	n.noted = true
	c.issues = append(c.issues, Issue{File: n.File, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

// unsupported is why a directive has no Fulcrum equivalent, by keyword.
var unsupported = map[string]string{
	"notification_email":        "Fulcrum sends no mail; it logs events and forwards them to management.syslog",
	"notification_email_from":   "Fulcrum sends no mail; it logs events and forwards them to management.syslog",
	"smtp_server":               "Fulcrum sends no mail; it logs events and forwards them to management.syslog",
	"smtp_connect_timeout":      "Fulcrum sends no mail",
	"smtp_alert":                "Fulcrum sends no mail",
	"smtp_helo_name":            "Fulcrum sends no mail",
	"enable_script_security":    "Fulcrum runs no scripts",
	"script_user":               "Fulcrum runs no scripts",
	"vrrp_script":               "Fulcrum runs no scripts; VRRP tracks the Internal and External bonds (vrrp.track)",
	"track_script":              "Fulcrum runs no scripts; VRRP tracks the Internal and External bonds (vrrp.track)",
	"notify":                    "Fulcrum runs no scripts; state changes are logged and shown by lbctl show vrrp",
	"notify_master":             "Fulcrum runs no scripts; state changes are logged and shown by lbctl show vrrp",
	"notify_backup":             "Fulcrum runs no scripts; state changes are logged and shown by lbctl show vrrp",
	"notify_fault":              "Fulcrum runs no scripts; state changes are logged and shown by lbctl show vrrp",
	"notify_stop":               "Fulcrum runs no scripts",
	"notify_up":                 "Fulcrum runs no scripts; member state changes are logged",
	"notify_down":               "Fulcrum runs no scripts; member state changes are logged",
	"quorum_up":                 "Fulcrum runs no scripts",
	"quorum_down":               "Fulcrum runs no scripts",
	"authentication":            "VRRPv3 has no authentication; Fulcrum keeps VRRP on the dedicated Failover bond",
	"use_vmac":                  "Fulcrum announces virtual addresses with gratuitous ARP from the bond's own MAC",
	"vmac_xmit_base":            "Fulcrum uses no VMAC interfaces",
	"lvs_sync_daemon_interface": "Fulcrum does not run the IPVS connection sync daemon",
	"lvs_sync_daemon":           "Fulcrum does not run the IPVS connection sync daemon",
	"virtual_routes":            "routes are static in network.routes and do not float",
	"virtual_rules":             "policy rules are static in network.rules and do not float",
	"static_routes":             "static routes belong in network.routes of the base config",
	"static_rules":              "static rules belong in network.rules of the base config",
	"net_namespace":             "Fulcrum runs in the appliance's own network namespace",
	"mcast_src_ip":              "the heartbeat's source is the Failover bond's self IP",
	"unicast_src_ip":            "the heartbeat's source is the Failover bond's self IP",
	"vrrp_strict":               "Fulcrum follows RFC 5798 without keepalived's strict-mode switches",
	"vrrp_skip_check_adv_addr":  "Fulcrum always checks the advert's addresses",
	"vrrp_garp_master_delay":    "Fulcrum announces at takeover (vrrp.garp.repeat) and refreshes periodically (vrrp.garp.refresh)",
	"garp_master_delay":         "Fulcrum announces at takeover (vrrp.garp.repeat) and refreshes periodically (vrrp.garp.refresh)",
	"hysteresis":                "Fulcrum's pool quorum has no hysteresis",
	"omega":                     "Fulcrum runs no scripts at start or stop",
	"ha_suspend":                "health checks run on both nodes whatever the VRRP state",
	"ops":                       "one-packet scheduling is not offered",
	"delay_before_retry":        "Fulcrum checks at the monitor interval; a failed check is retried at the next one",
	"bind_port":                 "health checks use an ephemeral source port",
	"connect_ip":                "health checks go to the member's own address",
	"warmup":                    "Fulcrum spreads check start times itself",
	"digest":                    "keepalived's digest is MD5 of the page; Fulcrum compares SHA-256 (monitors.NAME.expect_body_sha256): compute it and add it by hand",
	"fast_recovery":             "Fulcrum uses the monitor's rise count",
	"http_protocol":             "Fulcrum checks speak HTTP/1.1",
	"persistence_engine":        "only source-address persistence is offered",
	"sorry_server_inhibit":      "the sorry server is added only while the pool is down",
	"sorry_server_lvs_method":   "the sorry server uses the virtual server's mode",
	"uthreshold":                "IPVS connection thresholds are not offered",
	"lthreshold":                "IPVS connection thresholds are not offered",
	"linkbeat_use_polling":      "bond link state comes from the bonding driver (network.*.miimon)",
}

func (c *converter) unsupportedNote(n *Node, ctx string) {
	why, ok := unsupported[n.Key]
	if !ok {
		why = "no Fulcrum equivalent"
	}
	key := n.Key
	if n.IsBlock && len(n.Args) > 0 {
		key += " " + strings.Join(n.Args, " ")
	}
	c.note(n, "%s%s: not converted: %s", ctx, key, why)
}

// Convert turns parsed keepalived statements into Fulcrum YAML. issues are
// the parser's, mainFile the name the main file has in them; base is an
// optional Fulcrum config (YAML) providing the network section.
func Convert(nodes []*Node, issues []Issue, mainFile string, base []byte, baseName string) (*Result, error) {
	c := &converter{
		issues:      append([]Issue(nil), issues...),
		vips:        map[netip.Addr]bool{},
		ifGroup:     map[string]string{},
		names:       map[string]int{},
		vsgroups:    map[string]*Node{},
		vsgroupUsed: map[string]bool{},
		pools:       ymap(),
		monitors:    ymap(),
	}
	if len(base) > 0 {
		b, err := parseBase(base)
		if err != nil {
			return nil, fmt.Errorf("base config %s: %w", baseName, err)
		}
		c.base = b
		for k, v := range b.ifGroup {
			c.ifGroup[k] = v
		}
	}
	// Virtual servers first: their VIPs tell which VRRP addresses are external.
	for _, n := range nodes {
		if n.Key == "virtual_server_group" && len(n.Args) > 0 {
			c.vsgroups[n.Args[0]] = n
		}
	}
	for _, n := range nodes {
		switch n.Key {
		case "virtual_server":
			c.virtualServer(n)
		}
	}
	for _, n := range nodes {
		n.read = true
		switch n.Key {
		case "virtual_server":
		case "virtual_server_group":
			if len(n.Args) == 0 || !c.vsgroupUsed[n.Args[0]] {
				c.note(n, "virtual_server_group %s: no virtual_server uses it; not converted", strings.Join(n.Args, " "))
			}
		case "global_defs":
			c.globalDefs(n)
		case "vrrp_instance":
			c.vrrpInstance(n)
		case "vrrp_sync_group":
			c.syncGroups = append(c.syncGroups, n)
		case "static_ipaddress":
			c.staticAddresses(n)
		default:
			c.unsupportedNote(n, "")
		}
	}
	vrrpNode := c.vrrpSection()
	c.unread(nodes)
	sort.SliceStable(c.issues, func(i, j int) bool {
		a, b := c.issues[i], c.issues[j]
		if a.File != b.File {
			// the main file first, then includes and the base by name
			return a.File == mainFile || a.File < b.File && b.File != mainFile
		}
		return a.Line < b.Line
	})
	return c.assemble(vrrpNode, baseName)
}

// unread reports every statement the converter never looked at, so nothing
// is dropped without a word even where the converter has a gap.
func (c *converter) unread(nodes []*Node) {
	for _, n := range nodes {
		switch {
		case n.noted:
		case !n.read:
			what := n.Key
			if n.IsBlock {
				what += " " + strings.Join(n.Args, " ") + " { ... }"
			}
			c.note(n, "%s: not converted: the importer does not read it in this place", strings.TrimSpace(what))
		default:
			c.unread(n.Children)
		}
	}
}

func parseBase(data []byte) (*baseInfo, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("not a YAML mapping")
	}
	var b struct {
		Hostname string `yaml:"hostname"`
		Network  map[string]struct {
			Bond      string   `yaml:"bond"`
			Members   []string `yaml:"members"`
			Addresses []string `yaml:"addresses"`
		} `yaml:"network"`
	}
	// Only the fields the import uses; the loader checks the rest.
	if net := yget(doc.Content[0], "network"); net != nil {
		var m yaml.Node
		m.Kind = yaml.MappingNode
		for _, g := range []string{"failover", "internal", "external"} {
			if v := yget(net, g); v != nil {
				m.Content = append(m.Content, ystr(g), v)
			}
		}
		if err := m.Decode(&b.Network); err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
	}
	if h := yget(doc.Content[0], "hostname"); h != nil {
		b.Hostname = h.Value
	}
	info := &baseInfo{doc: doc.Content[0], hostname: b.Hostname, nets: map[string][]netip.Prefix{}, ifGroup: map[string]string{}}
	for g, bg := range b.Network {
		bond := bg.Bond
		if bond == "" {
			bond = g
		}
		info.ifGroup[bond] = g
		for _, m := range bg.Members {
			info.ifGroup[strings.ToLower(m)] = g
		}
		for _, a := range bg.Addresses {
			if p, err := netip.ParsePrefix(a); err == nil {
				info.nets[g] = append(info.nets[g], p.Masked())
			}
		}
	}
	return info, nil
}

func (c *converter) globalDefs(n *Node) {
	for _, d := range n.Children {
		d.read = true
		switch d.Key {
		case "router_id":
			if len(d.Args) == 1 && hostnameRE.MatchString(d.Args[0]) {
				c.hostname = d.Args[0]
			} else {
				c.note(d, "router_id %s: not a valid host name (letters, digits and '-'); hostname not set from it", strings.Join(d.Args, " "))
			}
		case "vrrp_version":
			if v, err := intArg(d); err == nil && (v == 2 || v == 3) {
				c.vrrpVersion = v
			} else {
				c.note(d, "vrrp_version: %s is not 2 or 3", strings.Join(d.Args, " "))
			}
		case "vrrp_garp_master_repeat":
			if v, err := intArg(d); err == nil && v >= 1 && v <= 100 {
				c.garpSet("repeat", yint(v))
			} else {
				c.note(d, "vrrp_garp_master_repeat: %s is out of range (1..100)", strings.Join(d.Args, " "))
			}
		case "vrrp_garp_master_refresh":
			if v, err := intArg(d); err == nil && (v == 0 || v >= 1 && v <= 3600) {
				c.garpSet("refresh", ystr(fmt.Sprintf("%ds", v)))
			} else {
				c.note(d, "vrrp_garp_master_refresh: %s is out of range (0 or 1..3600 s)", strings.Join(d.Args, " "))
			}
		case "lvs_timeouts":
			c.lvsTimeouts(d)
		default:
			c.unsupportedNote(d, "global_defs: ")
		}
	}
}

func (c *converter) garpSet(key string, v *yaml.Node) {
	if c.garp == nil {
		c.garp = ymap()
	}
	yset(c.garp, key, v)
}

func (c *converter) lvsTimeouts(d *Node) {
	m := ymap()
	for i := 0; i < len(d.Args); i++ {
		k := d.Args[i]
		if (k == "tcp" || k == "tcpfin" || k == "udp") && i+1 < len(d.Args) {
			v, err := strconv.Atoi(d.Args[i+1])
			if err != nil || v < 0 || v > 30*24*3600 {
				c.note(d, "lvs_timeouts %s %s: not a number of seconds (0..2592000)", k, d.Args[i+1])
			} else {
				yset(m, k, ystr(fmt.Sprintf("%ds", v)))
			}
			i++
			continue
		}
		c.note(d, "lvs_timeouts: %q not converted (Fulcrum sets tcp, tcpfin and udp)", k)
	}
	if len(m.Content) > 0 {
		c.ipvsTimeouts = m
	}
}

func (c *converter) staticAddresses(n *Node) {
	for _, a := range n.Children {
		a.read = true
		where := ""
		if c.base != nil {
			if p, err := netip.ParsePrefix(a.Key); err == nil {
				for _, g := range []string{"failover", "internal", "external"} {
					for _, s := range c.base.nets[g] {
						if s.Contains(p.Addr()) {
							where = " (the base config's " + g + " subnet " + s.String() + " holds it)"
						}
					}
				}
			}
		}
		c.note(a, "static_ipaddress %s: not converted: a node's own addresses belong in network.<group>.addresses of the base config%s", a.Key, where)
	}
}

var (
	hostnameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
	nameCharRE = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)
)

func intArg(n *Node) (int, error) {
	if len(n.Args) != 1 {
		return 0, fmt.Errorf("%s needs one value", n.Key)
	}
	v, err := strconv.Atoi(n.Args[0])
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a whole number", n.Key, n.Args[0])
	}
	return v, nil
}

// secondsArg reads a (possibly fractional) number of seconds.
func secondsArg(n *Node) (time.Duration, error) {
	if len(n.Args) != 1 {
		return 0, fmt.Errorf("%s needs one value", n.Key)
	}
	f, err := strconv.ParseFloat(n.Args[0], 64)
	if err != nil || f < 0 || f > 1e6 || math.IsNaN(f) {
		return 0, fmt.Errorf("%s: %q is not a number of seconds", n.Key, n.Args[0])
	}
	return time.Duration(f * float64(time.Second)).Round(time.Millisecond), nil
}

// uniqueName makes a Fulcrum name (letters, digits, '_' and '-') from s.
func (c *converter) uniqueName(s string) string {
	s = strings.Trim(nameCharRE.ReplaceAllString(s, "-"), "-_")
	if s == "" {
		s = "x"
	}
	if len(s) > 50 {
		s = s[:50]
	}
	if s[0] == '_' || s[0] == '-' {
		s = "x" + s
	}
	c.names[s]++
	if k := c.names[s]; k > 1 {
		return fmt.Sprintf("%s-%d", s, k)
	}
	return s
}

// imported lists the top-level sections the import writes.
var imported = []string{"vrrp", "virtual_servers", "pools", "monitors", "ipvs_timeouts"}

func (c *converter) assemble(vrrpNode *yaml.Node, baseName string) (*Result, error) {
	doc := ymap()
	ours := map[string]*yaml.Node{"vrrp": vrrpNode}
	if len(c.virtualServers) > 0 {
		ours["virtual_servers"] = yseq(c.virtualServers...)
		ours["pools"] = c.pools
		if len(c.monitors.Content) > 0 {
			ours["monitors"] = c.monitors
		}
	}
	if c.ipvsTimeouts != nil {
		ours["ipvs_timeouts"] = yflow(c.ipvsTimeouts)
	}
	version := yint(1)
	hostname := c.hostname
	res := &Result{VirtualServers: len(c.virtualServers), Instances: c.nInstances}
	var rest []*yaml.Node
	if c.base != nil {
		m := c.base.doc
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			switch {
			case k.Value == "version":
				version = v
			case k.Value == "hostname":
				hostname = ""
				rest = append(rest, k, v)
			case ours[k.Value] != nil:
				c.issues = append(c.issues, Issue{File: baseName, Line: k.Line, Msg: fmt.Sprintf("the base config's %s is replaced by the imported one", k.Value)})
				if k.Value == "virtual_servers" && ours["monitors"] == nil && yget(m, "monitors") != nil {
					// the base's monitors go with its virtual servers
					c.issues = append(c.issues, Issue{File: baseName, Line: k.Line, Msg: "the base config's monitors are kept but its virtual servers are not"})
				}
			default:
				if k.Value == "network" {
					res.Complete = true
				}
				rest = append(rest, k, v)
			}
		}
	}
	vk := ystr("version")
	vk.HeadComment = "Imported from keepalived by fulcrum-image import-keepalived. Check it with\nmake check-config CONFIG=this-file before use."
	if len(c.issues) > 0 {
		vk.HeadComment += fmt.Sprintf("\n\n%d keepalived directives were not converted (or not exactly):", len(c.issues))
		for _, is := range c.issues {
			vk.HeadComment += "\n  " + strings.ReplaceAll(is.String(), "\n", " ")
		}
	}
	doc.Content = append(doc.Content, vk, version)
	if hostname != "" {
		yset(doc, "hostname", ystr(hostname))
	}
	doc.Content = append(doc.Content, rest...)
	if !res.Complete {
		k := ystr("network")
		k.HeadComment = "No base config with a network section was given: fill this in (NIC\ngroups, self IPs, routes), or import again with BASE=config.yaml."
		doc.Content = append(doc.Content, k, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"})
	}
	for _, key := range imported {
		if n := ours[key]; n != nil {
			yset(doc, key, n)
		}
	}
	cleanComments(doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{doc}}); err != nil {
		return nil, fmt.Errorf("writing YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("writing YAML: %w", err)
	}
	res.YAML = buf.Bytes()
	res.Issues = c.issues
	return res, nil
}

// ImportFile imports the keepalived config at path (includes resolved on the
// local file system) with the optional Fulcrum base config at basePath
// ("" for none). Issues come sorted by file and line.
func ImportFile(file, basePath, configID string) (*Result, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, err
	}
	var base []byte
	if basePath != "" {
		if base, err = os.ReadFile(basePath); err != nil {
			return nil, fmt.Errorf("base config: %w", err)
		}
	}
	root := filepath.VolumeName(abs) + string(filepath.Separator)
	name := filepath.ToSlash(strings.TrimPrefix(abs, root))
	res, err := Import(os.DirFS(root), name, base, basePath, Options{ConfigID: configID, Root: "/"})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// cleanComments makes every comment in the tree printable (comments quote
// keepalived input).
func cleanComments(n *yaml.Node) {
	n.HeadComment, n.LineComment, n.FootComment = printableLines(n.HeadComment), printableLines(n.LineComment), printableLines(n.FootComment)
	for _, c := range n.Content {
		cleanComments(c)
	}
}

func printableLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = printable(l)
	}
	return strings.Join(lines, "\n")
}
