package qemu

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
)

// filterConfig turns lb1.yaml into an HA node (peer 192.0.2.2) with a
// management NIC, the API on the Internal side and a NAT and a FullNAT
// virtual server over one member.
func filterConfig(t *testing.T) []byte {
	cfg := string(readConfig(t, "lb1.yaml"))
	cfg = strings.Replace(cfg, "network:\n", "network:\n  management: {interface: \""+appliance.MAC(1, netlab.Management, 1)+"\", address: 192.0.2.129/25}\n", 1)
	cfg = strings.Replace(cfg, "\nmanagement:\n", fmt.Sprintf("\nmanagement:\n  api: {listen: internal, port: 8080, token: %q}\n", apiToken), 1)
	if !strings.Contains(cfg, "192.0.2.129/25") || !strings.Contains(cfg, "listen: internal") {
		t.Fatal("lb1.yaml changed shape: the filter test could not edit it")
	}
	cfg = strings.Replace(cfg, "vrrp:\n  peers: [192.0.2.2]\n", "vrrp:\n  peers: [192.0.2.2]\n  instances:\n    - {vrid: 51, external: [203.0.113.100, 203.0.113.101], internal: [198.51.100.1/24, 198.51.100.201, 198.51.100.202]}\n", 1)
	if !strings.Contains(cfg, "vrid: 51") {
		t.Fatal("lb1.yaml has no vrrp peers section: the filter test could not edit it")
	}
	return []byte(cfg + `
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: "80", mode: nat, pool: web}
  - {name: web-fullnat, vip: 203.0.113.101, port: "80", mode: fullnat, local_address_pool: la, pool: web}
pools:
  web: {members: [{address: 198.51.100.11, port: 80}]}
local_address_pools:
  la: {addresses: [198.51.100.201-202]}
`)
}

// probe is what a TCP connect found: open, refused (a reset: nothing
// listens, but the packet reached the appliance's stack) or filtered (no
// answer: dropped).
type probe string

const (
	portOpen     probe = "open"
	portRefused  probe = "refused"
	portFiltered probe = "filtered"
)

func tcpProbe(ns *netlab.Namespace, addr string) probe {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	})
	switch {
	case err == nil:
		c.Close()
		return portOpen
	case errors.Is(err, syscall.ECONNREFUSED):
		return portRefused
	default:
		return portFiltered
	}
}

// TestInputFilterScanFromEverySegment boots lb1 (HA config, peer
// 192.0.2.2, management NIC, API listen: internal) and scans it from a host
// on each segment: TCP connects to the API and a few other ports and a ping,
// asserting exactly the expected open/filtered set, and that the VIP service
// still balances to its member. Every port not admitted must be filtered
// (dropped, no reset), which only the input filter does: without it the
// kernel answers a closed port with a reset and the API on any local
// address from any side (the defect; lbcore/kernel/filter's namespace test
// shows it).
func TestInputFilterScanFromEverySegment(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	lab := appliance.NewLab(t)
	host := func(name, seg, cidr, gw string) *netlab.Namespace {
		ns, err := lab.Host(name, seg, []string{cidr}, gw)
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	client := host("client", netlab.External, "203.0.113.10/24", "203.0.113.2")
	member := host("member", netlab.Internal, "198.51.100.11/24", "198.51.100.2")
	peer := host("peer", netlab.Failover, "192.0.2.2/25", "192.0.2.1")
	other := host("other", netlab.Failover, "192.0.2.3/25", "192.0.2.1")
	admin := host("admin", netlab.Management, "192.0.2.254/25", "192.0.2.129")

	// The member's service behind the VIP: greets with its name.
	var ln net.Listener
	if err := member.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "198.51.100.11:80")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "member %s\n", c.RemoteAddr())
			c.Close()
		}
	}()

	v := appliance.Boot(t, lab, img, appliance.Options{Node: 1, Config: filterConfig(t), Management: true})
	if _, err := v.WaitReady(bootTimeout); err != nil {
		t.Fatal(err)
	}
	if err := v.Console.ExpectString("HTTP API listening", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	// lbd applies the filter with its config; the VIP appears once vrrpd
	// (started after lbd) is master.
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(v.Console.Output(), "input filter applied (4 zones)") {
		if time.Now().After(deadline) {
			t.Fatal("lbd did not report the input filter applied within 90s")
		}
		time.Sleep(500 * time.Millisecond)
	}
	var greeting string
	for i := 0; i < 60; i++ {
		if greeting, err = ask(client, "203.0.113.100:80"); err == nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil || !strings.HasPrefix(greeting, "member 203.0.113.10:") {
		t.Fatalf("VIP service through the filter: %q, %v", greeting, err)
	}
	// FullNAT: the member answers a local address of the appliance, so its
	// replies do take the input path (as conntrack replies).
	if greeting, err = ask(client, "203.0.113.101:80"); err != nil || !strings.HasPrefix(greeting, "member 198.51.100.20") {
		t.Errorf("FullNAT VIP service through the filter: %q, %v", greeting, err)
	}

	scans := []struct {
		from *netlab.Namespace
		addr string
		want probe
	}{
		{client, "203.0.113.100:80", portOpen}, // the VIP service
		{client, "203.0.113.100:81", portFiltered},
		{client, "203.0.113.101:80", portOpen},      // FullNAT
		{client, "198.51.100.2:8080", portFiltered}, // the API through the External side: the defect
		{client, "203.0.113.2:8080", portFiltered},
		{client, "203.0.113.2:22", portFiltered},
		{client, "192.0.2.129:8080", portFiltered},
		{member, "198.51.100.2:8080", portOpen}, // listen: internal
		{member, "198.51.100.2:22", portFiltered},
		{peer, "192.0.2.1:8080", portFiltered},
		{peer, "198.51.100.2:8080", portFiltered},
		{peer, "192.0.2.1:7040", portFiltered}, // sync is udp only
		{other, "192.0.2.1:22", portFiltered},
		{admin, "192.0.2.129:8080", portFiltered}, // the API is not on management in this config
		{admin, "198.51.100.2:8080", portFiltered},
	}
	var got []string
	for _, s := range scans {
		p := tcpProbe(s.from, s.addr)
		got = append(got, fmt.Sprintf("%s -> %s: %s", s.from.Name, s.addr, p))
		if p != s.want {
			t.Errorf("%s -> %s: %s, want %s", s.from.Name, s.addr, p, s.want)
		}
	}
	pings := []struct {
		from *netlab.Namespace
		dst  string
		want bool
	}{
		{client, "203.0.113.2", true},
		{member, "198.51.100.2", true},
		{admin, "192.0.2.129", true},
		{peer, "192.0.2.1", true}, // the peer may check the heartbeat link
		{other, "192.0.2.1", false},
	}
	for i, p := range pings {
		_, err := p.from.Ping(p.dst, 100+i, 2*time.Second)
		got = append(got, fmt.Sprintf("%s ping %s: %v", p.from.Name, p.dst, err == nil))
		if (err == nil) != p.want {
			t.Errorf("%s ping %s: answered=%v, want %v", p.from.Name, p.dst, err == nil, p.want)
		}
	}
	t.Logf("scan:\n%s", strings.Join(got, "\n"))
	if t.Failed() {
		if out, err := v.Run("cat /proc/net/nf_conntrack 2>/dev/null | head -20; ip addr", 30*time.Second); err == nil {
			t.Logf("appliance:\n%s", out)
		}
	}
}

// ask connects from ns and reads one line.
func ask(ns *netlab.Namespace, addr string) (string, error) {
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}
