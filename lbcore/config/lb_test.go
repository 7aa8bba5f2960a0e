package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
	"go.yaml.in/yaml/v3"
)

const lbNetwork = `
version: 1
network:
  failover: {members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {members: [eth2], addresses: [198.51.100.2/24]}
  external: {members: [eth3], addresses: [203.0.113.2/24]}
  routes:
    - {to: 10.20.0.0/16, via: 198.51.100.254}
`

const lbGood = lbNetwork + `
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: web}
  - {name: range, vip: 203.0.113.100, port: 8000-8010, pool: webr, mode: fullnat, local_address_pool: la}
  - {name: east, vip: 198.51.100.150, port: 443, pool: far, internal: true, local_address_pool: la, scheduler: rr}
  - {name: dns, vip: 203.0.113.101, port: 53, protocol: udp, pool: dns, mode: dr, persistence: {enabled: false}}
pools:
  web:
    monitor: http
    members:
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080, weight: 3}
  webr:
    members: [{address: 198.51.100.11}, {address: 198.51.100.12}]
  far:
    members: [{address: 10.20.1.5, port: 443}]
  dns:
    members: [{address: 198.51.100.21}]
local_address_pools:
  la: {addresses: [198.51.100.201-209]}
snat:
  ipools:
    out: {addresses: [203.0.113.200-203.0.113.209]}
  rules:
    - {source: 198.51.100.0/24, ipool: out}
`

// lbErrors decodes doc, applies defaults, adds an "http" monitor and runs the
// LB validation alone (the other sections are validated by their owners).
func lbErrors(t *testing.T, doc string) []*cfgerr.FieldError {
	t.Helper()
	var c Config
	if _, err := decode([]byte(doc), &c); err != nil {
		var list *cfgerr.List
		if !errors.As(err, &list) {
			t.Fatalf("decode: %v", err)
		}
		return list.Errors()
	}
	c.ApplyDefaults()
	c.Monitors = Monitors{"http": {}}
	if err := c.Network.Validate(); err != nil {
		t.Fatalf("test network section is invalid: %v", err)
	}
	var errs cfgerr.List
	c.validateLB(&errs)
	return errs.Errors()
}

func TestLBGoodConfigAndDefaults(t *testing.T) {
	if errs := lbErrors(t, lbGood); len(errs) != 0 {
		t.Fatalf("good config rejected: %v", errs)
	}
	var c Config
	if err := yaml.Unmarshal([]byte(lbGood), &c); err != nil {
		t.Fatal(err)
	}
	c.ApplyDefaults()
	web := c.VirtualServers[0]
	if web.Protocol != "tcp" || web.Mode != ModeNAT || web.Scheduler != "wrr" {
		t.Errorf("web defaults: proto=%s mode=%s sched=%s", web.Protocol, web.Mode, web.Scheduler)
	}
	if !web.PersistenceOn() || web.Persistence.Timeout.D() != 600*time.Second {
		t.Errorf("persistence default: on=%v timeout=%v, want on 600s", web.PersistenceOn(), web.Persistence.Timeout)
	}
	if c.VirtualServers[3].PersistenceOn() {
		t.Errorf("persistence: {enabled: false} was overridden")
	}
	if c.VirtualServers[2].Mode != ModeFullNAT {
		t.Errorf("internal VS default mode = %s, want fullnat", c.VirtualServers[2].Mode)
	}
	if c.IPVSTimeouts.TCP.D() != 90*time.Second || c.IPVSTimeouts.UDP != 0 {
		t.Errorf("ipvs timeouts = %+v, want tcp 90s", c.IPVSTimeouts)
	}
	if w := c.Pools["web"].Members[0].MemberWeight(); w != 1 {
		t.Errorf("default weight = %d", w)
	}
	if c.SNAT.Rules[0].Out != "external" || c.OutInterface("external") != "external" {
		t.Errorf("snat out default = %q", c.SNAT.Rules[0].Out)
	}
	r, err := c.LocalAddressPools["la"].Range()
	if err != nil || r.First.String() != "198.51.100.201" || r.Last.String() != "198.51.100.209" {
		t.Errorf("local range = %v %v", r, err)
	}
	if la := c.LocalAddresses(); len(la) != 9 || la[0].String() != "198.51.100.201" || la[8].String() != "198.51.100.209" {
		t.Errorf("local addresses = %v", la)
	}
	if !c.VirtualServers[1].IsRange() || c.VirtualServers[1].Mark() == 0 || c.VirtualServers[0].IsRange() {
		t.Errorf("range detection wrong")
	}
}

func TestLBValidationRules(t *testing.T) {
	cases := []struct {
		name, doc, path, msg string
	}{
		{"overlapping same port", lbNetwork + `
virtual_servers:
  - {name: a, vip: 203.0.113.100, port: 80, pool: p, persistence: {enabled: false}}
  - {name: b, vip: 203.0.113.100, port: 80, pool: p}
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[1].port", "overlaps virtual_servers[0]"},
		{"overlapping ranges", lbNetwork + `
virtual_servers:
  - {name: a, vip: 203.0.113.100, port: 8000-8010, pool: p}
  - {name: b, vip: 203.0.113.100, port: 8010-8020, pool: p}
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[1].port", "overlaps"},
		{"member unreachable", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: p, mode: tun}]
pools: {p: {members: [{address: 192.168.7.7}]}}`, "pools.p.members[0].address", "not reachable"},
		{"fullnat without local pool", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: p, mode: fullnat}]
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[0].local_address_pool", "needs a local address pool"},
		{"internal not fullnat", lbNetwork + `
virtual_servers: [{name: a, vip: 198.51.100.150, port: 80, pool: p, internal: true, mode: nat}]
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[0].mode", "needs mode fullnat"},
		{"nat member behind a router", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: p}]
pools: {p: {members: [{address: 10.20.3.4}]}}`, "virtual_servers[0].mode", "cannot be routed back"},
		{"dr member behind a router", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: p, mode: dr}]
pools: {p: {members: [{address: 10.20.3.4}]}}`, "virtual_servers[0].mode", "directly connected"},
		{"unknown pool", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: nope}]`, "virtual_servers[0].pool", `unknown pool "nope"`},
		{"unknown monitor", lbNetwork + `
pools: {p: {monitor: tcpx, members: [{address: 198.51.100.11}]}}`, "pools.p.monitor", `unknown monitor "tcpx"`},
		{"unknown ipool", lbNetwork + `
snat: {rules: [{source: 198.51.100.0/24, ipool: x}]}`, "snat.rules[0].ipool", `unknown ipool "x"`},
		{"unknown local pool", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: p, mode: fullnat, local_address_pool: zz}]
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[0].local_address_pool", `unknown local address pool "zz"`},
		{"bad vip", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.300, port: 80, pool: p}]
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[0].vip", "is not an IP address"},
		{"bad port", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 70000, pool: p}]
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[0].port", "not a port"},
		{"backwards range", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 90-80, pool: p}]
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[0].port", "ends before"},
		{"bad member address", lbNetwork + `
pools: {p: {members: [{address: nonsense}]}}`, "pools.p.members[0].address", "not an IP address"},
		{"bad member port", lbNetwork + `
pools: {p: {members: [{address: 198.51.100.11, port: 99999}]}}`, "pools.p.members[0].port", "not a port"},
		{"bad weight", lbNetwork + `
pools: {p: {members: [{address: 198.51.100.11, weight: -2}]}}`, "pools.p.members[0].weight", "out of range"},
		{"duplicate member", lbNetwork + `
pools: {p: {members: [{address: 198.51.100.11, port: 80}, {address: 198.51.100.11, port: 80}]}}`, "pools.p.members[1]", "already listed"},
		{"duplicate vs name", lbNetwork + `
virtual_servers:
  - {name: a, vip: 203.0.113.100, port: 80, pool: p}
  - {name: a, vip: 203.0.113.100, port: 81, pool: p}
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[1].name", "already used"},
		{"bad scheduler", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: p, scheduler: fastest}]
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[0].scheduler", "unknown scheduler"},
		{"bad mode", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: p, mode: magic}]
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[0].mode", "unknown mode"},
		{"bad protocol", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: p, protocol: sctp}]
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[0].protocol", "one of tcp, udp"},
		{"bad netmask", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: p, persistence: {netmask: 255.0.255.0}}]
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[0].persistence.netmask", "not a contiguous netmask"},
		{"local pool off internal", lbNetwork + `
local_address_pools: {la: {addresses: [203.0.113.201-209]}}`, "local_address_pools.la.addresses", "directly connected Internal"},
		{"local pool not contiguous", lbNetwork + `
local_address_pools: {la: {addresses: [198.51.100.201, 198.51.100.205]}}`, "local_address_pools.la.addresses", "contiguous"},
		{"bad ipool address", lbNetwork + `
snat: {ipools: {o: {addresses: [203.0.113.x]}}}`, "snat.ipools.o.addresses[0]", "not an address"},
		{"local pool on nat", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: p, local_address_pool: la}]
local_address_pools: {la: {addresses: [198.51.100.201-209]}}
pools: {p: {members: [{address: 198.51.100.11}]}}`, "virtual_servers[0].local_address_pool", "only applies to mode fullnat"},
		{"dr port change", lbNetwork + `
virtual_servers: [{name: a, vip: 203.0.113.100, port: 80, pool: p, mode: dr}]
pools: {p: {members: [{address: 198.51.100.11, port: 8080}]}}`, "virtual_servers[0].mode", "cannot change the destination port"},
		{"sorry server unreachable", lbNetwork + `
pools: {p: {sorry_server: "192.168.1.1:80", members: [{address: 198.51.100.11}]}}`, "pools.p.sorry_server", "not reachable"},
		{"quorum", lbNetwork + `
pools: {p: {quorum: 3, members: [{address: 198.51.100.11}]}}`, "pools.p.quorum", "out of range"},
		{"slow start negative", lbNetwork + `
pools: {p: {slow_start: -5s, members: [{address: 198.51.100.11}]}}`, "pools.p.slow_start", "whole number of seconds from 1s to 1h"},
		{"slow start fraction", lbNetwork + `
pools: {p: {slow_start: 1500ms, members: [{address: 198.51.100.11}]}}`, "pools.p.slow_start", "whole number of seconds"},
		{"slow start too long", lbNetwork + `
pools: {p: {slow_start: 2h, members: [{address: 198.51.100.11}]}}`, "pools.p.slow_start", "from 1s to 1h"},
		{"slow start not a duration", lbNetwork + `
pools: {p: {slow_start: 30, members: [{address: 198.51.100.11}]}}`, "pools.p.slow_start", "duration"},
		{"timeout", lbNetwork + `
ipvs_timeouts: {tcp: 1500ms}`, "ipvs_timeouts.tcp", "whole seconds"},
		{"snat bad source", lbNetwork + `
snat: {ipools: {o: {addresses: [203.0.113.200]}}, rules: [{source: 198.51.100.0, ipool: o}]}`, "snat.rules[0].source", "not an address in CIDR form"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := lbErrors(t, tc.doc)
			for _, e := range errs {
				if e.Path == tc.path && strings.Contains(e.Msg, tc.msg) {
					return
				}
			}
			t.Fatalf("want an error at %s containing %q, got %v", tc.path, tc.msg, errs)
		})
	}
}

// TestLBErrorsThroughParse checks the loader prefixes nothing extra and adds
// the YAML line to LB errors.
func TestLBErrorsThroughParse(t *testing.T) {
	doc := lbNetwork + `
virtual_servers:
  - name: a
    vip: 198.51.100.150
    port: 80
    internal: true
    mode: dr
    pool: p
pools: {p: {members: [{address: 198.51.100.11}]}}
`
	_, err := Parse([]byte(doc))
	if err == nil {
		t.Fatal("internal dr VS accepted")
	}
	want := "virtual_servers[0].mode (line 15): an internal (east-west) virtual server needs mode fullnat"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	if _, err := Parse([]byte(strings.Replace(doc, "mode: dr", "mode: fullnat\n    local_address_pool: la", 1) + "local_address_pools: {la: {addresses: [198.51.100.201-209]}}\n")); err != nil {
		t.Fatalf("fixed config rejected: %v", err)
	}
}

func TestParseHelpers(t *testing.T) {
	if m, err := parseNetmask("255.255.255.0"); err != nil || m.Len(false) != 24 {
		t.Errorf("netmask 255.255.255.0 = %+v %v", m, err)
	}
	if m, err := parseNetmask("/16"); err != nil || m.Len(false) != 16 {
		t.Errorf("netmask /16 = %+v %v", m, err)
	}
	if m, err := parseNetmask(""); err != nil || m.Len(true) != 128 {
		t.Errorf("netmask v6 default = %+v %v", m, err)
	}
	if m, _ := parseNetmask("255.255.0.0"); m.check(true) == nil {
		t.Error("a dotted netmask was accepted for IPv6")
	}
	if _, err := ParseAddressRange("10.0.0.5-10.0.0.1"); err == nil {
		t.Error("backwards address range accepted")
	}
	if r, err := ParsePortRange("8000-8010"); err != nil || r.From != 8000 || r.To != 8010 {
		t.Errorf("port range = %v %v", r, err)
	}
}

// TestFloatingAddressesMustBeVRRPAddresses: with vrrp instances, a VIP or
// SNAT address that is not a virtual address of the right group is
// rejected (vrrpd would never announce it); standalone, anything goes.
func TestFloatingAddressesMustBeVRRPAddresses(t *testing.T) {
	const lb = lbNetwork + `
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: p}
  - {name: east, vip: 198.51.100.150, port: 80, pool: p, internal: true, local_address_pool: la}
pools: {p: {members: [{address: 198.51.100.11, port: 8080}]}}
local_address_pools: {la: {addresses: [198.51.100.201-202]}}
snat:
  ipools: {out: {addresses: [203.0.113.200-201]}}
  rules: [{source: 198.51.100.0/24, ipool: out}]
`
	if errs := lbErrors(t, lb); len(errs) != 0 {
		t.Fatalf("standalone config rejected: %v", errs)
	}
	good := lb + `
vrrp:
  peers: [192.0.2.2]
  instances:
    - {vrid: 1, internal: [198.51.100.1/24, 198.51.100.150, 198.51.100.201, 198.51.100.202], external: [203.0.113.100, 203.0.113.200, 203.0.113.201]}
`
	if errs := lbErrors(t, good); len(errs) != 0 {
		t.Fatalf("vrrp config with every floating address listed rejected: %v", errs)
	}
	cases := []struct{ name, from, to, path, msg string }{
		{"external VIP missing", "external: [203.0.113.100, ", "external: [", "virtual_servers[0].vip", "203.0.113.100 is not a virtual address of the external group"},
		{"internal VIP on the wrong group", "internal: [198.51.100.1/24, 198.51.100.150, ", "internal: [198.51.100.1/24, ", "virtual_servers[1].vip", "never be announced"},
		{"local address missing", ", 198.51.100.202]", "]", "local_address_pools.la.addresses", "198.51.100.202: not virtual addresses of the internal group"},
		{"snat address missing", ", 203.0.113.201]", "]", "snat.ipools.out.addresses", "203.0.113.201: not virtual addresses of the external group"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(good, tc.from, tc.to, 1)
			if doc == good {
				t.Fatalf("test edit %q did not apply", tc.from)
			}
			for _, e := range lbErrors(t, doc) {
				if e.Path == tc.path && strings.Contains(e.Msg, tc.msg) {
					return
				}
			}
			t.Fatalf("want an error at %s containing %q, got %v", tc.path, tc.msg, lbErrors(t, doc))
		})
	}
	// Through the loader (vrrp section validated too): the same message.
	_, err := Parse([]byte(strings.Replace(good, "external: [203.0.113.100, ", "external: [", 1)))
	if err == nil || !strings.Contains(err.Error(), "virtual_servers[0].vip") {
		t.Fatalf("Parse: %v", err)
	}
}

func TestMonitoredMemberNeedsAPort(t *testing.T) {
	doc := lbNetwork + `
pools: {p: {monitor: http, members: [{address: 198.51.100.11}]}}
virtual_servers:
  - {name: r, vip: 203.0.113.100, port: 8000-8010, pool: p}
`
	errs := lbErrors(t, doc)
	if len(errs) != 1 || errs[0].Path != "pools.p.members[0].port" || !strings.Contains(errs[0].Msg, "no port to check") {
		t.Fatalf("got %v", errs)
	}
	// A single-port VS on the pool gives the port.
	if errs := lbErrors(t, doc+"  - {name: s, vip: 203.0.113.101, port: 80, pool: p}\n"); len(errs) != 0 {
		t.Fatalf("single-port VS: %v", errs)
	}
}

// slow_start reads as a duration; 0s and absent are both off.
func TestSlowStartParsed(t *testing.T) {
	for doc, want := range map[string]time.Duration{
		`pools: {p: {slow_start: 30s, members: [{address: 198.51.100.11}]}}`: 30 * time.Second,
		`pools: {p: {slow_start: 0s, members: [{address: 198.51.100.11}]}}`:  0,
		`pools: {p: {members: [{address: 198.51.100.11}]}}`:                  0,
	} {
		c, err := Parse([]byte(lbNetwork + "\n" + doc + "\n"))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if got := c.Pools["p"].SlowStart.D(); got != want {
			t.Errorf("%s: slow start %s, want %s", doc, got, want)
		}
	}
}
