//go:build guest

package ipvsnl_test

// Kernel tests of the sync daemon calls. The host kernel has no ip_vs, so
// they are built only with the "guest" tag (qemu/guesttest sets it; a host
// run does not see them, and in CI a missing ip_vs fails instead of
// skipping); qemu's
// TestIPVSSyncOnTheRealKernel runs them in an appliance guest. Each test
// builds its own anonymous namespaces:
//
//	client ns  syc0 203.0.113.10 ── syx 203.0.113.2 (+VIP .100)  master ns  syi 198.51.100.2 ── sym0 198.51.100.11  member ns
//	                                 syf0 192.0.2.1/25 (sync link, the failover bond's role)
//	                                   │
//	                                 syf1 192.0.2.2/25  backup ns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvsnl"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	mobyipvs "github.com/moby/ipvs"
)

func requireIPVS(t testing.TB) {
	t.Helper()
	testkit.Require(t, testkit.Root, testkit.Path("/proc/net/ip_vs", "a kernel with IPVS (run in the QEMU guest)"))
}

func open(t *testing.T, ns *testkit.NS) *ipvsnl.Conn {
	t.Helper()
	c, err := ipvsnl.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Leave no daemon behind: a namespace with a running sync thread
		// still goes away, but say so if stopping fails unexpectedly.
		for _, s := range []ipvsnl.State{ipvsnl.Master, ipvsnl.Backup} {
			if err := c.Stop(s); err != nil && !errors.Is(err, ipvsnl.ErrNotRunning) {
				t.Errorf("cleanup: %v", err)
			}
		}
		c.Close()
	})
	return c
}

func list(t *testing.T, c *ipvsnl.Conn) map[ipvsnl.State]ipvsnl.Daemon {
	t.Helper()
	ds, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	m := map[ipvsnl.State]ipvsnl.Daemon{}
	for _, d := range ds {
		if _, dup := m[d.State]; dup {
			t.Fatalf("two %s daemons listed: %v", d.State, ds)
		}
		m[d.State] = d
	}
	return m
}

// TestGuestStartListStop: master and backup daemons start, GET_DAEMON
// reads them back with the kernel's defaults filled in (so the port's byte
// order is checked against the kernel's 8848), a second master is refused,
// DEL removes each, and stopping what is not running is ErrNotRunning.
func TestGuestStartListStop(t *testing.T) {
	requireIPVS(t)
	a := testkit.NewNS(t, "sync-a")
	b := testkit.NewNS(t, "sync-b")
	testkit.Veth(t, a, "syf0", "192.0.2.1/25", b, "syf1", "192.0.2.2/25")
	c := open(t, a)

	if got := list(t, c); len(got) != 0 {
		t.Fatalf("fresh namespace lists daemons: %v", got)
	}
	if err := c.Start(ipvsnl.Daemon{State: ipvsnl.Master, Interface: "syf0", SyncID: 7}); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ipvsnl.Daemon{State: ipvsnl.Backup, Interface: "syf0", SyncID: 7}); err != nil {
		t.Fatal(err)
	}
	got := list(t, c)
	for _, s := range []ipvsnl.State{ipvsnl.Master, ipvsnl.Backup} {
		d, ok := got[s]
		if !ok {
			t.Fatalf("no %s daemon listed: %v", s, got)
		}
		if d.Interface != "syf0" || d.SyncID != 7 || d.Port != ipvsnl.DefaultPort || d.TTL != ipvsnl.DefaultTTL ||
			d.Group != ipvsnl.DefaultGroup || d.MaxLen == 0 {
			t.Errorf("%s daemon read back as %+v; want syf0, id 7, kernel defaults", s, d)
		}
		t.Logf("listed: %s", d)
	}
	err := c.Start(ipvsnl.Daemon{State: ipvsnl.Master, Interface: "syf0", SyncID: 8})
	if !errors.Is(err, ipvsnl.ErrRunning) || !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("second master: %v, want ErrRunning (EEXIST)", err)
	}
	if err := c.Stop(ipvsnl.Master); err != nil {
		t.Fatal(err)
	}
	if got := list(t, c); len(got) != 1 || got[ipvsnl.Backup].SyncID != 7 {
		t.Fatalf("after stopping the master: %v, want the backup only", got)
	}
	if err := c.Stop(ipvsnl.Backup); err != nil {
		t.Fatal(err)
	}
	if got := list(t, c); len(got) != 0 {
		t.Fatalf("after stopping both: %v", got)
	}
	if err := c.Stop(ipvsnl.Backup); !errors.Is(err, ipvsnl.ErrNotRunning) {
		t.Fatalf("stopping a stopped backup: %v, want ErrNotRunning", err)
	}

	// Explicit settings are what the kernel keeps.
	want := ipvsnl.Daemon{State: ipvsnl.Master, Interface: "syf0", SyncID: 200, MaxLen: 1000,
		Group: netip.MustParseAddr("239.1.2.3"), Port: 8850, TTL: 2}
	if err := c.Start(want); err != nil {
		t.Fatal(err)
	}
	if got := list(t, c)[ipvsnl.Master]; got != want {
		t.Fatalf("read back %+v, want %+v", got, want)
	}
	// The kernel refuses an unknown interface; the error names it.
	err = c.Start(ipvsnl.Daemon{State: ipvsnl.Backup, Interface: "nosuch0", SyncID: 1})
	if err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Fatalf("backup on a missing interface: %v, want an error naming it", err)
	}
	if got := list(t, c); len(got) != 1 {
		t.Fatalf("a refused start changed the daemons: %v", got)
	}
}

// TestGuestDaemonsAgreeWithIpvsadm compares what Start set up with what
// ipvsadm (an independent implementation, copied into the guest by the
// qemu test) reads from the kernel.
func TestGuestDaemonsAgreeWithIpvsadm(t *testing.T) {
	requireIPVS(t)
	// qemu's TestIPVSSyncOnTheRealKernel copies the host's ipvsadm in.
	testkit.Require(t, testkit.Tool("/usr/sbin/ipvsadm"))
	a := testkit.NewNS(t, "sync-adm")
	b := testkit.NewNS(t, "sync-adm-b")
	testkit.Veth(t, a, "syf0", "192.0.2.1/25", b, "syf1", "")
	c := open(t, a)
	if err := c.Start(ipvsnl.Daemon{State: ipvsnl.Master, Interface: "syf0", SyncID: 42, Port: 8850, TTL: 3,
		Group: netip.MustParseAddr("239.0.0.42"), MaxLen: 1200}); err != nil {
		t.Fatal(err)
	}
	out, err := a.Exec("/usr/sbin/ipvsadm", "--list", "--daemon")
	if err != nil {
		t.Fatalf("ipvsadm --list --daemon: %v\n%s", err, out)
	}
	t.Logf("ipvsadm: %s", out)
	for _, want := range []string{"master sync daemon", "mcast=syf0", "syncid=42", "maxlen=1200", "group=239.0.0.42", "port=8850", "ttl=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("ipvsadm output lacks %q", want)
		}
	}
}

// TestGuestConnectionSyncedToBackup: a TCP connection through an IPVS NAT
// service in the master's namespace appears in the backup namespace's
// connection table once both run their daemons with the same sync id; a
// backup with another sync id receives nothing.
func TestGuestConnectionSyncedToBackup(t *testing.T) {
	requireIPVS(t)
	master := testkit.NewNS(t, "master")
	backup := testkit.NewNS(t, "backup")
	client := testkit.NewNS(t, "client")
	member := testkit.NewNS(t, "member")
	testkit.Veth(t, master, "syf0", "192.0.2.1/25", backup, "syf1", "192.0.2.2/25")
	testkit.Veth(t, client, "syc0", "203.0.113.10/24", master, "syx", "203.0.113.2/24")
	testkit.Veth(t, member, "sym0", "198.51.100.11/24", master, "syi", "198.51.100.2/24")
	master.AddAddr(t, "syx", "203.0.113.100/32")
	master.Sysctl(t, "net.ipv4.ip_forward", "1")
	member.Route(t, "default", "198.51.100.2")
	member.Serve(t, "m11", "0.0.0.0:8080")

	// The same service on both nodes, as lbd configures it on each.
	for _, ns := range []*testkit.NS{master, backup} {
		h, err := mobyipvs.New(ns.Path())
		if err != nil {
			t.Fatal(err)
		}
		svc := &mobyipvs.Service{Address: net.ParseIP("203.0.113.100"), Protocol: syscall.IPPROTO_TCP, Port: 80,
			AddressFamily: syscall.AF_INET, SchedName: "rr", Netmask: 0xffffffff}
		if err := h.NewService(svc); err != nil {
			t.Fatalf("%s: service: %v", ns.Name, err)
		}
		if err := h.NewDestination(svc, &mobyipvs.Destination{Address: net.ParseIP("198.51.100.11"), Port: 8080,
			AddressFamily: syscall.AF_INET, Weight: 1, ConnectionFlags: mobyipvs.ConnectionFlagMasq}); err != nil {
			t.Fatalf("%s: destination: %v", ns.Name, err)
		}
		h.Close()
	}

	mc, bc := open(t, master), open(t, backup)
	if err := mc.Start(ipvsnl.Daemon{State: ipvsnl.Master, Interface: "syf0", SyncID: 7}); err != nil {
		t.Fatal(err)
	}
	// Wrong sync id first: the backup must drop what the master sends.
	if err := bc.Start(ipvsnl.Daemon{State: ipvsnl.Backup, Interface: "syf1", SyncID: 8}); err != nil {
		t.Fatal(err)
	}
	foreign := dial(t, client)
	time.Sleep(6 * time.Second) // three of the master's 2 s flush periods
	if line, ok := findConn(t, master, foreign); !ok {
		t.Fatalf("the master itself has no entry for %v: the topology is wrong, not the sync", foreign.LocalAddr())
	} else {
		t.Logf("master: %s", line)
	}
	if line, ok := findConn(t, backup, foreign); ok {
		t.Fatalf("backup with sync id 8 installed a connection of sync id 7: %s", line)
	}

	if err := bc.Stop(ipvsnl.Backup); err != nil {
		t.Fatal(err)
	}
	if err := bc.Start(ipvsnl.Daemon{State: ipvsnl.Backup, Interface: "syf1", SyncID: 7}); err != nil {
		t.Fatal(err)
	}
	conn := dial(t, client)
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for {
		if line, ok := findConn(t, backup, conn); ok {
			t.Logf("backup after %v: %s", time.Since(start).Round(10*time.Millisecond), line)
			if !strings.Contains(line, "ESTABLISHED") {
				t.Errorf("synced entry is not ESTABLISHED: %s", line)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connection %v never appeared in the backup's /proc/net/ip_vs_conn within 20 s", conn.LocalAddr())
		}
		if _, err := fmt.Fprintf(conn, "ping\n"); err != nil {
			t.Fatalf("connection broke: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// Origins: the master forwards both connections itself; the backup has
	// synced entries only (the first connection too, if the master happened
	// to send it again after the backup's id was corrected).
	if c := connCounts(t, master); c.Local != 2 || c.Synced != 0 {
		t.Errorf("master's entries by origin: %+v, want 2 local", c)
	}
	if c := connCounts(t, backup); c.Local != 0 || c.Synced < 1 || c.Synced > 2 {
		t.Errorf("backup's entries by origin: %+v, want 1-2 synced, none local", c)
	}
}

// connCounts reads ns's connection table by origin.
func connCounts(t *testing.T, ns *testkit.NS) ipvsnl.ConnCounts {
	t.Helper()
	var c ipvsnl.ConnCounts
	if err := ns.Do(func() (err error) {
		c, err = ipvsnl.ReadConnCounts("/proc/thread-self/net/ip_vs_conn_sync")
		return err
	}); err != nil {
		t.Fatalf("%s: %v", ns.Name, err)
	}
	return c
}

func dial(t *testing.T, client *testkit.NS) net.Conn {
	t.Helper()
	c, greeting, err := client.Dial("203.0.113.10", "203.0.113.100:80", 5*time.Second)
	if err != nil {
		t.Fatalf("client -> VIP: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if !strings.HasPrefix(greeting, "m11 ") {
		t.Fatalf("greeting %q: not the member", greeting)
	}
	// Data after the handshake: the kernel syncs a TCP entry when it
	// becomes ESTABLISHED and on its packet thresholds.
	if _, err := fmt.Fprintf(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// findConn looks for c (client address and port to VIP:80, member
// 198.51.100.11:8080) in ns's IPVS connection table, read through
// /proc/thread-self so the thread's namespace is the one shown.
func findConn(t *testing.T, ns *testkit.NS, c net.Conn) (string, bool) {
	t.Helper()
	la := c.LocalAddr().(*net.TCPAddr)
	want := []string{"TCP", hexIP(la.IP), fmt.Sprintf("%04X", la.Port), hexIP(net.ParseIP("203.0.113.100")), "0050",
		hexIP(net.ParseIP("198.51.100.11")), "1F90"}
	var data []byte
	if err := ns.Do(func() error {
		var err error
		data, err = os.ReadFile("/proc/thread-self/net/ip_vs_conn")
		return err
	}); err != nil {
		t.Fatalf("%s: %v", ns.Name, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < len(want) {
			continue
		}
		match := true
		for i, w := range want {
			if !strings.EqualFold(f[i], w) {
				match = false
				break
			}
		}
		if match {
			return line, true
		}
	}
	return "", false
}

func hexIP(ip net.IP) string {
	v4 := ip.To4()
	return fmt.Sprintf("%02X%02X%02X%02X", v4[0], v4[1], v4[2], v4[3])
}
