package qemu

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
)

const bootTimeout = 3 * time.Minute

func readConfig(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("configs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// selfIPs of lb1 in qemu/configs/lb1.yaml, and the lab host that probes each.
var lb1SelfIPs = []struct{ group, seg, host, hostAddr, selfIP string }{
	{"failover", netlab.Failover, "peer", "192.0.2.2/25", "192.0.2.1"},
	{"internal", netlab.Internal, "member", "198.51.100.11/24", "198.51.100.2"},
	{"external", netlab.External, "client", "203.0.113.10/24", "203.0.113.2"},
}

// bondStatus parses /proc/net/bonding/<bond>: member → MII status.
func bondStatus(t *testing.T, v *vm.VM, bond string) map[string]string {
	t.Helper()
	out, err := v.Run("cat /proc/net/bonding/"+bond, 30*time.Second)
	if err != nil {
		t.Fatalf("bond %s: %v", bond, err)
	}
	members := map[string]string{}
	var cur string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if m, ok := strings.CutPrefix(line, "Slave Interface: "); ok {
			cur = m
		} else if s, ok := strings.CutPrefix(line, "MII Status: "); ok && cur != "" {
			members[cur] = s
			cur = ""
		}
	}
	return members
}

func waitBondMembers(t *testing.T, v *vm.VM, bond string, wantUp int) map[string]string {
	t.Helper()
	var st map[string]string
	testkit.Eventually(t, 10*time.Second, 200*time.Millisecond, func() error {
		st = bondStatus(t, v, bond)
		up := 0
		for _, s := range st {
			if s == "up" {
				up++
			}
		}
		if up != wantUp {
			return fmt.Errorf("bond %s: members %v, want %d up", bond, st, wantUp)
		}
		return nil
	})
	return st
}

// TestApplianceBootsWithBondedGroupsAndSurvivesMemberLoss boots lb1 with six
// virtio NICs and checks, from inside the guest, that all three bonds are up
// with two members, the self IPs are present and the IPVS, bonding and
// nftables modules are loaded; then, from namespace hosts, that every self IP
// answers, and keeps answering while either member link of a bond is cut.
// Finally it powers the appliance off from its console.
func TestApplianceBootsWithBondedGroupsAndSurvivesMemberLoss(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	lab := appliance.NewLab(t)
	hosts := map[string]*netlab.Namespace{}
	for _, s := range lb1SelfIPs {
		h, err := lab.Host(s.host, s.seg, []string{s.hostAddr}, "")
		if err != nil {
			t.Fatal(err)
		}
		hosts[s.group] = h
	}
	v := appliance.Boot(t, lab, img, appliance.Options{Node: 1, Config: readConfig(t, "lb1.yaml")})
	ready, err := v.WaitReady(bootTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("QEMU start → ready: %.1fs", ready.Seconds())
	if err := v.Console.ExpectString("$ ", 30*time.Second); err != nil {
		t.Fatalf("no console prompt: %v", err)
	}

	for _, s := range lb1SelfIPs {
		st := waitBondMembers(t, v, s.group, 2)
		if len(st) != 2 {
			t.Errorf("bond %s has members %v, want 2", s.group, st)
		}
		state, err := v.Run("cat /sys/class/net/"+s.group+"/operstate", 30*time.Second)
		if err != nil || strings.TrimSpace(state) != "up" {
			t.Errorf("bond %s operstate %q (%v), want up", s.group, state, err)
		}
	}
	addrs, err := v.Run("ip addr", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range lb1SelfIPs {
		if !regexp.MustCompile(`inet ` + regexp.QuoteMeta(s.selfIP) + `/\d+`).MatchString(addrs) {
			t.Errorf("self IP %s not on the guest:\n%s", s.selfIP, addrs)
		}
	}
	mods, err := v.Run("cat /proc/modules", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"ip_vs", "ip_vs_wrr", "ip_vs_mh", "bonding", "nf_tables", "nft_nat", "nf_conntrack", "virtio_net", "8021q"} {
		if !regexp.MustCompile(`(?m)^` + m + ` `).MatchString(mods) {
			t.Errorf("module %s not loaded", m)
		}
	}
	// Drivers for hardware the guest lacks (the image carries them for bare
	// metal) are left out: loading them was most of init's boot time.
	for _, m := range []string{"mlx5_core", "ice", "i40e", "ixgbe", "bnxt_en", "nvme"} {
		if regexp.MustCompile(`(?m)^` + m + ` `).MatchString(mods) {
			t.Errorf("module %s loaded, but the guest has no such PCI device", m)
		}
	}
	if _, err := v.Run("cat /proc/net/ip_vs", 30*time.Second); err != nil {
		t.Errorf("/proc/net/ip_vs: %v", err)
	}
	if out, err := v.Run("ls /sys/class/net", 30*time.Second); err != nil || strings.Contains(out, "bond0") {
		t.Errorf("stray bond0 (bonding loaded without max_bonds=0?): %q %v", out, err)
	}

	for _, s := range lb1SelfIPs {
		if err := hosts[s.group].PingUntil(s.selfIP, 20, 500*time.Millisecond); err != nil {
			t.Fatalf("%s self IP: %v", s.group, err)
		}
	}

	// Cut each member of the Failover (active-backup) and Internal (802.3ad)
	// bonds in turn: the bond stays up and the self IP keeps answering.
	for _, s := range lb1SelfIPs[:2] {
		for member := 1; member <= 2; member++ {
			nic := appliance.NICID(s.seg, member)
			if err := v.SetLink(nic, false); err != nil {
				t.Fatal(err)
			}
			st := waitBondMembers(t, v, s.group, 1)
			start := time.Now()
			if err := hosts[s.group].PingUntil(s.selfIP, 20, 500*time.Millisecond); err != nil {
				t.Errorf("%s with %s cut (members %v): %v", s.group, nic, st, err)
			} else {
				t.Logf("%s with %s cut: self IP answers after %v", s.group, nic, time.Since(start).Round(time.Millisecond))
			}
			if state, _ := v.Run("cat /sys/class/net/"+s.group+"/operstate", 30*time.Second); strings.TrimSpace(state) != "up" {
				t.Errorf("bond %s went %q with one member cut", s.group, state)
			}
			if err := v.SetLink(nic, true); err != nil {
				t.Fatal(err)
			}
			waitBondMembers(t, v, s.group, 2)
		}
	}

	v.Console.Send("power off\n")
	if err := v.Console.ExpectString("services stopped; power off now", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.Exited():
	case <-time.After(60 * time.Second):
		t.Fatal("QEMU still running a minute after power off")
	}
}

// TestBrokenConfigBootsIntoMaintenanceNotPanic boots with a config that fails
// validation: init must announce maintenance on the console naming the bad
// field, bring up no bonds (so no self IPs or VIPs), keep the console shell
// usable, and never print the ready line.
func TestBrokenConfigBootsIntoMaintenanceNotPanic(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	lab := appliance.NewLab(t)
	bad := strings.Replace(string(readConfig(t, "lb1.yaml")), "addresses: [198.51.100.2/24]", "addresses: [198.51.100.2/24]\n    mtu: 70000", 1)
	v := appliance.Boot(t, lab, img, appliance.Options{Node: 1, Config: []byte(bad)})
	if err := v.Console.ExpectString("fulcrum: MAINTENANCE", bootTimeout); err != nil {
		t.Fatal(err)
	}
	if err := v.Console.ExpectString("network.internal.mtu", 10*time.Second); err != nil {
		t.Errorf("maintenance notice does not name the bad field: %v", err)
	}
	if err := v.Console.ExpectString("$ ", 30*time.Second); err != nil {
		t.Fatalf("no console prompt in maintenance: %v", err)
	}
	links, err := v.Run("ls /sys/class/net", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, bond := range []string{"failover", "internal", "external"} {
		if strings.Contains(links, bond) {
			t.Errorf("bond %s exists in maintenance state: %s", bond, links)
		}
	}
	if strings.Contains(v.Console.Output(), "fulcrum: ready") {
		t.Error("ready line printed despite the broken config")
	}
	if strings.Contains(v.Console.Output(), "Kernel panic") {
		t.Error("kernel panicked")
	}
}

// TestKernelArgumentSelectsAnotherConfig bakes a second config into the
// initramfs and points init at it with fulcrum.config=.
func TestKernelArgumentSelectsAnotherConfig(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	lab := appliance.NewLab(t)
	alt := strings.Replace(string(readConfig(t, "lb1.yaml")), "hostname: lb1", "hostname: lb-alt", 1)
	v := appliance.Boot(t, lab, img, appliance.Options{
		Node:    1,
		Files:   []cpioRecord{staticFile("etc/fulcrum/alt.yaml", alt)},
		Cmdline: "fulcrum.config=/etc/fulcrum/alt.yaml",
	})
	if _, err := v.WaitReady(bootTimeout); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(v.Console.Output(), "fulcrum: ready (host lb-alt") {
		t.Fatalf("ready line does not name host lb-alt:\n%s", v.Console.Output()[max(0, len(v.Console.Output())-500):])
	}
	if err := v.Console.ExpectString("$ ", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// Daemon log lines may interleave with command output on the console,
	// so look for the answer as a line of its own.
	out, err := v.Run("uname -n", 30*time.Second)
	if err != nil || !regexp.MustCompile(`(?m)^lb-alt\r?$`).MatchString(out) {
		t.Fatalf("hostname %q (%v), want lb-alt", out, err)
	}
}
