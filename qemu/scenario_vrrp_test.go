package qemu

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/qemu/scenario"
)

// TestHAMasterKilledWith100msAdvertsBackupServesTheVIPs is the sub-second
// variant of the VRRP failover (issue 4): both nodes advertise every 100 ms
// (default 200 ms), and killing the master moves the VIPs to the backup while
// clients keep making requests. Times, and any spurious takeovers in steady
// state, go to out/lab-report.md.
func TestHAMasterKilledWith100msAdvertsBackupServesTheVIPs(t *testing.T) {
	rep := scenario.NewReport("VRRP failover at 100 ms adverts (TestHAMasterKilledWith100msAdvertsBackupServesTheVIPs)")
	t.Cleanup(func() {
		if err := rep.WriteTo(scenario.DefaultReportPath()); err != nil {
			t.Errorf("report: %v", err)
		}
	})
	configs := map[int][]byte{}
	for n, prio := range map[int]string{1: "200", 2: "100"} {
		cfg := string(mustConfig(t, fmt.Sprintf("ha-lb%d.yaml", n)))
		fast := strings.Replace(cfg, "vrrp:\n  priority: "+prio+"\n", "vrrp:\n  priority: "+prio+"\n  advert_interval: 10\n", 1)
		if fast == cfg {
			t.Fatalf("could not set advert_interval in ha-lb%d.yaml", n)
		}
		configs[n] = []byte(fast)
	}
	ha := scenario.Up(t, scenario.Options{Configs: configs, Report: rep})
	// Steady state for 5 s of client traffic. At 100 ms adverts the
	// backup declares the master dead after ~360 ms without an advert, which
	// a TCG guest sharing two host cores with other guests can miss: the
	// spurious takeovers and lost requests are recorded, not failed (the
	// default 200 ms is held flap-free by TestHAPairScenarios).
	before2 := ha.VRRPStates(2)
	loop := ha.Client("client1").StartLoopT(scenario.VIPNAT, loopEvery, loopTimeout, time.Minute)
	time.Sleep(5 * time.Second)
	s := scenario.Summarize(loop.Stop())
	flaps := countOf(ha.VRRPStates(2), "MASTER") - countOf(before2, "MASTER")
	rep.Add("steady state, 5 s, 100 ms adverts", "spurious lb2 takeovers / requests lost of sent", "%d / %d of %d", flaps, s.Lost, s.Sent)
	if flaps > 0 {
		t.Logf("VRRP at 100 ms adverts under TCG: lb2 took over %d times with no fault (%d of %d requests lost)", flaps, s.Lost, s.Sent)
	}
	if err := ha.WaitServing(scenario.VIPNAT, 1, 30*time.Second); err != nil {
		t.Fatalf("before the kill: %v", err)
	}
	if err := ha.WaitVRRPState(2, "BACKUP", 10*time.Second); err != nil {
		t.Fatalf("before the kill: %v", err)
	}
	masterKilled(t, ha, "master guest killed (QEMU SIGKILL), 100 ms adverts")
}
