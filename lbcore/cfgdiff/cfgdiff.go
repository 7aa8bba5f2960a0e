// Package cfgdiff says what applying a config would change, without
// touching anything: the IPVS services and destinations, the addresses the
// LB daemon owns, the nftables rules (marks, FullNAT and SNAT, the input
// filter) and the health checks, which an apply changes at once, and the
// vrrp, network, kernel and management settings, which take effect at the
// next boot.
//
// The kernel part compares the desired states lbcore/engine computes for
// the running and the new config (the same translation the apply uses) and
// the IPVS part is the plan ipvs.Diff makes from them, so the diff is what
// the apply would do. Members' health is left out (every member counts as
// up): a monitored member joins once its checks pass either way.
package cfgdiff

import (
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/config/redact"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/addrs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/filter"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nat"
	"golang.org/x/sys/unix"
)

// Desire computes the kernel's desired state for a config: the apply's own
// translation (lbapply's Applier.Desired under the running overrides).
type Desire func(*config.Config) (*engine.Desired, error)

// Engine is the Desire of lbcore/engine under ov, the input filter
// included (resolve turns a management NIC given by MAC into its name).
func Engine(ov engine.Overrides, resolve engine.IfaceResolver) Desire {
	return func(cfg *config.Config) (*engine.Desired, error) {
		d, err := engine.Build(cfg, ov, nil)
		if err != nil {
			return nil, err
		}
		if d.Filter, err = engine.Filter(cfg, resolve); err != nil {
			return nil, fmt.Errorf("input filter: %w", err)
		}
		return d, nil
	}
}

// Section is one part of the diff: its changes as lines starting with
// "+ " (added), "- " (removed) or "~ " (changed).
type Section struct {
	Title string   `json:"title"`
	Live  bool     `json:"live"` // an apply changes it at once; false: at the next boot
	Lines []string `json:"lines"`
}

// Diff is what applying a config would change.
type Diff struct {
	Sections []Section `json:"sections"`
}

// Empty reports whether the apply would change nothing.
func (d *Diff) Empty() bool { return len(d.Sections) == 0 }

// NeedsReboot reports whether some change takes effect only at the next boot.
func (d *Diff) NeedsReboot() bool {
	for _, s := range d.Sections {
		if !s.Live {
			return true
		}
	}
	return false
}

// String is the diff as an operator reads it.
func (d *Diff) String() string {
	if d.Empty() {
		return "no changes\n"
	}
	var b strings.Builder
	for _, s := range d.Sections {
		when := "changes now"
		if !s.Live {
			when = "takes effect at the next boot"
		}
		fmt.Fprintf(&b, "%s (%s):\n", s.Title, when)
		for _, l := range s.Lines {
			b.WriteString("  " + l + "\n")
		}
	}
	return b.String()
}

func (d *Diff) add(title string, live bool, lines []string) {
	if len(lines) > 0 {
		d.Sections = append(d.Sections, Section{Title: title, Live: live, Lines: lines})
	}
}

// Compute says what applying next (validated) on top of running would
// change. running nil means nothing runs yet.
func Compute(running, next *config.Config, desire Desire) (*Diff, error) {
	want, err := desire(next)
	if err != nil {
		return nil, fmt.Errorf("the new config: %w", err)
	}
	have := &engine.Desired{IPVS: ipvs.NewState(), NAT: &nat.Ruleset{}}
	if running != nil {
		if have, err = desire(running); err != nil {
			return nil, fmt.Errorf("the running config: %w", err)
		}
	} else {
		running = &config.Config{}
	}
	d := &Diff{}
	d.add("IPVS", true, ipvsLines(want.IPVS, have.IPVS))
	d.add("addresses", true, addrLines(want.Addrs, have.Addrs))
	d.add("nftables nat (marks, FullNAT, SNAT)", true, natLines(want.NAT, have.NAT))
	if want.Filter != nil && have.Filter != nil {
		d.add("nftables input filter", true, filterLines(want.Filter, have.Filter))
	}
	d.add("health checks", true, fields("monitors", reflect.ValueOf(running.Monitors), reflect.ValueOf(next.Monitors)))
	for _, s := range []struct {
		title, path string
		old, new    any
	}{
		{"VRRP", "vrrp", running.VRRP, next.VRRP},
		{"network (bonds, addresses, routes, sysctls)", "network", running.Network, next.Network},
		{"kernel", "kernel", running.Kernel, next.Kernel},
		{"hostname", "hostname", running.Hostname, next.Hostname},
		{"management (console, API, logs)", "management", running.Access, next.Access},
	} {
		d.add(s.title, false, fields(s.path, reflect.ValueOf(s.old), reflect.ValueOf(s.new)))
	}
	return d, nil
}

// service is a service as ipvsadm -Ln names it, with the virtual server's
// name.
func service(s *ipvs.Service) string {
	k := s.Key
	var id string
	switch {
	case k.FWMark != 0:
		id = fmt.Sprintf("FWM  %d", k.FWMark)
	case k.Protocol == unix.IPPROTO_UDP:
		id = "UDP  " + netip.AddrPortFrom(k.Addr, k.Port).String()
	default:
		id = "TCP  " + netip.AddrPortFrom(k.Addr, k.Port).String()
	}
	if s.Name != "" {
		id += " (" + s.Name + ")"
	}
	return id
}

// settings is a service's scheduler and flags as ipvsadm -Ln shows them.
func settings(s *ipvs.Service) string {
	out := s.Scheduler
	if s.Flags&ipvs.FlagPersistent != 0 {
		out += fmt.Sprintf(" persistent %d", s.Timeout)
		if m := mask(s); m != "" {
			out += " mask " + m
		}
	}
	return out
}

func mask(s *ipvs.Service) string {
	if s.Key.Family == unix.AF_INET6 {
		if s.Netmask == 128 || s.Netmask == 0 {
			return ""
		}
		return fmt.Sprintf("/%d", s.Netmask)
	}
	for bits := 0; bits <= 32; bits++ {
		if ipvs.NetmaskV4(bits) == s.Netmask {
			if bits == 32 {
				return ""
			}
			return fmt.Sprintf("/%d", bits)
		}
	}
	return fmt.Sprintf("%#x", s.Netmask)
}

var fwdNames = map[uint32]string{ipvs.FwdMasq: "Masq", ipvs.FwdTunnel: "Tunnel", ipvs.FwdDR: "Route"}

func dest(d *ipvs.Dest) string {
	return fmt.Sprintf("-> %s %s weight %d", d.Key, fwdNames[d.Fwd], d.Weight)
}

// ipvsLines renders the plan the IPVS reconciler would carry out to go
// from have to want (removed members drain: weight 0, then deleted).
func ipvsLines(want, have *ipvs.State) []string {
	var out []string
	plan := ipvs.Diff(want, have, ipvs.DiffOptions{Drain: true})
	for _, op := range plan.Ops {
		switch op.Kind {
		case ipvs.OpSetTimeouts:
			o, n := op.OldTimeouts, op.Timeouts
			var parts []string
			for _, t := range []struct {
				name     string
				old, new any
			}{{"tcp", o.TCP, n.TCP}, {"tcpfin", o.TCPFin, n.TCPFin}, {"udp", o.UDP, n.UDP}} {
				if t.old != t.new && fmt.Sprint(t.new) != "0s" {
					parts = append(parts, fmt.Sprintf("%s %v -> %v", t.name, t.old, t.new))
				}
			}
			out = append(out, "~ timeouts: "+strings.Join(parts, ", "))
		case ipvs.OpAddService:
			out = append(out, "+ "+service(op.Svc)+" "+settings(op.Svc))
		case ipvs.OpUpdateService:
			out = append(out, fmt.Sprintf("~ %s %s -> %s", service(op.Svc), settings(op.Old), settings(op.Svc)))
		case ipvs.OpDelService:
			out = append(out, "- "+service(op.Svc)+" "+settings(op.Svc))
			for _, d := range op.Svc.SortedDests() {
				out = append(out, "-   "+service(op.Svc)+" "+dest(d))
			}
		case ipvs.OpAddDest:
			out = append(out, "+   "+service(op.Svc)+" "+dest(op.Dest))
		case ipvs.OpUpdateDest:
			line := fmt.Sprintf("~   %s -> %s", service(op.Svc), op.Dest.Key)
			if op.Prev.Fwd != op.Dest.Fwd {
				line += fmt.Sprintf(" %s -> %s", fwdNames[op.Prev.Fwd], fwdNames[op.Dest.Fwd])
			}
			if op.Prev.Weight != op.Dest.Weight {
				line += fmt.Sprintf(" weight %d -> %d", op.Prev.Weight, op.Dest.Weight)
			}
			if op.Drain {
				line += " (removed: drains, deleted when its connections end)"
			}
			out = append(out, line)
		case ipvs.OpDelDest:
			out = append(out, "-   "+service(op.Svc)+" "+dest(op.Prev))
		}
	}
	return out
}

func addrLines(want, have addrs.Plan) []string {
	str := func(w addrs.Want) string { return fmt.Sprintf("%s on %s (%s)", w.Addr, w.Link, w.Why) }
	key := func(w addrs.Want) string { return w.Link + " " + w.Addr.String() }
	return setLines(want.Addrs, have.Addrs, key, str)
}

func natLines(want, have *nat.Ruleset) []string {
	proto := func(p uint8) string {
		if p == unix.IPPROTO_UDP {
			return "udp"
		}
		return "tcp"
	}
	mark := func(m nat.Mark) string {
		ports := fmt.Sprint(m.From)
		if m.To != m.From {
			ports = fmt.Sprintf("%d-%d", m.From, m.To)
		}
		return fmt.Sprintf("mark %s %s port %s with %#x (%s)", proto(m.Proto), m.VIP, ports, m.Mark, m.VS)
	}
	full := func(f nat.FullNAT) string {
		return fmt.Sprintf("FullNAT: SNAT mark %#x to %s (%s)", f.Mark, rangeOf(f.First, f.Last), f.VS)
	}
	snat := func(s nat.SNAT) string {
		return fmt.Sprintf("SNAT from %s out %s to %s", s.Source, s.OutIface, rangeOf(s.First, s.Last))
	}
	out := setLines(want.Marks, have.Marks, mark, mark)
	out = append(out, setLines(want.FullNAT, have.FullNAT, full, full)...)
	return append(out, setLines(want.SNAT, have.SNAT, snat, snat)...)
}

func rangeOf(a, b netip.Addr) string {
	if a == b {
		return a.String()
	}
	return a.String() + "-" + b.String()
}

// filterLines lists what each zone of the input filter admits, as rules.
func filterLines(want, have *filter.Policy) []string {
	return setLines(filterRules(want), filterRules(have), func(s string) string { return s }, func(s string) string { return s })
}

func filterRules(p *filter.Policy) []string {
	var out []string
	for _, z := range p.Zones {
		at := fmt.Sprintf("%s (%s)", z.Name, z.Iface)
		if z.Ping {
			out = append(out, at+" admits ping")
		}
		for _, s := range z.Services {
			ports := fmt.Sprint(s.From)
			if s.To != s.From {
				ports = fmt.Sprintf("%d-%d", s.From, s.To)
			}
			out = append(out, fmt.Sprintf("%s admits %s %s port %s (%s)", at, s.Proto, s.Addr, ports, s.Name))
		}
		for _, pt := range z.Ports {
			out = append(out, fmt.Sprintf("%s admits %s port %d (%s)", at, pt.Proto, pt.Port, pt.Name))
		}
		for _, peer := range z.Peers {
			if z.PeerPing {
				out = append(out, fmt.Sprintf("%s admits ping from peer %s", at, peer))
			}
			for _, r := range z.PeerRules {
				rule := fmt.Sprintf("%s admits %s", at, r.Proto)
				if r.Port != 0 {
					rule += fmt.Sprintf(" port %d", r.Port)
				}
				out = append(out, fmt.Sprintf("%s from peer %s (%s)", rule, peer, r.Name))
			}
		}
	}
	return out
}

// setLines lists the elements only in want ("+") and only in have ("-"),
// compared by key, in want's then have's order.
func setLines[T any](want, have []T, key func(T) string, str func(T) string) []string {
	in := func(list []T) map[string]bool {
		m := map[string]bool{}
		for _, x := range list {
			m[key(x)] = true
		}
		return m
	}
	w, h := in(want), in(have)
	var out []string
	for _, x := range have {
		if !w[key(x)] {
			out = append(out, "- "+str(x))
		}
	}
	for _, x := range want {
		if !h[key(x)] {
			out = append(out, "+ "+str(x))
		}
	}
	return out
}

// fields compares two values of a config section field by field and says
// what changed, by field path: "~ network.internal.mtu: 1500 -> 9000",
// "+ network.routes[1]: {to: 10.0.0.0/8, via: 198.51.100.254}".
func fields(path string, old, new reflect.Value) []string {
	if text, ok := leaf(old); ok {
		newText, _ := leaf(new)
		if text != newText {
			return []string{fmt.Sprintf("~ %s: %s -> %s", path, orUnset(text), orUnset(newText))}
		}
		return nil
	}
	switch old.Kind() {
	case reflect.Pointer:
		switch {
		case old.IsNil() && new.IsNil():
			return nil
		case old.IsNil():
			return []string{"+ " + path + ": " + show(new.Elem())}
		case new.IsNil():
			return []string{"- " + path + ": " + show(old.Elem())}
		}
		return fields(path, old.Elem(), new.Elem())
	case reflect.Struct:
		var out []string
		eachField(old.Type(), func(i int, name string) {
			p := join(path, name)
			if redact.IsSecret(name) {
				if !old.Field(i).Equal(new.Field(i)) {
					out = append(out, "~ "+p+": changed (a secret: not shown)")
				}
				return
			}
			out = append(out, fields(p, old.Field(i), new.Field(i))...)
		})
		return out
	case reflect.Slice:
		var out []string
		for i := 0; i < max(old.Len(), new.Len()); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= new.Len():
				out = append(out, "- "+p+": "+show(old.Index(i)))
			case i >= old.Len():
				out = append(out, "+ "+p+": "+show(new.Index(i)))
			default:
				out = append(out, fields(p, old.Index(i), new.Index(i))...)
			}
		}
		return out
	case reflect.Map:
		keys := map[string]reflect.Value{}
		for _, m := range []reflect.Value{old, new} {
			for _, k := range m.MapKeys() {
				keys[fmt.Sprint(k)] = k
			}
		}
		names := make([]string, 0, len(keys))
		for n := range keys {
			names = append(names, n)
		}
		sort.Strings(names)
		var out []string
		for _, n := range names {
			o, nv := old.MapIndex(keys[n]), new.MapIndex(keys[n])
			p := join(path, n)
			switch {
			case !nv.IsValid():
				out = append(out, "- "+p+": "+show(o))
			case !o.IsValid():
				out = append(out, "+ "+p+": "+show(nv))
			default:
				out = append(out, fields(p, o, nv)...)
			}
		}
		return out
	}
	return nil
}

func join(path, name string) string {
	switch {
	case path == "":
		return name
	case name == "":
		return path
	}
	return path + "." + name
}

func orUnset(s string) string {
	if s == "" {
		return "(unset)"
	}
	return s
}

// leaf renders a value that is shown as one text (numbers, strings,
// addresses, durations: anything with a String method), or says it is not
// one.
func leaf(v reflect.Value) (string, bool) {
	if !v.IsValid() {
		return "", true
	}
	if v.CanInterface() {
		if s, ok := v.Interface().(fmt.Stringer); ok && v.Kind() != reflect.Pointer {
			// IsZero, not Equal with the zero value: Equal panics on
			// Stringers that are slices (config.StatusSpec of every
			// monitor), which took lbd down on a diff of any config
			// with a monitor.
			if v.IsZero() {
				return "", true
			}
			return s.String(), true
		}
	}
	switch v.Kind() {
	case reflect.String:
		return v.String(), true
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprint(v.Interface()), true
	}
	return "", false
}

// show renders a whole value in YAML flow style, without unset fields.
func show(v reflect.Value) string {
	if s, ok := leaf(v); ok {
		return orUnset(s)
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return "(unset)"
		}
		return show(v.Elem())
	case reflect.Struct:
		var parts []string
		eachField(v.Type(), func(i int, name string) {
			f := v.Field(i)
			switch {
			case f.IsZero():
			case name == "": // inlined
				parts = append(parts, strings.Trim(show(f), "{}"))
			case redact.IsSecret(name):
				parts = append(parts, name+": "+redact.Marker)
			default:
				parts = append(parts, name+": "+show(f))
			}
		})
		return "{" + strings.Join(parts, ", ") + "}"
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = show(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = fmt.Sprintf("%v: %s", k, show(v.MapIndex(k)))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v)
}

// eachField calls f with the index and YAML name of every exported field
// of t that the YAML has (inlined structs are walked by their own fields
// through the caller's recursion with an empty name).
func eachField(t reflect.Type, f func(i int, name string)) {
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			name = ""
		} else if name == "" {
			name = strings.ToLower(sf.Name)
		}
		f(i, name)
	}
}
