//go:build guest

package ipvslist_test

// The listings against ipvsadm itself, on the real kernel: built only with
// the "guest" tag; qemu's TestIPVSSyncOnTheRealKernel runs them in an
// appliance guest with the host's /usr/sbin/ipvsadm copied in.
//
//	client ns  lc0 203.0.113.10 ── lx 203.0.113.2 (+VIPs)  lb ns  li 198.51.100.2 ── lm0 198.51.100.11,.12  member ns

import (
	"bytes"
	"fmt"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvslist"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	mobyipvs "github.com/moby/ipvs"
)

// TestGuestListingsMatchIpvsadm builds a table with NAT, DR, persistent,
// UDP, fwmark and IPv6 services, sends TCP traffic through one, and checks
// that each listing is byte for byte what ipvsadm prints for the same
// namespace: -Ln, -Ln --stats, -Ln --stats --exact, -Ln --rate and -Lnc.
func TestGuestListingsMatchIpvsadm(t *testing.T) {
	testkit.Require(t, testkit.Root, testkit.Path("/proc/net/ip_vs", "a kernel with IPVS (run in the QEMU guest)"),
		testkit.Tool("/usr/sbin/ipvsadm"))
	lb := testkit.NewNS(t, "list-lb")
	client := testkit.NewNS(t, "list-client")
	member := testkit.NewNS(t, "list-member")
	testkit.Veth(t, client, "lc0", "203.0.113.10/24", lb, "lx", "203.0.113.2/24")
	testkit.Veth(t, member, "lm0", "198.51.100.11/24", lb, "li", "198.51.100.2/24")
	member.AddAddr(t, "lm0", "198.51.100.12/24")
	lb.AddAddr(t, "lx", "203.0.113.100/32")
	lb.Sysctl(t, "net.ipv4.ip_forward", "1")
	member.Route(t, "default", "198.51.100.2")
	member.Serve(t, "m11", "198.51.100.11:8080")
	member.Serve(t, "m12", "198.51.100.12:8080")

	h, err := mobyipvs.New(lb.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	v4 := func(s string) net.IP { return net.ParseIP(s).To4() }
	tcp := &mobyipvs.Service{Address: v4("203.0.113.100"), Protocol: syscall.IPPROTO_TCP, Port: 80,
		AddressFamily: syscall.AF_INET, SchedName: "rr", Netmask: 0xffffffff}
	persistent := &mobyipvs.Service{Address: v4("203.0.113.101"), Protocol: syscall.IPPROTO_TCP, Port: 443,
		AddressFamily: syscall.AF_INET, SchedName: "wlc", Flags: ipvs.FlagPersistent, Timeout: 600, Netmask: ipvs.NetmaskV4(24)}
	udp := &mobyipvs.Service{Address: v4("203.0.113.100"), Protocol: syscall.IPPROTO_UDP, Port: 53,
		AddressFamily: syscall.AF_INET, SchedName: "sh", Netmask: 0xffffffff}
	fwm := &mobyipvs.Service{FWMark: 7, AddressFamily: syscall.AF_INET, SchedName: "lc", Netmask: 0xffffffff}
	v6 := &mobyipvs.Service{Address: net.ParseIP("2001:db8:1::100"), Protocol: syscall.IPPROTO_TCP, Port: 8443,
		AddressFamily: syscall.AF_INET6, SchedName: "rr", Netmask: 128}
	dests := map[*mobyipvs.Service][]*mobyipvs.Destination{
		tcp: {
			{Address: v4("198.51.100.12"), Port: 8080, Weight: 3, ConnectionFlags: mobyipvs.ConnectionFlagMasq},
			{Address: v4("198.51.100.11"), Port: 8080, Weight: 1, ConnectionFlags: mobyipvs.ConnectionFlagMasq},
		},
		persistent: {{Address: v4("198.51.100.11"), Port: 443, Weight: 0, ConnectionFlags: mobyipvs.ConnectionFlagDirectRoute}},
		udp:        {{Address: v4("198.51.100.21"), Port: 53, Weight: 1, ConnectionFlags: mobyipvs.ConnectionFlagTunnel}},
		fwm:        {{Address: v4("198.51.100.11"), Port: 0, Weight: 2, ConnectionFlags: mobyipvs.ConnectionFlagMasq}},
		v6:         {{Address: net.ParseIP("2001:db8:2::11"), Port: 8443, Weight: 1, ConnectionFlags: mobyipvs.ConnectionFlagMasq}},
	}
	// Created out of order: the listing must sort as ipvsadm does.
	for _, s := range []*mobyipvs.Service{v6, fwm, udp, persistent, tcp} {
		if err := h.NewService(s); err != nil {
			t.Fatalf("service %v: %v", s.Address, err)
		}
		for _, d := range dests[s] {
			d.AddressFamily = syscall.AF_INET
			if d.Address.To4() == nil {
				d.AddressFamily = syscall.AF_INET6
			}
			if err := h.NewDestination(s, d); err != nil {
				t.Fatalf("destination %v: %v", d.Address, err)
			}
		}
	}

	// Traffic: a few connections through the NAT service, two kept open
	// (active), the rest closed (inactive), so counters, rates and the
	// connection table are not empty.
	for i := 0; i < 6; i++ {
		c, greeting, err := client.Dial("203.0.113.10", "203.0.113.100:80", 5*time.Second)
		if err != nil {
			t.Fatalf("client -> VIP: %v", err)
		}
		if !strings.HasPrefix(greeting, "m1") {
			t.Fatalf("greeting %q: not a member", greeting)
		}
		fmt.Fprintf(c, "hello %d\n", i)
		if i < 2 {
			t.Cleanup(func() { c.Close() })
		} else {
			c.Close()
		}
	}

	// The kernel sums its per-CPU counters into what it reports from the
	// estimator's work every 2 s: wait until the 6 connections show.
	testkit.Eventually(t, 10*time.Second, 200*time.Millisecond, func() error {
		svcs, err := ipvslist.Read(h)
		if err != nil {
			return err
		}
		for _, s := range svcs {
			if s.Port == 80 && s.Protocol == syscall.IPPROTO_TCP && s.Stats.Conns == 6 {
				return nil
			}
		}
		return fmt.Errorf("the NAT service does not count 6 connections yet: %+v", svcs)
	})

	read := func(args []string) string {
		var b bytes.Buffer
		var header string
		var conns []ipvslist.Conn
		if err := lb.Do(func() error {
			header = ipvslist.ProcHeader("/proc/thread-self/net/ip_vs")
			if args[0] == "-Lnc" {
				var err error
				conns, err = ipvslist.ReadConns("/proc/thread-self/net/ip_vs_conn")
				return err
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if args[0] == "-Lnc" {
			if err := ipvslist.WriteConns(&b, conns); err != nil {
				t.Fatal(err)
			}
			return b.String()
		}
		svcs, err := ipvslist.Read(h)
		if err != nil {
			t.Fatal(err)
		}
		o := ipvslist.Options{Header: header}
		for _, a := range args[1:] {
			switch a {
			case "--stats":
				o.Format = ipvslist.Stats
			case "--rate":
				o.Format = ipvslist.Rate
			case "--exact":
				o.Exact = true
			}
		}
		if err := ipvslist.Write(&b, svcs, o); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	for _, args := range [][]string{{"-Ln"}, {"-Ln", "--stats"}, {"-Ln", "--stats", "--exact"}, {"-Ln", "--rate"}, {"-Lnc"}} {
		// Rates move every 2 s and expiry times every second: compare
		// readings taken together, a few times before calling it a
		// mismatch.
		var ours, theirs string
		same := false
		for try := 0; try < 5 && !same; try++ {
			ours = read(args)
			theirs, err = lb.Exec("/usr/sbin/ipvsadm", args...)
			if err != nil {
				t.Fatalf("ipvsadm %v: %v\n%s", args, err, theirs)
			}
			same = ours == theirs
		}
		if !same {
			t.Errorf("ipvsadm %s differs:\n--- ours\n%s--- ipvsadm\n%s", strings.Join(args, " "), ours, theirs)
			continue
		}
		t.Logf("ipvsadm %s matches:\n%s", strings.Join(args, " "), ours)
		// Not a comparison of two empty tables.
		switch args[len(args)-1] {
		case "--rate":
			if !strings.Contains(ours, "TCP  203.0.113.100:80") {
				t.Errorf("rate listing lacks the NAT service")
			}
		case "-Lnc":
			if strings.Count(ours, "ESTABLISHED") < 2 {
				t.Errorf("connection listing shows fewer than the 2 open connections")
			}
		case "--stats":
			if !regexp.MustCompile(`(?m)^TCP  203\.0\.113\.100:80 +6 `).MatchString(ours) {
				t.Errorf("stats listing does not count the 6 connections")
			}
		}
	}
}
