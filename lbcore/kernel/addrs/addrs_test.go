package addrs_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/addrs"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const network = `
version: 1
network:
  failover: {members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {members: [eth2], addresses: [198.51.100.2/24]}
  external: {members: [eth3], addresses: [203.0.113.2/24]}
local_address_pools:
  la: {addresses: [198.51.100.201-202]}
  unused: {addresses: [198.51.100.209]}
snat:
  ipools: {out: {addresses: [203.0.113.200-201]}}
  rules: [{source: 198.51.100.0/24, ipool: out}]
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: p}
  - {name: web-tls, vip: 203.0.113.100, port: 443, pool: p}
  - {name: east, vip: 198.51.100.100, port: 80, pool: p, internal: true, local_address_pool: la}
pools:
  p: {members: [{address: 198.51.100.11, port: 8080}]}
`

const vrrpSection = `
vrrp:
  peers: [192.0.2.2]
  instances:
    - vrid: 1
      internal: [198.51.100.1/24, 198.51.100.100, 198.51.100.201, 198.51.100.202]
      external: [203.0.113.100, 203.0.113.200, 203.0.113.201]
`

func parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func planText(ws []addrs.Want) string {
	var s []string
	for _, w := range ws {
		s = append(s, w.Link+" "+w.Addr.String())
	}
	return strings.Join(s, ", ")
}

func TestPlanStandaloneOwnsEverything(t *testing.T) {
	got := planText(engine.Addrs(parse(t, network)).Addrs)
	want := "external 203.0.113.100, external 203.0.113.200, external 203.0.113.201, internal 198.51.100.100, internal 198.51.100.201, internal 198.51.100.202"
	if got != want {
		t.Fatalf("standalone plan:\n got %s\nwant %s", got, want)
	}
}

// With VRRP every address lbd used to own floats (local addresses too,
// since issue 13: the new master must receive the members' replies), so
// vrrpd owns them all and lbd none.
func TestPlanWithVRRPOwnsNothing(t *testing.T) {
	got := planText(engine.Addrs(parse(t, network+vrrpSection)).Addrs)
	if want := ""; got != want {
		t.Fatalf("vrrp plan:\n got %s\nwant %s", got, want)
	}
}

// fakeNL is a few links with address lists, failing on request.
type fakeNL struct {
	addrs   map[string][]netlink.Addr
	failAdd netip.Addr
	calls   []string
}

func (f *fakeNL) LinkByName(name string) (netlink.Link, error) {
	if _, ok := f.addrs[name]; !ok {
		return nil, netlink.LinkNotFoundError{}
	}
	return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}}, nil
}

func (f *fakeNL) AddrList(l netlink.Link, _ int) ([]netlink.Addr, error) {
	return slices.Clone(f.addrs[l.Attrs().Name]), nil
}

func (f *fakeNL) AddrAdd(l netlink.Link, a *netlink.Addr) error {
	n := l.Attrs().Name
	f.calls = append(f.calls, "add "+n+" "+a.IPNet.String())
	if ip, _ := netip.AddrFromSlice(a.IP); ip.Unmap() == f.failAdd {
		return fmt.Errorf("injected: %w", unix.ENOMEM)
	}
	for _, h := range f.addrs[n] {
		if h.IP.Equal(a.IP) {
			return unix.EEXIST
		}
	}
	if a.Label != "" && !strings.HasPrefix(a.Label, n) {
		return errors.New("label must start with the link name")
	}
	f.addrs[n] = append(f.addrs[n], *a)
	return nil
}

func (f *fakeNL) AddrDel(l netlink.Link, a *netlink.Addr) error {
	n := l.Attrs().Name
	f.calls = append(f.calls, "del "+n+" "+a.IPNet.String())
	for i, h := range f.addrs[n] {
		if h.IP.Equal(a.IP) {
			f.addrs[n] = slices.Delete(f.addrs[n], i, i+1)
			return nil
		}
	}
	return unix.EADDRNOTAVAIL
}

func (f *fakeNL) list(link string) string {
	var s []string
	for _, a := range f.addrs[link] {
		s = append(s, a.IPNet.String())
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

func selfIP(cidr, label string) netlink.Addr {
	ip, n, _ := net.ParseCIDR(cidr)
	n.IP = ip
	return netlink.Addr{IPNet: n, Label: label}
}

func quiet() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

func TestApplyAddsRemovesOnlyItsOwn(t *testing.T) {
	nl := &fakeNL{addrs: map[string][]netlink.Addr{
		"internal": {selfIP("198.51.100.2/24", "internal")},
		// 203.0.113.100 already there, put by someone else (vrrpd, an operator).
		"external": {selfIP("203.0.113.2/24", "external"), selfIP("203.0.113.100/32", "")},
	}}
	o := addrs.NewOwner(nl, quiet())
	ch, _, err := apply(o, engine.Addrs(parse(t, network)))
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Added) != 5 || len(ch.Removed) != 0 {
		t.Fatalf("first apply: %+v", ch)
	}
	if got, want := nl.list("external"), "203.0.113.100/32 203.0.113.2/24 203.0.113.200/32 203.0.113.201/32"; got != want {
		t.Fatalf("external: %s, want %s", got, want)
	}
	// Same plan: nothing to do.
	nl.calls = nil
	if ch, _, err := apply(o, engine.Addrs(parse(t, network))); err != nil || !ch.Empty() || len(nl.calls) != 0 {
		t.Fatalf("second apply: %+v %v calls %v", ch, err, nl.calls)
	}
	// Going VRRP: VIPs, SNAT and local addresses are vrrpd's now and
	// leave; the address someone else put there stays; self IPs stay.
	ch, _, err = apply(o, engine.Addrs(parse(t, network+vrrpSection)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := nl.list("external"), "203.0.113.100/32 203.0.113.2/24"; got != want {
		t.Fatalf("external after going vrrp: %s, want %s", got, want)
	}
	if got, want := nl.list("internal"), "198.51.100.2/24"; got != want {
		t.Fatalf("internal after going vrrp: %s, want %s", got, want)
	}
	if len(ch.Removed) != 5 {
		t.Fatalf("removed %v, want 5", ch.Removed)
	}
}

func TestApplyRecognisesLabelledAddressesAfterRestart(t *testing.T) {
	nl := &fakeNL{addrs: map[string][]netlink.Addr{
		"internal": {selfIP("198.51.100.2/24", "internal"), selfIP("198.51.100.207/32", "internal:lb"), selfIP("198.51.100.201/32", "internal:lb")},
		"external": {selfIP("203.0.113.2/24", "external")},
	}}
	o := addrs.NewOwner(nl, quiet()) // a fresh daemon: remembers nothing
	if _, _, err := apply(o, engine.Addrs(parse(t, network))); err != nil {
		t.Fatal(err)
	}
	if got, want := nl.list("internal"), "198.51.100.100/32 198.51.100.2/24 198.51.100.201/32 198.51.100.202/32"; got != want {
		t.Fatalf("internal: %s, want %s (stale labelled .207 removed, .201 kept)", got, want)
	}
}

func TestApplyFailureUndoes(t *testing.T) {
	nl := &fakeNL{addrs: map[string][]netlink.Addr{
		"internal": {selfIP("198.51.100.2/24", "internal")},
		"external": {selfIP("203.0.113.2/24", "external")},
	}, failAdd: netip.MustParseAddr("203.0.113.201")}
	o := addrs.NewOwner(nl, quiet())
	if _, _, err := apply(o, engine.Addrs(parse(t, network))); err == nil || !strings.Contains(err.Error(), "203.0.113.201") {
		t.Fatalf("injected failure: %v", err)
	}
	if nl.list("external") != "203.0.113.2/24" || nl.list("internal") != "198.51.100.2/24" {
		t.Fatalf("failed apply left addresses: external %s, internal %s", nl.list("external"), nl.list("internal"))
	}
	// The undo function of a successful apply reverts it.
	nl.failAdd = netip.Addr{}
	_, undo, err := apply(o, engine.Addrs(parse(t, network)))
	if err != nil {
		t.Fatal(err)
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	if nl.list("external") != "203.0.113.2/24" || len(o.Owned()) != 0 {
		t.Fatalf("undo left %s / owned %v", nl.list("external"), o.Owned())
	}
}

func TestApplyMissingLinkIsAnError(t *testing.T) {
	nl := &fakeNL{addrs: map[string][]netlink.Addr{"internal": nil}}
	o := addrs.NewOwner(nl, quiet())
	if _, _, err := apply(o, engine.Addrs(parse(t, network))); err == nil || !strings.Contains(err.Error(), "external") {
		t.Fatalf("missing external bond: %v", err)
	}
	if len(nl.addrs["internal"]) != 0 {
		t.Fatalf("nothing may change: %v", nl.addrs["internal"])
	}
}

// apply runs o's stage Apply and returns its record and Undo (nil when
// nothing changed).
func apply(o *addrs.Owner, p addrs.Plan) (addrs.Change, func() error, error) {
	c, err := o.Apply(context.Background(), p)
	if err != nil {
		return addrs.Change{}, nil, err
	}
	ch, _ := c.Detail.(addrs.Change)
	return ch, c.Undo, nil
}
