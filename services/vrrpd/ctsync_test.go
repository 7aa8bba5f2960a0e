package vrrpd

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// Conntrack sync talks to the first configured peer from this node's
// failover address of the same family; without a peer it is off (and
// VRRP does not wait for it), saying why.
func TestCTEndpoints(t *testing.T) {
	cfg := &config.Config{}
	cfg.Network.Failover.Addresses = []config.Prefix{{Prefix: netip.MustParsePrefix("2001:db8:3::1/64")}, {Prefix: netip.MustParsePrefix("192.0.2.1/25")}}
	if _, _, err := ctEndpoints(cfg); err == nil || !strings.Contains(err.Error(), "vrrp.peers") {
		t.Fatalf("no peer: %v, want an error naming vrrp.peers", err)
	}
	if ctSyncWanted(cfg) {
		t.Error("sync wanted without a peer: preemption would wait for nothing")
	}
	cfg.VRRP.UnicastPeers = []config.IP{{Addr: netip.MustParseAddr("192.0.2.3")}}
	cfg.VRRP.Peers = []config.IP{{Addr: netip.MustParseAddr("192.0.2.2")}}
	local, peer, err := ctEndpoints(cfg)
	if err != nil || local != netip.MustParseAddr("192.0.2.1") || peer != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("got %s -> %s (%v), want 192.0.2.1 -> 192.0.2.2", local, peer, err)
	}
	cfg.Network.Failover.Addresses = cfg.Network.Failover.Addresses[:1]
	if _, _, err := ctEndpoints(cfg); err == nil || !strings.Contains(err.Error(), "family") {
		t.Fatalf("IPv4 peer, IPv6 failover address only: %v", err)
	}
}
