package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/node"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
)

// The test binary doubles as vrrpd when re-executed with VRRPD_TEST_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("VRRPD_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func applianceConfig(host string, n, prio int) string {
	return fmt.Sprintf(`version: 1
hostname: %s
network:
  failover: {members: [eth0], addresses: [192.0.2.%d/25]}
  internal: {members: [eth1], addresses: [198.51.100.%d/24]}
  external: {members: [eth2], addresses: [203.0.113.%d/24]}
vrrp:
  priority: %d
  advert_interval: 100
  peers: [192.0.2.%d]
  instances:
    - vrid: 51
      internal: [198.51.100.1/24]
      external: [203.0.113.100/24]
`, host, n, n+1, n+1, prio, 3-n)
}

type nsT struct {
	*testkit.NS
	h *netlink.Handle
}

func mkNS(t *testing.T, name string) *nsT {
	ns := testkit.NewNS(t, name)
	return &nsT{ns, ns.Netlink()}
}

func (n *nsT) up(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		l, err := n.h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

func (n *nsT) addr(t *testing.T, link, cidr string) { t.Helper(); n.AddAddr(t, link, cidr) }

func (n *nsT) hasVIP() bool {
	l, err := n.h.LinkByName("external")
	if err != nil {
		return false
	}
	as, _ := n.h.AddrList(l, netlink.FAMILY_V4)
	for _, a := range as {
		if a.IP.String() == "203.0.113.100" {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	testkit.Eventually(t, d, 10*time.Millisecond, func() error {
		if !f() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

// pairLab is two namespaces joined on "failover": vrrpd runs in a (lb1,
// priority 150), our node library in p as the peer lb2 (priority 100).
type pairLab struct {
	t    *testing.T
	a, p *nsT
	cfgA string
	peer *node.Node
}

func newPairLab(t *testing.T) *pairLab {
	a, p := mkNS(t, "vrdA"), mkNS(t, "vrdB")
	if err := a.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "failover"}, PeerName: "failover", PeerNamespace: netlink.NsFd(p.Fd())}); err != nil {
		t.Fatal(err)
	}
	for i, n := range []*nsT{a, p} {
		for _, g := range []string{"internal", "external"} {
			if err := n.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: g}, PeerName: g[:1] + "peer"}); err != nil {
				t.Fatal(err)
			}
			n.up(t, g, g[:1]+"peer")
		}
		n.up(t, "failover")
		n.addr(t, "failover", fmt.Sprintf("192.0.2.%d/25", i+1))
		n.addr(t, "internal", fmt.Sprintf("198.51.100.%d/24", i+2))
		n.addr(t, "external", fmt.Sprintf("203.0.113.%d/24", i+2))
	}
	l := &pairLab{t: t, a: a, p: p, cfgA: filepath.Join(t.TempDir(), "lb1.yaml")}
	os.WriteFile(l.cfgA, []byte(applianceConfig("lb1", 1, 150)), 0o644)

	cfgB, err := config.Parse([]byte(applianceConfig("lb2", 2, 100)))
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(os.Stderr)
	l.peer, err = node.New(node.Options{Config: cfgB.VRRP, Interfaces: cfgB.VRRPInterfaces(), Log: log, NetNS: p.Handle()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go l.peer.Run(ctx)
	return l
}

func (l *pairLab) peerState() fsm.State { return l.peer.Status()[0].State }

// vrrpd starts vrrpd in namespace a; its output goes to the test log at the end.
func (l *pairLab) vrrpd() *exec.Cmd {
	t := l.t
	var out bytes.Buffer
	cmd := exec.Command(os.Args[0], "-config", l.cfgA, "-log-level", "debug")
	cmd.Env = append(os.Environ(), "VRRPD_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := l.a.Do(cmd.Start); err != nil { // vrrpd runs in namespace a
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		t.Logf("vrrpd (pid %d) output:\n%s", cmd.Process.Pid, out.String())
	})
	return cmd
}

// waitMaster waits until vrrpd holds the VIP and the peer hears it.
func (l *pairLab) waitMaster() {
	waitFor(l.t, 8*time.Second, "vrrpd master", l.a.hasVIP)
	waitFor(l.t, 8*time.Second, "peer backup hearing vrrpd", func() bool {
		return l.peerState() == fsm.Backup && l.peer.Status()[0].Master.String() == "192.0.2.1"
	})
}

// vrrpd loads the appliance config, becomes master against a lower-priority
// peer, and on SIGTERM resigns with priority 0 (the peer takes over long
// before its 3.6 s master-down interval), removes the VIP and exits 0.
func TestVRRPDaemonResignsOnSIGTERM(t *testing.T) {
	l := newPairLab(t)
	cmd := l.vrrpd()
	l.waitMaster()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "peer master", func() bool { return l.peerState() == fsm.Master })
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Errorf("peer took over %s after SIGTERM: no priority-0 advert (master-down is 3.6 s)", took)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("vrrpd exited with %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("vrrpd did not exit after SIGTERM")
	}
	if l.a.hasVIP() {
		t.Error("vrrpd left the VIP behind")
	}
}

// kill -9 of vrrpd on the master and an immediate restart (what init's
// supervisor does): the new vrrpd finds the VIP still on its bond and
// resumes as master at once. The VIP never leaves the master and the peer
// never takes it (issue 12.5; the old vrrpd removed the VIP and started as
// backup, then took over again 3.4 s later).
func TestVRRPDaemonRestartResumesMaster(t *testing.T) {
	l := newPairLab(t)
	first := l.vrrpd()
	l.waitMaster()
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	killed := time.Now()
	rx := l.peer.Counters()["rx"]
	second := l.vrrpd()
	var vipGone, peerMaster time.Duration
	var resumed time.Duration
	for time.Since(killed) < 6*time.Second {
		el := time.Since(killed)
		if !l.a.hasVIP() && vipGone == 0 {
			vipGone = el
		}
		if l.peerState() == fsm.Master && peerMaster == 0 {
			peerMaster = el
		}
		if resumed == 0 && l.peer.Counters()["rx"] > rx {
			resumed = el
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("after kill -9: the peer heard the restarted vrrpd's first advert %s later", resumed)
	if vipGone != 0 {
		t.Errorf("the VIP left the master %s after kill -9", vipGone)
	}
	if peerMaster != 0 {
		t.Errorf("the peer took over %s after kill -9", peerMaster)
	}
	if !l.a.hasVIP() || l.peerState() != fsm.Backup {
		t.Errorf("at the end: master holds VIP %v, peer %s", l.a.hasVIP(), l.peerState())
	}
	_ = second
}

// A bad config file is reported with its field path and line, and vrrpd
// exits non-zero without touching anything.
func TestVRRPDaemonRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.yaml")
	os.WriteFile(path, []byte(applianceConfig("lb1", 1, 300)), 0o644)
	cmd := exec.Command(os.Args[0], "-config", path)
	cmd.Env = append(os.Environ(), "VRRPD_TEST_MAIN=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("vrrpd accepted a bad config:\n%s", out)
	}
	if !bytes.Contains(out, []byte("vrrp.priority (line 8): 300 is out of range")) {
		t.Errorf("error does not name the field and line:\n%s", out)
	}
}
