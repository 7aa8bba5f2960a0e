package config

import (
	"strings"
	"testing"
)

const goodNetwork = `version: 1
hostname: lb1
network:
  failover:
    members: ["52:54:00:01:01:01", "52:54:00:01:01:02"]
    addresses: [192.0.2.1/25]
  internal:
    members: [eth2, eth3]
    addresses: [198.51.100.2/24]
  external:
    members: [eth4]
    addresses: [203.0.113.2/24]
  routes:
    - to: default
      via: 203.0.113.50
`

func TestNetworkDefaults(t *testing.T) {
	c, err := Parse([]byte(goodNetwork))
	if err != nil {
		t.Fatal(err)
	}
	fo, in := c.Network.Failover, c.Network.Internal
	if fo.Bond != "failover" || fo.Mode != "active-backup" || fo.XmitHashPolicy != "" || fo.MIIMon != 100 || fo.MTU != 1500 {
		t.Errorf("failover defaults wrong: %+v", fo)
	}
	if in.Mode != "802.3ad" || in.XmitHashPolicy != "layer3+4" || in.LACPRate != "fast" {
		t.Errorf("internal defaults wrong: %+v", in)
	}
	if c.Network.Routes[0].To.String() != "0.0.0.0/0" {
		t.Errorf("default route not expanded: %q", c.Network.Routes[0].To)
	}
}

// Each case breaks one thing; the error must name the field path and the
// line the field is on (or its nearest parent's, for a missing field).
func TestNetworkValidationNamesPathAndLine(t *testing.T) {
	cases := []struct {
		name, from, to, want string
	}{
		{"bad mode", "    members: [eth2, eth3]\n", "    members: [eth2, eth3]\n    mode: lacp\n", "network.internal.mode (line 9): unknown bond mode \"lacp\""},
		{"too many members", "members: [eth4]", "members: [e0, e1, e2, e3, e4, e5, e6, e7, e8]", "network.external.members (line 11): needs 1 to 8 member NICs, has 9"},
		{"three heartbeat links", `["52:54:00:01:01:01", "52:54:00:01:01:02"]`, `[eth0, eth1, eth9]`, "network.failover.members (line 5): needs 1 to 2 member NICs, has 3"},
		{"no members", "members: [eth4]", "members: []", "network.external.members (line 11): needs 1 to 8"},
		{"member twice", "members: [eth4]", "members: [eth3]", "network.external.members[0] (line 11): NIC \"eth3\" is already a member of network.internal.members[1]"},
		{"bad member", "members: [eth4]", "members: [\"not a nic!\"]", "network.external.members[0] (line 11): \"not a nic!\" is neither"},
		{"bad address", "[198.51.100.2/24]", "[198.51.100.2]", "network.internal.addresses[0] (line 9): \"198.51.100.2\" is not an address in CIDR form"},
		{"same subnet twice", "[203.0.113.2/24]", "[198.51.100.3/24]", "network.external.addresses[0] (line 12): subnet 198.51.100.0/24 overlaps 198.51.100.0/24 of internal"},
		{"mtu", "    addresses: [192.0.2.1/25]\n", "    addresses: [192.0.2.1/25]\n    mtu: 100000\n", "network.failover.mtu (line 7): 100000 is out of range"},
		{"lacp on active-backup", "    addresses: [192.0.2.1/25]\n", "    addresses: [192.0.2.1/25]\n    lacp_rate: fast\n", "network.failover.lacp_rate (line 7): only applies to mode 802.3ad"},
		{"route via", "via: 203.0.113.50", "via: gateway", "network.routes[0].via (line 15): \"gateway\" is not an IP address"},
		{"sysctl outside net", "  routes:\n", "  sysctls: {kernel.panic: \"1\"}\n  routes:\n", "network.sysctls.kernel.panic (line 13): only net.* sysctls"},
		{"version", "version: 1", "version: 7", "version (line 1): schema version 7 is not supported"},
		{"hostname", "hostname: lb1", "hostname: lb_1!", "hostname (line 2): \"lb_1!\" is not a valid host name"},
		{"unknown field", "hostname: lb1", "hostname: lb1\nhostnme: typo", `hostnme (line 3): unknown field "hostnme" (known here: hostname,`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := strings.Replace(goodNetwork, c.from, c.to, 1)
			if doc == goodNetwork {
				t.Fatalf("case did not change the document")
			}
			_, err := Parse([]byte(doc))
			if err == nil {
				t.Fatalf("accepted:\n%s", doc)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, c.want)
			}
		})
	}
}

func TestEmptyDocumentIsRejected(t *testing.T) {
	if _, err := Parse([]byte("\n# nothing\n")); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("err = %v", err)
	}
}
