package lbd

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/filter"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/sirupsen/logrus"
)

// Two lbd instances in their own namespaces talk config sync over veth
// on a Failover segment (bridge) that a third host shares. With each
// node's real input filter (engine.Filter of its lab config) installed,
// the sync port answers the peer and nothing else; an apply on lb1 runs on
// lb2, and a config lb2 refuses changes neither.
//
//	lb1 failover 192.0.2.1 ┐
//	lb2 failover 192.0.2.2 ┼─ bridge br0 (namespace switch)
//	other  o0    192.0.2.3 ┘
func TestConfigSyncOverVeth(t *testing.T) {
	lb1ns, lb2ns, other := testkit.NewNS(t, "lb1"), testkit.NewNS(t, "lb2"), testkit.NewNS(t, "other")
	sw := testkit.NewNS(t, "switch")
	sw.Bridge(t, "br0", "")
	testkit.Veth(t, lb1ns, "failover", "192.0.2.1/25", sw, "s1", "")
	testkit.Veth(t, lb2ns, "failover", "192.0.2.2/25", sw, "s2", "")
	testkit.Veth(t, other, "o0", "192.0.2.3/25", sw, "s3", "")
	for _, p := range []string{"s1", "s2", "s3"} {
		sw.Enslave(t, p, "br0")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a1, a2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	port := engine.ConfigSyncPort
	lb1 := syncServerAt(t, ctx, 1, port, a1, a2, lb1ns)
	lb2 := syncServerAt(t, ctx, 2, port, a2, a1, lb2ns)

	// Without the filter any host on the segment reaches the port (the
	// node itself drops what it hears from a non-peer).
	if c, _, err := dialNS(other, "192.0.2.2:7041"); err != nil {
		t.Fatalf("precondition: the sync port must answer without the filter: %v", err)
	} else {
		c()
	}
	for _, n := range []struct {
		ns  *testkit.NS
		lbd *syncNode
	}{{lb1ns, lb1}, {lb2ns, lb2}} {
		pol, err := engine.Filter(n.lbd.cfg, func(string) (string, error) { return "mgmt0", nil })
		if err != nil {
			t.Fatal(err)
		}
		log := logrus.New()
		log.SetOutput(bytes.NewBuffer(nil))
		if _, err := filter.NewManager(n.ns.Fd(), log).Apply(ctx, pol); err != nil {
			t.Fatalf("filter in %s: %v", n.ns.Name, err)
		}
	}
	if c, _, err := dialNS(other, "192.0.2.2:7041"); err == nil {
		c()
		t.Fatal("a host on the failover segment that is not the peer reached the sync port through the filter")
	}

	s1, s2 := syncStatusOf(t, lb1), syncStatusOf(t, lb2)
	if !s1.Agree || !s2.Agree || s1.Peers[0].Address != "192.0.2.2" {
		t.Fatalf("through the filter the nodes do not see each other: %+v / %+v", s1, s2)
	}
	orig1, _ := os.ReadFile(lb1.path)
	next := strings.Replace(string(orig1), "\npools:", "\n"+extraVS+"\npools:", 1)
	if code, res := applyVia(t, lb1, next, ""); code != http.StatusOK || !strings.Contains(res.Message, "192.0.2.2") {
		t.Fatalf("apply over veth: %d %+v", code, res)
	}
	if r2, _ := lb2.api.ctrl.Running(); len(r2.VirtualServers) != labVirtualServers(t, orig1)+1 || r2.Hostname != "lb2" {
		t.Fatalf("lb2 runs %d virtual servers as %s", len(r2.VirtualServers), r2.Hostname)
	}
	before1, _ := os.ReadFile(lb1.path)
	before2, _ := os.ReadFile(lb2.path)
	onlyLB1 := strings.Replace(next, "  la: {addresses: [198.51.100.201-204]}\n", "  la: {addresses: [198.51.100.201-204]}\n  la1: {addresses: [198.51.100.209]}\n", 1)
	onlyLB1 = strings.Replace(onlyLB1, "198.51.100.204]\n", "198.51.100.204, 198.51.100.209]\n", 1) // local addresses float
	onlyLB1 = strings.Replace(onlyLB1, "    vip: 203.0.113.103\n    port: \"80\"\n    mode: nat\n", "    vip: 203.0.113.103\n    port: \"80\"\n    mode: fullnat\n    local_address_pool: la1\n", 1)
	if code, res := applyVia(t, lb1, onlyLB1, ""); code == http.StatusOK || !strings.Contains(res.Message, "refused") {
		t.Fatalf("config lb2 refuses: %d %+v", code, res)
	}
	after1, _ := os.ReadFile(lb1.path)
	after2, _ := os.ReadFile(lb2.path)
	if !bytes.Equal(before1, after1) || !bytes.Equal(before2, after2) {
		t.Fatal("a config the peer refused changed a node")
	}
	s1, s2 = syncStatusOf(t, lb1), syncStatusOf(t, lb2)
	if !s1.Agree || !s2.Agree || s1.Generation != 1 || s1.Hash != s2.Hash {
		t.Fatalf("after the refused apply: %+v / %+v", s1, s2)
	}
}

// dialNS connects from ns to addr within a second; it returns a closer.
func dialNS(ns *testkit.NS, addr string) (func(), string, error) {
	var closer func()
	err := ns.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := (&netDialer).DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		closer = func() { c.Close() }
		return nil
	})
	return closer, addr, err
}

var netDialer = net.Dialer{}
