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
// (default 200 ms); the pair must hold a stable master/backup split under
// TCG for a while, and killing the master moves the VIPs to the backup while
// clients keep making requests. Times go to out/lab-report.md.
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
	// Stable split: lb1 stays master for 5 s of client traffic.
	before1, before2 := ha.VRRPStates(1), ha.VRRPStates(2)
	loop := ha.Client("client1").StartLoopT(scenario.VIPNAT, loopEvery, loopTimeout, time.Minute)
	time.Sleep(5 * time.Second)
	s := scenario.Summarize(loop.Stop())
	if s.Lost > 0 {
		t.Errorf("%d of %d requests lost with a steady master", s.Lost, s.Sent)
	}
	if a1, a2 := ha.VRRPStates(1), ha.VRRPStates(2); len(a1) != len(before1) || len(a2) != len(before2) {
		t.Errorf("VRRP flapped at 100 ms adverts with no fault: lb1 %v → %v, lb2 %v → %v", before1, a1, before2, a2)
	}
	masterKilled(t, ha, "master guest killed (QEMU SIGKILL), 100 ms adverts")
}
