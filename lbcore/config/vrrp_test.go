package config

import (
	"fmt"
	"strings"
	"testing"
)

const vrrpNetwork = `version: 1
network:
  failover: {members: [eth0], addresses: [192.0.2.1/25]}
  internal: {members: [eth1], addresses: [198.51.100.2/24]}
  external: {members: [eth2], addresses: [203.0.113.2/24, "2001:db8::2/64"]}
`

func TestVRRPCrossChecks(t *testing.T) {
	good := vrrpNetwork + `vrrp:
  unicast_peers: [192.0.2.2]
  instances:
    - vrid: 51
      internal: [198.51.100.1/24]
      external: [203.0.113.100/24, "2001:db8::100"]
`
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	if ifs := c.VRRPInterfaces(); ifs.Heartbeat != "failover" || ifs.External != "external" {
		t.Errorf("interfaces = %+v", ifs)
	}
	for _, tc := range []struct{ name, vrrp, want string }{
		{"vip outside subnet", "  peers: [192.0.2.2]\n  instances: [{vrid: 1, external: [198.51.100.100]}]\n",
			"vrrp.instances[0].external[0] (line 8): 198.51.100.100 is not in a subnet of the external group"},
		{"self ip", "  peers: [192.0.2.2]\n  instances: [{vrid: 1, internal: [198.51.100.2/24]}]\n",
			"vrrp.instances[0].internal[0] (line 8): 198.51.100.2 is this node's own self IP"},
		{"peer off subnet", "  unicast_peers: [192.0.2.200]\n  instances: [{vrid: 1, external: [203.0.113.100]}]\n",
			"vrrp.unicast_peers[0] (line 7): 192.0.2.200 is not on the failover subnet"},
		{"heartbeat elsewhere", "  interface: external\n  instances: [{vrid: 1, external: [203.0.113.100]}]\n",
			"vrrp.interface (line 7): the heartbeat must run on the failover bond"},
		{"no peers", "  instances: [{vrid: 1, external: [203.0.113.100]}]\n",
			"vrrp.peers (line 6): required with vrrp instances: list the other node's failover address"},
		{"peer off subnet (peers)", "  peers: [192.0.2.200]\n  instances: [{vrid: 1, external: [203.0.113.100]}]\n",
			"vrrp.peers[0] (line 7): 192.0.2.200 is not on the failover subnet"},
		{"peer is this node", "  peers: [192.0.2.1]\n  instances: [{vrid: 1, external: [203.0.113.100]}]\n",
			"vrrp.peers[0] (line 7): 192.0.2.1 is this node's own failover address"},
		{"peer not an address", "  peers: [lb2]\n  instances: [{vrid: 1, external: [203.0.113.100]}]\n",
			`vrrp.peers[0] (line 7): "lb2" is not an IP address`},
		{"section error with line", "  instances:\n    - vrid: 300\n      external: [203.0.113.100]\n",
			"vrrp.instances[0].vrid (line 8): 300 is out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(vrrpNetwork + "vrrp:\n" + tc.vrrp))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

// The HA defaults: peers from the section (unicast peers count), and both
// data bonds tracked unless the config opts out with an empty list.
func TestVRRPPeersAndDefaultTracking(t *testing.T) {
	base := vrrpNetwork + "vrrp:\n  peers: [192.0.2.2]\n  unicast_peers: [192.0.2.3]\n  instances: [{vrid: 1, external: [203.0.113.100]}]\n"
	c, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.VRRP.AcceptFrom()); got != "[192.0.2.2 192.0.2.3]" {
		t.Errorf("AcceptFrom = %s", got)
	}
	if got := fmt.Sprint(c.VRRP.Track); got != "[{external fault 0} {internal fault 0}]" {
		t.Errorf("default track = %s, want external and internal with action fault", got)
	}
	c, err = Parse([]byte(base + "  track: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.VRRP.Track) != 0 {
		t.Errorf("track: [] should opt out, got %v", c.VRRP.Track)
	}
	c, err = Parse([]byte(vrrpNetwork + "vrrp:\n  unicast_peers: [192.0.2.2]\n  instances: [{vrid: 1, external: [203.0.113.100]}]\n"))
	if err != nil {
		t.Fatalf("unicast_peers alone should name the peer: %v", err)
	}
	if got := fmt.Sprint(c.VRRP.AcceptFrom()); got != "[192.0.2.2]" {
		t.Errorf("AcceptFrom = %s", got)
	}
}
