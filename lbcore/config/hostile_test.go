package config

import (
	"regexp"
	"strings"
	"testing"
)

// hostileBase is a valid standalone config; every hostile case below
// changes one thing in it (line numbers in the comments).
const hostileBase = `version: 1
network:
  failover: {members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {members: [eth2], addresses: [198.51.100.2/24]}
  external: {members: [eth3], addresses: [203.0.113.2/24]}
  management: {interface: eth4, address: 192.0.2.129/25, gateway: 192.0.2.254}
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
`

// hostileCase is a config an operator could write by mistake or an
// attacker on purpose, and the refusal it must get.
type hostileCase struct {
	name     string
	old, new string // replace old (once) by new in hostileBase
	want     string // one refusal starts with this: `field.path (line N): reason`
}

var hostileCases = []hostileCase{
	// an address in two roles
	{"member is a VIP", "vip: 203.0.113.100", "vip: 198.51.100.11", "pools.web.members[0].address (line 15): 198.51.100.11 is already a VIP (virtual_servers[0].vip)"},
	{"member is a self IP", "address: 198.51.100.12,", "address: 198.51.100.2,", "pools.web.members[1].address (line 16): 198.51.100.2 is already a self IP (network.internal.addresses[0])"},
	{"local pool holds the self IP", "198.51.100.201-209", "198.51.100.1-9", "local_address_pools.la.addresses[0] (line 18): 198.51.100.2 is already a self IP"},
	{"local pool holds the gateway", "198.51.100.201-209", "198.51.100.250-254", "local_address_pools.la.addresses[0] (line 18): 198.51.100.254 is already a gateway (network.routes[0].via)"},
	{"local pool holds a member", "198.51.100.201-209", "198.51.100.10-19", "local_address_pools.la.addresses[0] (line 18): 198.51.100.11 is already a member"},
	{"local pool holds the broadcast", "198.51.100.201-209", "198.51.100.250-255", "local_address_pools.la.addresses[0] (line 18): 198.51.100.255 is the broadcast address of 198.51.100.0/24"},
	{"local pool holds the network address", "198.51.100.201-209", "198.51.100.0-1", "local_address_pools.la.addresses[0] (line 18): 198.51.100.0 is the network address of 198.51.100.0/24"},
	{"SNAT address is a self IP", "[203.0.113.200]", "[203.0.113.2]", "snat.ipools.out.addresses[0] (line 21): 203.0.113.2 is already a self IP"},
	{"SNAT address is a VIP", "[203.0.113.200]", "[203.0.113.100]", "snat.ipools.out.addresses[0] (line 21): 203.0.113.100 is already a VIP"},
	{"VIP is the gateway", "via: 198.51.100.254", "via: 198.51.100.150", "virtual_servers[1].vip (line 11): 198.51.100.150 is already a gateway"},
	{"management gateway is its own address", "gateway: 192.0.2.254", "gateway: 192.0.2.129", "network.management.gateway (line 6): 192.0.2.129 is already a self IP"},
	{"local address is a VIP", "198.51.100.201-209", "198.51.100.150", "local_address_pools.la.addresses[0] (line 18): 198.51.100.150 is already a VIP"},
	// network and broadcast addresses as hosts
	{"self IP is the network address", "[198.51.100.2/24]", "[198.51.100.0/24]", "network.internal.addresses[0] (line 4): 198.51.100.0 is the network address"},
	{"VIP is the broadcast address", "vip: 203.0.113.100", "vip: 203.0.113.255", "virtual_servers[0].vip (line 10): 203.0.113.255 is the broadcast address of 203.0.113.0/24"},
	{"gateway is the broadcast address", "via: 198.51.100.254", "via: 198.51.100.255", "network.routes[0].via (line 8): 198.51.100.255 is the broadcast address"},
	// overlapping subnets
	{"internal and external overlap", "[203.0.113.2/24]", "[198.51.100.130/25]", "network.external.addresses[0] (line 5): subnet 198.51.100.128/25 overlaps 198.51.100.0/24 of internal"},
	{"management overlaps failover", "address: 192.0.2.129/25", "address: 192.0.2.100/24", "network.management.address (line 6): subnet 192.0.2.0/24 overlaps 192.0.2.0/25 of failover"},
	{"failover swallows internal", "[192.0.2.1/25]", "[198.51.0.1/16]", "network.internal.addresses[0] (line 4): subnet 198.51.100.0/24 overlaps 198.51.0.0/16 of failover"},
	// next hops
	{"next hop off every subnet", "via: 198.51.100.254", "via: 10.99.0.1", "network.routes[0].via (line 8): next hop 10.99.0.1 is on no connected subnet"},
	{"next hop off its group", "via: 198.51.100.254}", "via: 198.51.100.254, group: external}", "network.routes[0].via (line 8): next hop 198.51.100.254 is on no connected subnet of group external"},
	{"management gateway off its subnet", "gateway: 192.0.2.254", "gateway: 10.0.0.1", "network.management.gateway (line 6): 10.0.0.1 is not on the management subnet"},
	// integers the kernel cannot take
	{"route metric overflows u32", "via: 198.51.100.254}", "via: 198.51.100.254, metric: 4294967296}", "network.routes[0].metric (line 8): 4294967296 is out of range"},
	{"negative fwmark", "port: 80, pool: web}", "port: 80, pool: web, fwmark: -1}", "virtual_servers[0].fwmark (line 10): -1 is out of range: want a whole number from 0 to 4294967295"},
	{"weight beyond 64 bits", "port: 8080}\n      - {address: 198.51.100.12", "port: 8080, weight: 99999999999999999999}\n      - {address: 198.51.100.12", "pools.web.members[0].weight (line 15): 99999999999999999999 is not a whole number"},
	{"huge weight", "port: 8080}\n      - {address: 198.51.100.12", "port: 8080, weight: 4294967297}\n      - {address: 198.51.100.12", "pools.web.members[0].weight (line 15): 4294967297 is out of range (0..65535)"},
	{"port beyond 16 bits", "port: 80, pool: web}", "port: 65536, pool: web}", "virtual_servers[0].port (line 10): \"65536\" is not a port"},
	// an explicit zero that would become a default
	{"miimon 0", "members: [eth2],", "members: [eth2], miimon: 0,", "network.internal.miimon (line 4): an explicit 0 would silently become the default 100"},
	{"mtu 0", "members: [eth3],", "members: [eth3], mtu: 0,", "network.external.mtu (line 5): an explicit 0 would silently become the default 1500"},
	{"persistence timeout 0s", "port: 80, pool: web}", "port: 80, pool: web, persistence: {timeout: 0s}}", "virtual_servers[0].persistence.timeout (line 10): an explicit 0s would silently become the default 600s"},
	{"ipvs tcp timeout 0", "snat:\n", "ipvs_timeouts: {tcp: 0}\nsnat:\n", "ipvs_timeouts.tcp (line 19): an explicit 0 would silently become the default 90s"},
	{"api port 0", "snat:\n", "management: {api: {port: 0}}\nsnat:\n", "management.api.port (line 19): an explicit 0 would silently become the default 8080"},
	{"slow start in minutes fractions", "  web:\n    members:", "  web:\n    slow_start: 90.5s\n    members:", "pools.web.slow_start (line 14): 1m30.5s must be a whole number of seconds from 1s to 1h (ramps go in 1 s steps; leave it out for no slow start)"},
	{"config history 0", "snat:\n", "management: {config_history: 0}\nsnat:\n", "management.config_history (line 19): an explicit 0 would silently become the default 5"},
	// more than one document, a key twice
	{"second document", "    - {source: 198.51.100.0/24, ipool: out}\n", "    - {source: 198.51.100.0/24, ipool: out}\n---\nversion: 1\n", "document (line 24): a second YAML document starts here"},
	{"key twice", "snat:\n", "version: 1\nsnat:\n", "version (line 19): \"version\" is set twice (first on line 1)"},
	// one NIC spelled two ways
	{"MAC in two spellings", "members: [eth0, eth1]", "members: [\"52:54:00:AA:BB:01\", eth1]", ""},
	{"bond named like a member", "internal: {members: [eth2],", "internal: {bond: eth3, members: [eth2],", "network.internal.bond (line 4): bond name \"eth3\" is the name of a NIC the config uses (network.external.members[0])"},
	{"bond named like the management NIC", "external: {members: [eth3],", "external: {bond: eth4, members: [eth3],", "network.external.bond (line 5): bond name \"eth4\" is the name of a NIC the config uses (network.management.interface)"},
	// sysctls that cannot be written
	{"sysctl key with empty parts", "  routes:\n", "  sysctls: {net.ipv4..ip_forward: \"1\"}\n  routes:\n", "network.sysctls.net.ipv4..ip_forward (line 7): only net.* sysctls can be set"},
	{"sysctl key climbing out", "  routes:\n", "  sysctls: {net.ipv4.conf/../../kernel/core_pattern: \"x\"}\n  routes:\n", "network.sysctls.net.ipv4.conf/../../kernel/core_pattern (line 7): only net.* sysctls can be set"},
	{"sysctl value with a newline", "  routes:\n", "  sysctls: {net.ipv4.ip_forward: \"1\\n0\"}\n  routes:\n", "network.sysctls.net.ipv4.ip_forward (line 7): value \"1\\n0\" holds a control character"},
	{"sysctl value empty", "  routes:\n", "  sysctls: {net.ipv4.ip_forward: \"\"}\n  routes:\n", "network.sysctls.net.ipv4.ip_forward (line 7): empty value"},
	// kernel arguments that break out of the boot loader's config
	{"cmdline with a newline", "snat:\n", "kernel: {cmdline: \"quiet\\n}\\nmenuentry x {\"}\nsnat:\n", "kernel.cmdline (line 19): \"quiet\\n}\\nmenuentry x {\" holds \"\\n\""},
	{"cmdline with a quote", "snat:\n", "kernel: {cmdline: 'quiet\" init=/bin/sh'}\nsnat:\n", "kernel.cmdline (line 19): \"quiet\\\" init=/bin/sh\" holds \"\\\"\""},
	{"cmdline too long", "snat:\n", "kernel: {cmdline: " + strings.Repeat("a", 1100) + "}\nsnat:\n", "kernel.cmdline (line 19): 1100 characters long (at most 1024)"},
	// YAML type errors and unknown keys, in the operator's words
	{"unknown key", "  web:\n    members:", "  web:\n    monitr: web\n    members:", "pools.web.monitr (line 14): unknown field \"monitr\" (known here: inhibit, members, monitor, panic_threshold, quorum, slow_start, sorry_server)"},
	{"unknown top-level key", "pools:\n", "pool:\n  x: 1\npools:\n", "pool (line 12): unknown field \"pool\""},
	{"text for a bool", "internal: true,", "internal: yes please,", "virtual_servers[1].internal (line 11): \"yes please\" is not true or false"},
	{"a list for a mapping", "local_address_pools:\n  la: {addresses: [198.51.100.201-209]}\n", "local_address_pools: [la]\n", "local_address_pools (line 17): a list is not a mapping of names to entries here"},
	{"a mapping for a name", "name: web,", "name: {first: web},", "virtual_servers[0].name (line 10): a mapping is not a single value"},
	{"a word for the version", "version: 1\n", "version: one\n", "version (line 1): \"one\" is not a whole number"},
	{"a scalar for a list", "members: [eth2]", "members: eth2", "network.internal.members (line 4): \"eth2\" is not a list here"},
	{"YAML syntax", "pools:\n", "pools: [\n", "document (line "},
	{"not a mapping at all", "", "", ""}, // replaced below
}

// goSpeak is Go's vocabulary, which an operator should never have to read.
var goSpeak = regexp.MustCompile(`!!|config\.|\bu?int(8|16|32|64)?\b|map\[|\[\]|yaml:|unmarshal`)

// Every hostile config is refused, and among the refusals is the expected
// one, in the form `field.path (line N): reason` with no Go type names.
func TestHostileConfigs(t *testing.T) {
	if _, err := Parse([]byte(hostileBase)); err != nil {
		t.Fatalf("the base config must be valid: %v", err)
	}
	form := regexp.MustCompile(`^[a-z_]+(\[\d+\])?(\.[^ ]+)* \(line \d+\): .+`)
	for _, c := range hostileCases {
		doc, want := hostileDoc(c)
		t.Run(c.name, func(t *testing.T) {
			if doc == hostileBase {
				t.Fatalf("case does not change the base config (%q not found)", c.old)
			}
			_, err := Parse([]byte(doc))
			if err == nil {
				t.Fatalf("accepted:\n%s", doc)
			}
			probs := Problems(err)
			found := false
			for _, p := range probs {
				if !form.MatchString(p) && !strings.Contains(p, "(not in the file)") {
					t.Errorf("refusal %q is not `field.path (line N): reason`", p)
				}
				if m := goSpeak.FindString(p); m != "" {
					t.Errorf("refusal %q speaks Go (%q)", p, m)
				}
				found = found || strings.HasPrefix(p, want)
			}
			if !found {
				t.Errorf("no refusal starts with\n  %s\ngot:\n  %s", want, strings.Join(probs, "\n  "))
			}
		})
	}
}

// hostileDoc builds a case's document and the refusal it must get.
func hostileDoc(c hostileCase) (string, string) {
	switch c.name {
	case "MAC in two spellings":
		doc := strings.Replace(hostileBase, "members: [eth0, eth1]", `members: ["52:54:00:AA:BB:01", eth1]`, 1)
		doc = strings.Replace(doc, "members: [eth2]", `members: ["52-54-00-aa-bb-01"]`, 1)
		return doc, `network.internal.members[0] (line 4): NIC "52-54-00-aa-bb-01" is already a member of network.failover.members[0]`
	case "not a mapping at all":
		return "- version: 1\n", "document (line 1): the config must be a mapping of sections"
	}
	return strings.Replace(hostileBase, c.old, c.new, 1), c.want
}
