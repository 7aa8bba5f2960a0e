package addrs_test

import (
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/addrs"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/vishvananda/netlink"
)

// TestOwnerOnRealLinks runs the owner against veth stand-ins for the bonds in a fresh
// network namespace: addresses land as /32 with the daemon's label, a self
// IP equal to nothing wanted is left alone, and going VRRP removes exactly
// the floating addresses.
func TestOwnerOnRealLinks(t *testing.T) {
	ns := testkit.NewNS(t, "hwaddrs")
	nl := ns.Netlink()
	for _, l := range []struct{ name, self string }{{"internal", "198.51.100.2/24"}, {"external", "203.0.113.2/24"}} {
		// veth, not dummy: the host kernel has no dummy module.
		if err := nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.name}, PeerName: l.name[:3] + "-peer"}); err != nil {
			t.Fatal(err)
		}
		link, _ := nl.LinkByName(l.name)
		a, _ := netlink.ParseAddr(l.self)
		if err := nl.AddrAdd(link, a); err != nil {
			t.Fatal(err)
		}
		if err := nl.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
	list := func(link string) map[string]string {
		l, err := nl.LinkByName(link)
		if err != nil {
			t.Fatal(err)
		}
		as, err := nl.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, a := range as {
			out[a.IPNet.String()] = a.Label
		}
		return out
	}
	o := addrs.NewOwner(nl, quiet())
	if _, _, err := apply(o, engine.Addrs(parse(t, network))); err != nil {
		t.Fatal(err)
	}
	ext := list("external")
	for _, a := range []string{"203.0.113.100/32", "203.0.113.200/32", "203.0.113.201/32"} {
		if ext[a] != "external:lb" {
			t.Errorf("external %s: label %q (present: %v)", a, ext[a], ext)
		}
	}
	if ext["203.0.113.2/24"] != "external" {
		t.Errorf("self IP changed: %v", ext)
	}
	if in := list("internal"); in["198.51.100.100/32"] != "internal:lb" || in["198.51.100.201/32"] != "internal:lb" {
		t.Errorf("internal: %v", in)
	}
	// A new owner (daemon restart) going VRRP removes the floating ones by
	// their label.
	o2 := addrs.NewOwner(nl, quiet())
	if _, _, err := apply(o2, engine.Addrs(parse(t, network+vrrpSection))); err != nil {
		t.Fatal(err)
	}
	if ext := list("external"); len(ext) != 1 {
		t.Errorf("external after going vrrp: %v (want the self IP only)", ext)
	}
	if in := list("internal"); len(in) != 1 {
		t.Errorf("internal after going vrrp: %v (want the self IP only: local addresses float with VRRP)", in)
	}
}
