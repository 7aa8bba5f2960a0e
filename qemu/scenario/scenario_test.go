package scenario

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

func TestParseReply(t *testing.T) {
	r, err := ParseReply("member3 203.0.113.10:40000\n")
	if err != nil || r.Member != "member3" || r.Source.String() != "203.0.113.10:40000" {
		t.Fatalf("ParseReply = %+v, %v", r, err)
	}
	for _, bad := range []string{"", "member3", "member3 203.0.113.10", "member3 nonsense:1"} {
		if _, err := ParseReply(bad); err == nil {
			t.Errorf("ParseReply(%q) accepted", bad)
		}
	}
}

func TestRecoveryTakesTheEarliestAnswerAfterTheFault(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(start, end float64, err error) Result {
		return Result{Start: t0.Add(time.Duration(start * float64(time.Second))), End: t0.Add(time.Duration(end * float64(time.Second))), Err: err}
	}
	rs := []Result{
		at(-0.5, -0.49, nil),            // before the fault
		at(0.05, 1.05, nil),             // SYN lost, retransmitted after 1 s
		at(0.10, 2.10, errors.New("x")), // lost
		at(0.70, 0.71, nil),             // first answer after takeover
	}
	d, lost, ok := Recovery(rs, t0)
	if !ok || lost != 1 || d != 710*time.Millisecond {
		t.Fatalf("Recovery = %v, %d lost, ok=%v; want 710ms, 1, true", d, lost, ok)
	}
	if n := Late(rs, 500*time.Millisecond); n != 1 {
		t.Errorf("Late = %d, want 1", n)
	}
	if _, _, ok := Recovery(rs[:1], t0); ok {
		t.Error("Recovery found an answer among requests that all started before the fault")
	}
	s := Summarize(rs)
	if s.Sent != 4 || s.OK != 3 || s.Lost != 1 || s.FirstErr == nil {
		t.Errorf("Summarize = %+v", s)
	}
}

func TestReportKeepsOtherSectionsAndReplacesItsOwn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab-report.md")
	a := NewReport("A")
	a.Add("s", "m", "%d", 1)
	b := NewReport("B")
	b.Add("s", "m", "%d", 2)
	if err := a.WriteTo(path); err != nil {
		t.Fatal(err)
	}
	if err := b.WriteTo(path); err != nil {
		t.Fatal(err)
	}
	a2 := NewReport("A")
	a2.Add("s", "m", "%d", 3)
	if err := a2.WriteTo(path); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	s := string(got)
	if strings.Count(s, "## A") != 1 || strings.Count(s, "## B") != 1 || !strings.Contains(s, "| s | m | 3 |") || strings.Contains(s, "| s | m | 1 |") || !strings.Contains(s, "| s | m | 2 |") {
		t.Fatalf("report:\n%s", s)
	}
}

func TestNodeOfMAC(t *testing.T) {
	for _, n := range []int{1, 2} {
		for _, nic := range NICs(n) {
			mac, _ := net.ParseMAC(nic.MAC)
			if got := NodeOfMAC(mac); got != n {
				t.Errorf("NodeOfMAC(%s) = %d, want %d", nic.MAC, got, n)
			}
		}
	}
	if got := NodeOfMAC(net.HardwareAddr{0x02, 0, 0, 1, 2, 3}); got != 0 {
		t.Errorf("foreign MAC mapped to node %d", got)
	}
}

// The HA configs must be valid and agree with the plan the tests use.
func TestHAConfigsMatchThePlan(t *testing.T) {
	for _, n := range []int{1, 2} {
		b, err := ReadConfig(fmt.Sprintf("ha-lb%d.yaml", n))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(b)
		if err != nil {
			t.Fatalf("ha-lb%d.yaml: %v", n, err)
		}
		if cfg.Hostname != NodeName(n) {
			t.Errorf("ha-lb%d.yaml hostname %q", n, cfg.Hostname)
		}
		if len(cfg.VRRP.Instances) != 1 {
			t.Fatalf("ha-lb%d.yaml: want one vrrp instance", n)
		}
		in := cfg.VRRP.Instances[0]
		for _, a := range []string{VIPNAT, VIPFullNAT, VIPSticky, VIPSpare, SNATAddress} {
			if !slices.Contains(floating(in.External), a) {
				t.Errorf("ha-lb%d.yaml: %s does not float on External (%v)", n, a, in.External)
			}
		}
		for _, a := range []string{Gateway + "/24", VIPInternal} {
			if !slices.Contains(floating(in.Internal), a) {
				t.Errorf("ha-lb%d.yaml: %s does not float on Internal (%v)", n, a, in.Internal)
			}
		}
		var local []string
		for _, a := range cfg.LocalAddresses() {
			local = append(local, a.String())
		}
		if !slices.Equal(local, LocalAddresses(n)) {
			t.Errorf("ha-lb%d.yaml local addresses %v, plan says %v", n, local, LocalAddresses(n))
		}
		if got := cfg.Network.Management.Address; got.String() != SelfIP(n, "mgmt")+"/25" {
			t.Errorf("ha-lb%d.yaml management address %s", n, got)
		}
	}
}

// floating lists addresses as written in the config: a host prefix bare.
func floating(ps []config.HostPrefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
		if p.IsSingleIP() {
			out[i] = p.Addr().String()
		}
	}
	return out
}
