package engine

import (
	"fmt"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/filter"
)

const cfgHA = `
version: 1
network:
  failover: {bond: fo0, members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {bond: in0, members: [eth2], addresses: [198.51.100.2/24]}
  external: {bond: ex0, members: [eth3], addresses: [203.0.113.2/24]}
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: p}
  - {name: games, vip: 203.0.113.101, port: 7000-7010, protocol: udp, pool: g}
  - {name: east, vip: 198.51.100.150, port: 80, pool: p, internal: true, mode: fullnat, local_address_pool: la}
pools: {p: {members: [{address: 198.51.100.11, port: 8080}]}, g: {members: [{address: 198.51.100.12}]}}
local_address_pools: {la: {addresses: [198.51.100.201-202]}}
vrrp:
  peers: [192.0.2.2]
  instances:
    - {vrid: 1, internal: [198.51.100.1/24, 198.51.100.150, 198.51.100.201, 198.51.100.202], external: [203.0.113.100, 203.0.113.101]}
management:
  api: {port: 9443}
`

// zoneText renders one zone for comparisons.
func zoneText(z filter.Zone) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s@%s ping=%v", z.Name, z.Iface, z.Ping)
	if z.PeerPing {
		b.WriteString(" peerping")
	}
	for _, s := range z.Services {
		fmt.Fprintf(&b, " svc:%s:%s:%s/%d-%d", s.Name, s.Addr, s.Proto, s.From, s.To)
	}
	for _, p := range z.Ports {
		fmt.Fprintf(&b, " port:%s:%s/%d<-%d", p.Name, p.Proto, p.Port, p.SrcPort)
	}
	for _, p := range z.Peers {
		fmt.Fprintf(&b, " peer:%s", p)
	}
	for _, r := range z.PeerRules {
		fmt.Fprintf(&b, " peerrule:%s:%s/%d", r.Name, r.Proto, r.Port)
	}
	return b.String()
}

func TestFilterPolicyFromConfig(t *testing.T) {
	p, err := Filter(parse(t, cfgHA), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"external@ex0 ping=true svc:web:203.0.113.100:tcp/80-80 svc:games:203.0.113.101:udp/7000-7010",
		"internal@in0 ping=true svc:east:198.51.100.150:tcp/80-80 port:api:tcp/9443<-0",
		"failover@fo0 ping=false peerping peer:192.0.2.2/32 peerrule:vrrp:vrrp/0 peerrule:conntrack-sync:udp/7040 peerrule:ipvs-sync:udp/8848",
	}
	if len(p.Zones) != len(want) {
		t.Fatalf("%d zones, want %d (no management NIC): %+v", len(p.Zones), len(want), p.Zones)
	}
	for i, w := range want {
		if got := zoneText(p.Zones[i]); got != w {
			t.Errorf("zone %d:\n got %s\nwant %s", i, got, w)
		}
	}

	// With a management NIC given by MAC the API moves there (its default
	// side), next to the DHCP client; Internal no longer admits it.
	mgmt := strings.Replace(cfgHA, "  external: {bond: ex0", "  management: {interface: \"52:54:00:00:00:99\"}\n  external: {bond: ex0", 1)
	if _, err := Filter(parse(t, mgmt), nil); err == nil {
		t.Fatal("a management NIC given by MAC without a resolver was accepted")
	}
	p, err = Filter(parse(t, mgmt), func(mac string) (string, error) {
		if mac != "52:54:00:00:00:99" {
			return "", fmt.Errorf("unknown %s", mac)
		}
		return "eth9", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, w := zoneText(p.Zones[1]), "internal@in0 ping=true svc:east:198.51.100.150:tcp/80-80"; got != w {
		t.Errorf("internal with API on management:\n got %s\nwant %s", got, w)
	}
	if got, w := zoneText(p.Zones[3]), "management@eth9 ping=true port:dhcp-client:udp/68<-67 port:api:tcp/9443<-0"; got != w {
		t.Errorf("management:\n got %s\nwant %s", got, w)
	}

	// With vrrp.sync_key config sync's port is admitted from the peer on
	// Failover, and nowhere else.
	synced := strings.Replace(cfgHA, "  peers: [192.0.2.2]\n", "  peers: [192.0.2.2]\n  sync_key: 0123456789abcdef\n", 1)
	p, err = Filter(parse(t, synced), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, w := zoneText(p.Zones[2]), want[2]+" peerrule:config-sync:tcp/7041"; got != w {
		t.Errorf("failover with sync_key:\n got %s\nwant %s", got, w)
	}
	for _, i := range []int{0, 1} {
		if got := zoneText(p.Zones[i]); got != want[i] {
			t.Errorf("zone %d changed by sync_key: %s", i, got)
		}
	}

	// Standalone (no VRRP): Failover admits nothing.
	alone := cfgHA[:strings.Index(cfgHA, "vrrp:")] + "management:\n  api: {port: 9443}\n"
	p, err = Filter(parse(t, alone), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, w := zoneText(p.Zones[2]), "failover@fo0 ping=false"; got != w {
		t.Errorf("standalone failover: %s, want %s", got, w)
	}
}
