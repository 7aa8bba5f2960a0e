package cfgdiff

import (
	"strconv"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
)

const base = `version: 1
network:
  failover: {members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {members: [eth2], addresses: [198.51.100.2/24]}
  external: {members: [eth3], addresses: [203.0.113.2/24]}
  routes:
    - {to: 10.20.0.0/16, via: 198.51.100.254}
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: web}
  - {name: east, vip: 198.51.100.150, port: 443, pool: web, internal: true, local_address_pool: la}
pools:
  web:
    members:
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080}
local_address_pools:
  la: {addresses: [198.51.100.201-209]}
snat:
  ipools:
    out: {addresses: [203.0.113.200]}
  rules:
    - {source: 198.51.100.0/24, ipool: out}
management:
  api: {listen: internal, token: "a-token-of-16-chars-or-more"}
`

func parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, doc)
	}
	return c
}

func diff(t *testing.T, old, new string) *Diff {
	t.Helper()
	d, err := Compute(parse(t, old), parse(t, new), Engine(engine.Overrides{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func edit(t *testing.T, doc, old, new string) string {
	t.Helper()
	out := strings.Replace(doc, old, new, 1)
	if out == doc {
		t.Fatalf("%q not in the config", old)
	}
	return out
}

// requireLines checks that the diff's text has every line of want (in
// its section) and nothing else.
func requireLines(t *testing.T, d *Diff, want map[string][]string) {
	t.Helper()
	got := map[string][]string{}
	for _, s := range d.Sections {
		got[s.Title] = s.Lines
	}
	for title, lines := range want {
		if strings.Join(got[title], "\n") != strings.Join(lines, "\n") {
			t.Errorf("section %q:\n got  %q\n want %q", title, got[title], lines)
		}
	}
	for title := range got {
		if _, ok := want[title]; !ok {
			t.Errorf("unexpected section %q: %q", title, got[title])
		}
	}
	if t.Failed() {
		t.Logf("whole diff:\n%s", d)
	}
}

func TestSameConfigChangesNothing(t *testing.T) {
	d := diff(t, base, base)
	if !d.Empty() || d.String() != "no changes\n" {
		t.Fatalf("diff of a config with itself:\n%s", d)
	}
}

func TestAddVirtualServer(t *testing.T) {
	next := edit(t, base, "pools:\n", "  - {name: web2, vip: 203.0.113.101, port: 8000-8010, pool: r, scheduler: rr, persistence: {enabled: false}}\npools:\n  r: {members: [{address: 198.51.100.21}]}\n")
	d := diff(t, base, next)
	mark := parse(t, next).VirtualServers[2].Mark()
	fwm := "FWM  " + itoa(mark) + " (web2)"
	requireLines(t, d, map[string][]string{
		"IPVS": {
			"+ " + fwm + " rr",
			"+   " + fwm + " -> 198.51.100.21:0 Masq weight 1",
		},
		"addresses":                           {"+ 203.0.113.101 on external (VIP of web2)"},
		"nftables nat (marks, FullNAT, SNAT)": {"+ mark tcp 203.0.113.101 port 8000-8010 with " + hex(mark) + " (web2)"},
		"nftables input filter":               {"+ external (external) admits tcp 203.0.113.101 port 8000-8010 (web2)"},
	})
	if d.NeedsReboot() {
		t.Error("a new virtual server needs no reboot")
	}
}

func TestServiceAndDestinationChanges(t *testing.T) {
	next := edit(t, base, "{name: web, vip: 203.0.113.100, port: 80, pool: web}", "{name: web, vip: 203.0.113.100, port: 80, pool: web, scheduler: rr, persistence: {timeout: 300s, netmask: 24}}")
	next = edit(t, next, "{address: 198.51.100.12, port: 8080}", "{address: 198.51.100.12, port: 8080, weight: 5}\n      - {address: 198.51.100.13, port: 8080}")
	next = edit(t, next, "      - {address: 198.51.100.11, port: 8080}\n", "")
	d := diff(t, base, next)
	web, east := "TCP  203.0.113.100:80 (web)", "TCP  198.51.100.150:443 (east)"
	requireLines(t, d, map[string][]string{
		"IPVS": {
			"~   " + east + " -> 198.51.100.12:8080 weight 1 -> 5",
			"+   " + east + " -> 198.51.100.13:8080 Masq weight 1",
			"~   " + east + " -> 198.51.100.11:8080 weight 1 -> 0 (removed: drains, deleted when its connections end)",
			"~ " + web + " wrr persistent 600 -> rr persistent 300 mask /24",
			"~   " + web + " -> 198.51.100.12:8080 weight 1 -> 5",
			"+   " + web + " -> 198.51.100.13:8080 Masq weight 1",
			"~   " + web + " -> 198.51.100.11:8080 weight 1 -> 0 (removed: drains, deleted when its connections end)",
		},
	})
}

func TestRemoveVirtualServerAndSNAT(t *testing.T) {
	next := edit(t, base, "  - {name: web, vip: 203.0.113.100, port: 80, pool: web}\n", "")
	next = edit(t, next, "[203.0.113.200]", "[203.0.113.201-202]")
	d := diff(t, base, next)
	web := "TCP  203.0.113.100:80 (web)"
	requireLines(t, d, map[string][]string{
		"IPVS": {
			"- " + web + " wrr persistent 600",
			"-   " + web + " -> 198.51.100.11:8080 Masq weight 1",
			"-   " + web + " -> 198.51.100.12:8080 Masq weight 1",
		},
		"addresses": {
			"- 203.0.113.100 on external (VIP of web)",
			"- 203.0.113.200 on external (SNAT ipool out)",
			"+ 203.0.113.201 on external (SNAT ipool out)",
			"+ 203.0.113.202 on external (SNAT ipool out)",
		},
		"nftables nat (marks, FullNAT, SNAT)": {
			"- SNAT from 198.51.100.0/24 out external to 203.0.113.200",
			"+ SNAT from 198.51.100.0/24 out external to 203.0.113.201-203.0.113.202",
		},
		"nftables input filter": {"- external (external) admits tcp 203.0.113.100 port 80 (web)"},
	})
}

func TestNetworkAndVRRPNeedReboot(t *testing.T) {
	next := edit(t, base, "internal: {members: [eth2],", "internal: {members: [eth2], mtu: 9000,")
	next = edit(t, next, "    - {to: 10.20.0.0/16, via: 198.51.100.254}\n", "    - {to: 10.20.0.0/16, via: 198.51.100.254}\n    - {to: 10.30.0.0/16, via: 198.51.100.253, metric: 10}\n")
	next = edit(t, next, "token: \"a-token-of-16-chars-or-more\"", "token: \"another-token-of-16-chars\", port: 8081")
	next += "kernel: {cmdline: \"quiet\"}\nmonitors:\n  web: {type: tcp}\n"
	d := diff(t, base, next)
	requireLines(t, d, map[string][]string{
		"health checks": {"+ monitors.web: {type: tcp, interval: 5s, timeout: 2s, rise: 2, fall: 3, initial_state: unknown}"},
		"network (bonds, addresses, routes, sysctls)": {
			"~ network.internal.mtu: 1500 -> 9000",
			"+ network.routes[1]: {to: 10.30.0.0/16, via: 198.51.100.253, metric: 10}",
		},
		"kernel": {"~ kernel.cmdline: (unset) -> quiet"},
		"management (console, API, logs)": {
			"~ management.api.port: 8080 -> 8081",
			"~ management.api.token: changed (a secret: not shown)",
		},
		"nftables input filter": {
			"- internal (internal) admits tcp port 8080 (api)",
			"+ internal (internal) admits tcp port 8081 (api)",
		},
	})
	if !d.NeedsReboot() {
		t.Error("network changes need a reboot")
	}
	if s := d.String(); strings.Contains(s, "token-of-16") || !strings.Contains(s, "network (bonds, addresses, routes, sysctls) (takes effect at the next boot):") {
		t.Errorf("diff text:\n%s", s)
	}
}

func TestNothingRunningYet(t *testing.T) {
	d, err := Compute(nil, parse(t, base), Engine(engine.Overrides{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	s := d.String()
	for _, want := range []string{"+ TCP  203.0.113.100:80 (web) wrr persistent 600", "+ 198.51.100.201 on internal (local address)", "+ SNAT from 198.51.100.0/24 out external to 203.0.113.200"} {
		if !strings.Contains(s, want) {
			t.Errorf("no %q in\n%s", want, s)
		}
	}
}

// Disabled members (operator overrides) are part of both states, so a
// config change does not show them as changes.
func TestOverridesOnBothSides(t *testing.T) {
	cfg := parse(t, base)
	ov := engine.Overrides{}.With(cfg.Pools["web"].Members[0].Ref("web"), true)
	d, err := Compute(cfg, parse(t, base), Engine(ov, nil))
	if err != nil || !d.Empty() {
		t.Fatalf("err %v, diff:\n%s", err, d)
	}
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }
func hex(v uint32) string  { return "0x" + strconv.FormatUint(uint64(v), 16) }

// A config with a monitor (its expect_status is a slice with a String
// method) diffs instead of panicking.
func TestDiffWithAMonitor(t *testing.T) {
	withMonitor := base + "\nmonitors:\n  m1: {type: tcp, interval: 1s, timeout: 500ms}\n"
	d, err := Compute(parse(t, withMonitor), parse(t, strings.Replace(withMonitor, "interval: 1s", "interval: 2s", 1)), Engine(engine.Overrides{}, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.String(), "monitors.m1.interval: 1s -> 2s") {
		t.Fatalf("diff:\n%s", d.String())
	}
}
