// Package netsetup turns the network section of the appliance config into
// links through netlink: one Linux bond per NIC group (Failover, Internal,
// External) over member NICs chosen by name or MAC, MTU, self IPs, routes,
// policy rules and sysctls. Errors name the interface and what failed.
package netsetup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nldump"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Setup applies a network config in one network namespace.
type Setup struct {
	Log logrus.FieldLogger
	// Handle is the netlink handle to use (the current namespace if nil).
	Handle *netlink.Handle
	// SysctlRoot is /proc/sys unless a test points it elsewhere.
	SysctlRoot string
	// LinkWait is how long to wait for member NICs to appear (drivers probe
	// asynchronously at boot).
	LinkWait time.Duration
}

// Result reports what was set up.
type Result struct {
	Bonds map[config.Group]BondResult
}

// BondResult is one group's bond.
type BondResult struct {
	Bond    string
	Members []string
	Missing []string
}

func (s *Setup) h() *netlink.Handle {
	if s.Handle != nil {
		return s.Handle
	}
	return &netlink.Handle{}
}

// Apply brings up the three bonds, the management NIC, routes, rules and
// sysctls. A group with none of its member NICs present is an error; a group
// with some members missing comes up degraded, with a warning.
func (s *Setup) Apply(ctx context.Context, n *config.Network) (*Result, error) {
	if s.SysctlRoot == "" {
		s.SysctlRoot = "/proc/sys"
	}
	if err := s.applySysctls(config.DefaultSysctls(), true); err != nil {
		return nil, err
	}
	nics, err := s.waitForMembers(ctx, n)
	if err != nil {
		return nil, err
	}
	res := &Result{Bonds: map[config.Group]BondResult{}}
	for _, g := range config.Groups {
		br, err := s.applyBond(g, n.Group(g), nics)
		if err != nil {
			return res, err
		}
		res.Bonds[g] = br
	}
	if n.Management != nil {
		if err := s.applyManagement(n.Management, nics); err != nil {
			return res, err
		}
	}
	if err := s.applyRoutes(n); err != nil {
		return res, err
	}
	if err := s.applyRules(n.Rules); err != nil {
		return res, err
	}
	if err := s.applySysctls(n.Sysctls, false); err != nil {
		return res, err
	}
	return res, nil
}

// nics lists the physical-ish links that can be bond members.
func (s *Setup) nics() ([]NIC, error) {
	links, err := nldump.Retry(s.h().LinkList)
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	var out []NIC
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" || l.Type() == "bond" {
			continue
		}
		mac := a.HardwareAddr
		if len(a.PermHWAddr) == 6 {
			mac = a.PermHWAddr
		}
		out = append(out, NIC{Name: a.Name, MAC: mac, Index: a.Index})
	}
	return out, nil
}

// waitForMembers polls until every selected NIC exists or LinkWait passes.
func (s *Setup) waitForMembers(ctx context.Context, n *config.Network) ([]NIC, error) {
	var selectors []string
	for _, g := range config.Groups {
		selectors = append(selectors, n.Group(g).Members...)
	}
	if n.Management != nil {
		selectors = append(selectors, n.Management.Interface)
	}
	deadline := time.Now().Add(s.LinkWait)
	for {
		nics, err := s.nics()
		if err != nil {
			return nil, err
		}
		_, missing, err := ResolveMembers(selectors, nics)
		if err != nil {
			return nil, err
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			return nics, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Setup) applyBond(g config.Group, b *config.BondGroup, nics []NIC) (BondResult, error) {
	log := s.Log.WithField("bond", b.Bond)
	found, missing, err := ResolveMembers(b.Members, nics)
	if err != nil {
		return BondResult{}, fmt.Errorf("bond %s (%s): %w", b.Bond, g, err)
	}
	br := BondResult{Bond: b.Bond, Missing: missing}
	if len(found) == 0 {
		return br, fmt.Errorf("bond %s (%s): none of its member NICs %s is present (NICs here: %s)", b.Bond, g, strings.Join(b.Members, ", "), nicNames(nics))
	}
	if len(missing) > 0 {
		log.WithField("missing", strings.Join(missing, ",")).Warn("bond comes up degraded: member NICs not found")
	}
	bond, err := s.ensureBond(b)
	if err != nil {
		return br, err
	}
	for _, m := range found {
		link, err := s.h().LinkByIndex(m.Index)
		if err != nil {
			return br, fmt.Errorf("bond %s: member %s: %w", b.Bond, m.Name, err)
		}
		if link.Attrs().MasterIndex == bond.Attrs().Index {
			br.Members = append(br.Members, m.Name)
			continue
		}
		if err := s.h().LinkSetDown(link); err != nil {
			return br, fmt.Errorf("bond %s: member %s: set down: %w", b.Bond, m.Name, err)
		}
		if err := s.h().LinkSetMasterByIndex(link, bond.Attrs().Index); err != nil {
			return br, fmt.Errorf("bond %s: enslaving %s: %w", b.Bond, m.Name, err)
		}
		if err := s.h().LinkSetUp(link); err != nil {
			return br, fmt.Errorf("bond %s: member %s: set up: %w", b.Bond, m.Name, err)
		}
		br.Members = append(br.Members, m.Name)
	}
	if err := s.h().LinkSetMTU(bond, b.MTU); err != nil {
		return br, fmt.Errorf("bond %s: MTU %d: %w", b.Bond, b.MTU, err)
	}
	if err := s.h().LinkSetUp(bond); err != nil {
		return br, fmt.Errorf("bond %s: set up: %w", b.Bond, err)
	}
	for _, a := range b.Addresses {
		if err := s.h().AddrReplace(bond, &netlink.Addr{IPNet: hostNet(a.Prefix)}); err != nil {
			return br, fmt.Errorf("bond %s: adding address %s: %w", b.Bond, a, err)
		}
	}
	// Per-interface ARP behaviour for IPVS: answer only for addresses on the
	// receiving interface, announce with the best local source.
	for key, val := range map[string]string{"arp_ignore": "1", "arp_announce": "2", "rp_filter": "2"} {
		if err := s.writeSysctl(fmt.Sprintf("net.ipv4.conf.%s.%s", b.Bond, key), val); err != nil {
			return br, err
		}
	}
	log.WithField("members", strings.Join(br.Members, ",")).WithField("mode", b.Mode).Info("bond up")
	return br, nil
}

// ensureBond creates the bond or returns the existing one. Mode and hash
// policy can only change on a bond without members, so an existing bond in
// another mode is an error rather than a silent mismatch.
func (s *Setup) ensureBond(b *config.BondGroup) (netlink.Link, error) {
	if l, err := s.h().LinkByName(b.Bond); err == nil {
		bond, ok := l.(*netlink.Bond)
		if !ok {
			return nil, fmt.Errorf("bond %s: a %s link of that name already exists", b.Bond, l.Type())
		}
		if want := netlink.StringToBondMode(b.Mode); bond.Mode != want {
			return nil, fmt.Errorf("bond %s: exists in mode %s, config wants %s (reboot to change bond modes)", b.Bond, bond.Mode, b.Mode)
		}
		return bond, nil
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = b.Bond
	bond := netlink.NewLinkBond(attrs)
	bond.Mode = netlink.StringToBondMode(b.Mode)
	if bond.Mode == netlink.BOND_MODE_UNKNOWN {
		return nil, fmt.Errorf("bond %s: unknown mode %q", b.Bond, b.Mode)
	}
	bond.Miimon = b.MIIMon
	if b.XmitHashPolicy != "" {
		bond.XmitHashPolicy = netlink.StringToBondXmitHashPolicy(b.XmitHashPolicy)
	}
	if b.LACPRate != "" {
		bond.LacpRate = netlink.StringToBondLacpRate(b.LACPRate)
	}
	if err := s.h().LinkAdd(bond); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("bond %s: creating bond: %w (is the bonding module loaded?)", b.Bond, err)
		}
		return nil, fmt.Errorf("bond %s: creating bond: %w", b.Bond, err)
	}
	l, err := s.h().LinkByName(b.Bond)
	if err != nil {
		return nil, fmt.Errorf("bond %s: after create: %w", b.Bond, err)
	}
	return l, nil
}

func (s *Setup) applyManagement(m *config.Management, nics []NIC) error {
	found, _, err := ResolveMembers([]string{m.Interface}, nics)
	if err != nil || len(found) == 0 {
		return fmt.Errorf("management NIC %s: not present (NICs here: %s)", m.Interface, nicNames(nics))
	}
	link, err := s.h().LinkByIndex(found[0].Index)
	if err != nil {
		return fmt.Errorf("management NIC %s: %w", found[0].Name, err)
	}
	if err := s.h().LinkSetUp(link); err != nil {
		return fmt.Errorf("management NIC %s: set up: %w", found[0].Name, err)
	}
	if m.Address.IsValid() {
		if err := s.h().AddrReplace(link, &netlink.Addr{IPNet: hostNet(m.Address.Prefix)}); err != nil {
			return fmt.Errorf("management NIC %s: adding %s: %w", found[0].Name, m.Address, err)
		}
	}
	return nil
}

func (s *Setup) applyRoutes(n *config.Network) error {
	for _, r := range n.Routes {
		route := &netlink.Route{Dst: hostNet(r.To.Masked()), Table: r.Table, Priority: r.Metric}
		if r.Via.IsValid() {
			route.Gw = r.Via.AsSlice()
		}
		if r.Group != "" {
			bond := n.Group(r.Group).Bond
			l, err := s.h().LinkByName(bond)
			if err != nil {
				return fmt.Errorf("route to %s: bond %s: %w", r.To, bond, err)
			}
			route.LinkIndex = l.Attrs().Index
		}
		if err := s.h().RouteReplace(route); err != nil {
			return fmt.Errorf("route to %s via %s: %w", r.To, r.Via, err)
		}
	}
	return nil
}

func (s *Setup) applyRules(rules []config.Rule) error {
	existing, err := nldump.Retry(func() ([]netlink.Rule, error) { return s.h().RuleList(unix.AF_INET) })
	if err != nil {
		return fmt.Errorf("listing policy rules: %w", err)
	}
	for _, r := range rules {
		rule := netlink.NewRule()
		rule.Table = r.Table
		rule.Priority = r.Priority
		if r.From.IsValid() {
			rule.Src = hostNet(r.From.Masked())
		}
		if r.To.IsValid() {
			rule.Dst = hostNet(r.To.Masked())
		}
		if ruleExists(existing, rule) {
			continue
		}
		if err := s.h().RuleAdd(rule); err != nil {
			return fmt.Errorf("policy rule from %s to %s table %d: %w", r.From, r.To, r.Table, err)
		}
	}
	return nil
}

func ruleExists(list []netlink.Rule, r *netlink.Rule) bool {
	for _, e := range list {
		if e.Table == r.Table && e.Priority == r.Priority && ipnetEqual(e.Src, r.Src) && ipnetEqual(e.Dst, r.Dst) {
			return true
		}
	}
	return false
}

func ipnetEqual(a, b *net.IPNet) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.String() == b.String()
}

// applySysctls writes net.* sysctls. Defaults whose key does not exist (a
// module not loaded, IPv6 disabled) are skipped; a config key that does not
// exist is an error.
func (s *Setup) applySysctls(m map[string]string, defaults bool) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		err := s.writeSysctl(k, m[k])
		if err != nil && defaults && errors.Is(err, os.ErrNotExist) {
			s.Log.WithField("sysctl", k).Debug("not present; skipped")
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Setup) writeSysctl(key, val string) error {
	p := filepath.Join(s.SysctlRoot, strings.ReplaceAll(key, ".", "/"))
	if err := os.WriteFile(p, []byte(val), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, val, err)
	}
	return nil
}

func nicNames(nics []NIC) string {
	var names []string
	for _, n := range nics {
		names = append(names, fmt.Sprintf("%s(%s)", n.Name, n.MAC))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, " ")
}

// hostNet converts a prefix (keeping its host bits) for netlink.
func hostNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
