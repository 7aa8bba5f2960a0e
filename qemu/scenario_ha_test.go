package qemu

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/qemu/scenario"
)

// The configs the live-apply scenarios give `lbctl config apply URL`, served
// by the admin host on the management network.
const (
	nextConfig = "ha-next-lb%d.yaml" // node's boot config + virtual server web-new on 203.0.113.103
	badConfig  = "ha-bad.yaml"       // lb1's next config with an unknown scheduler: fails validation
	// syncConfig is lb1's next config with web-new on wrr; lb2 gets it only
	// through config sync. peerBadConfig moves web-new to FullNAT with a
	// local address pool only lb1 has: valid on lb1, refused by lb2.
	syncConfig    = "ha-sync-lb1.yaml"
	peerBadConfig = "ha-peer-refuses.yaml"
)

// preemptDelay is vrrp.preempt_delay in the HA configs.
const preemptDelay = 8 * time.Second

// handoverAllowance is how many requests a handover (failover, switchover,
// preemption) may lose: the appliance has no IPVS connection sync yet, so a
// connection in flight at the moment the VIP moves is reset by the new
// master. A request takes a few milliseconds, so at one request per
// loopEvery at most one or two are in flight.
const handoverAllowance = 2

// loopEvery and loopTimeout shape the client request loops of the fault
// scenarios: a request starts every loopEvery on a new connection, and a
// request that has no answer after loopTimeout counts as lost.
const (
	loopEvery   = 50 * time.Millisecond
	loopTimeout = 2 * time.Second
)

const webNewVS = `
  - name: web-new            # added by the live-apply scenario
    vip: 203.0.113.103
    port: "80"
    mode: nat
    scheduler: rr
    persistence: {enabled: false}
    pool: web
`

// withVS appends a virtual server to the virtual_servers list of cfg.
func withVS(t *testing.T, cfg []byte, vs string) string {
	t.Helper()
	s := string(cfg)
	i := strings.Index(s, "\npools:")
	if i < 0 {
		t.Fatal("config has no pools section to insert a virtual server before")
	}
	return s[:i] + vs + s[i:]
}

// applyFiles are the configs the admin host serves for the apply scenarios.
func applyFiles(t *testing.T, cfg1, cfg2 []byte) map[string][]byte {
	next1 := withVS(t, cfg1, webNewVS)
	bad := strings.Replace(next1, "scheduler: rr\n    persistence: {enabled: false}\n    pool: web\n\npools:", "scheduler: fastest\n    persistence: {enabled: false}\n    pool: web\n\npools:", 1)
	if bad == next1 {
		t.Fatal("could not derive the bad config")
	}
	synced := strings.Replace(next1, "    scheduler: rr\n    persistence: {enabled: false}\n    pool: web\n\npools:", "    scheduler: wrr\n    persistence: {enabled: false}\n    pool: web\n\npools:", 1)
	peerBad := strings.Replace(synced, "    vip: 203.0.113.103\n    port: \"80\"\n    mode: nat\n", "    vip: 203.0.113.103\n    port: \"80\"\n    mode: fullnat\n    local_address_pool: la1\n", 1)
	peerBad = strings.Replace(peerBad, "  la: {addresses: [198.51.100.201-204]}\n", "  la: {addresses: [198.51.100.201-204]}\n  la1: {addresses: [198.51.100.209]}\n", 1)
	peerBad = strings.Replace(peerBad, "198.51.100.204]\n", "198.51.100.204, 198.51.100.209]\n", 1) // local addresses float with lb1's instance
	for name, b := range map[string]string{syncConfig: synced, peerBadConfig: peerBad} {
		if _, err := config.Parse([]byte(b)); err != nil {
			t.Fatalf("%s must be valid on lb1: %v", name, err)
		}
	}
	if synced == next1 || strings.Count(peerBad, "la1") != 2 {
		t.Fatal("could not derive the config sync configs")
	}
	return map[string][]byte{
		fmt.Sprintf(nextConfig, 1): []byte(next1),
		fmt.Sprintf(nextConfig, 2): []byte(withVS(t, cfg2, webNewVS)),
		badConfig:                  []byte(bad),
		syncConfig:                 []byte(synced),
		peerBadConfig:              []byte(peerBad),
	}
}

func mustConfig(t *testing.T, name string) []byte {
	t.Helper()
	b, err := scenario.ReadConfig(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHAPairScenarios boots one two-node HA lab (qemu/configs/ha-lb1.yaml
// master, ha-lb2.yaml backup) and runs the scenarios that share it, the
// non-destructive ones first; faults come last. Measurements go to
// out/lab-report.md.
func TestHAPairScenarios(t *testing.T) {
	rep := scenario.NewReport("HA pair scenarios (TestHAPairScenarios)")
	t.Cleanup(func() {
		path := scenario.DefaultReportPath()
		if err := rep.WriteTo(path); err != nil {
			t.Errorf("report: %v", err)
		} else {
			t.Logf("lab report written to %s", path)
		}
	})
	start := time.Now()
	cfg1, cfg2 := mustConfig(t, "ha-lb1.yaml"), mustConfig(t, "ha-lb2.yaml")
	ha := scenario.Up(t, scenario.Options{Report: rep})
	configURL, err := ha.ServeFiles("admin", applyFiles(t, cfg1, cfg2))
	if err != nil {
		t.Fatal(err)
	}
	rep.Add("bring-up", "lab up (namespaces, 2 guests booted, lb1 serving)", "%.1f s", time.Since(start).Seconds())
	rep.Note("Fault scenarios: a client starts a request on a new connection every %v; a request unanswered after %v is lost.", loopEvery, loopTimeout)
	rep.Note("Planned handovers (switchover, preemption) may reset a connection in flight at the moment the VIP moves (no IPVS connection sync yet); the tests allow %d such.", handoverAllowance)

	t.Run("VRRPStartsOnlyAfterTheLBDaemonHasAppliedItsConfig", func(t *testing.T) {
		applied := regexp.MustCompile(`lbd\|.*msg="applied `)
		// init's supervisor starts vrrpd (After: lbd) once lbd reports ready
		gate := regexp.MustCompile(`msg="ready; starting" after=lbd service=vrrpd`)
		state := regexp.MustCompile(`vrrpd\|.*vrrp: state change`)
		for _, n := range []int{1, 2} {
			out := ha.Node(n).Console.Output()
			a, g, s := applied.FindStringIndex(out), gate.FindStringIndex(out), state.FindStringIndex(out)
			if a == nil || g == nil || s == nil || a[0] > g[0] || g[0] > s[0] {
				t.Errorf("lb%d console: lbd apply at %v, vrrpd started after lbd's ready at %v, first VRRP state change at %v; want them in that order", n, a, g, s)
			}
		}
	})

	t.Run("NATRoundRobinSpreadsNewConnectionsEvenlyAndMembersSeeTheClient", func(t *testing.T) {
		c := ha.Client("client1")
		counts := map[string]int{}
		for i := 0; i < 40; i++ {
			r, err := c.Get(scenario.VIPNAT)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			counts[r.Member]++
			if r.Source.Addr() != netip.MustParseAddr("203.0.113.10") {
				t.Errorf("NAT: %s saw source %s, want the client 203.0.113.10", r.Member, r.Source)
			}
		}
		for _, m := range scenario.Members() {
			if counts[m] != 10 {
				t.Errorf("round robin over 40 connections: %v, want 10 per member", counts)
				break
			}
		}
	})

	t.Run("FullNATMembersSeeTheMastersLocalAddresses", func(t *testing.T) {
		checkFullNAT(t, ha.Client("client1"), scenario.VIPFullNAT, scenario.LocalAddresses(1))
	})

	t.Run("InternalFullNATVIPBalancesEastWestTraffic", func(t *testing.T) {
		checkFullNAT(t, ha.Client("iclient"), scenario.VIPInternal, scenario.LocalAddresses(1))
	})

	t.Run("PersistenceKeepsEachClientOnOneMemberFor600s", func(t *testing.T) {
		seen := map[string]string{}
		for _, host := range []string{"client1", "client2"} {
			c := ha.Client(host)
			for i := 0; i < 12; i++ {
				r, err := c.Get(scenario.VIPSticky)
				if err != nil {
					t.Fatalf("%s request %d: %v", host, i, err)
				}
				if first, ok := seen[host]; ok && first != r.Member {
					t.Fatalf("%s moved from %s to %s despite persistence", host, first, r.Member)
				}
				seen[host] = r.Member
			}
		}
		out, err := ha.Run(1, "cat /proc/net/ip_vs")
		if err != nil {
			t.Fatal(err)
		}
		// /proc/net/ip_vs shows the persistence timeout in jiffies.
		m := regexp.MustCompile(`TCP\s+CB007166:0050\s+rr\s+persistent (\d+)`).FindStringSubmatch(out)
		if m == nil || !isSeconds(m[1], 600) {
			t.Errorf("IPVS service 203.0.113.102:80 is not rr with persistence 600 s:\n%s", out)
		}
		t.Logf("client1 → %s, client2 → %s", seen["client1"], seen["client2"])
	})

	t.Run("SNATMembersReachTheInternetFromThePoolAddress", func(t *testing.T) {
		for _, m := range []string{"member1", "member4"} {
			r, err := ha.Client(m).Get(scenario.Internet)
			if err != nil {
				t.Fatalf("%s → internet: %v", m, err)
			}
			if r.Member != "inet" || r.Source.Addr().String() != scenario.SNATAddress {
				t.Errorf("%s → internet: answered %q, want inet seeing %s", m, r, scenario.SNATAddress)
			}
		}
	})

	t.Run("OneBondMemberDownCausesNoFailoverAndNoLostRequest", func(t *testing.T) {
		before, before2 := ha.VRRPStates(1), ha.VRRPStates(2)
		loop := ha.Client("client1").StartLoopT(scenario.VIPNAT, loopEvery, loopTimeout, 2*time.Minute)
		v := ha.Node(1)
		for _, seg := range []string{netlab.Failover, netlab.External, netlab.Internal} {
			for m := 1; m <= 2; m++ {
				nic := fmt.Sprintf("%s%d", seg, m)
				if err := v.SetLink(nic, false); err != nil {
					loop.Stop()
					t.Fatal(err)
				}
				time.Sleep(2 * time.Second)
				if err := v.SetLink(nic, true); err != nil {
					loop.Stop()
					t.Fatal(err)
				}
				time.Sleep(2 * time.Second)
			}
		}
		s := scenario.Summarize(loop.Stop())
		ha.Report.Add("one bond member down (each of 6 links of lb1 cut for 2 s in turn)", "requests sent / lost", "%d / %d", s.Sent, s.Lost)
		if s.Lost > 0 {
			t.Errorf("%d of %d requests lost while single bond members were down (first: %v)", s.Lost, s.Sent, s.FirstErr)
		}
		if after := ha.VRRPStates(1); !slices.Equal(before, after) {
			t.Errorf("lb1 VRRP state changed while single bond members were down: %v → %v", before, after)
		}
		if after := ha.VRRPStates(2); countOf(after, "MASTER") != countOf(before2, "MASTER") {
			t.Errorf("lb2 became master while lb1's single bond members were down: %v → %v", before2, after)
		}
		if n, err := ha.ServingNode(scenario.VIPNAT); err != nil || n != 1 {
			t.Errorf("after the link cuts the VIP is served by lb%d (%v), want lb1", n, err)
		}
	})

	t.Run("LiveConfigApplyAddsAVirtualServerWithoutDisturbingAnEstablishedConnection", func(t *testing.T) {
		c := ha.Client("client2")
		conn, err := c.Open(scenario.VIPNAT)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		first, err := conn.Get()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(scenario.VIPSpare); err == nil {
			t.Fatalf("%s answers before the virtual server is configured", scenario.VIPSpare)
		}
		applied := time.Now()
		for _, n := range []int{1, 2} {
			if out, err := applyConfig(ha, n, configURL+"/"+fmt.Sprintf(nextConfig, n)); err != nil {
				t.Fatalf("lbctl config apply on lb%d: %v\n%s", n, err, out)
			}
		}
		r, err := c.Wait(scenario.VIPSpare, 30*time.Second)
		if err != nil {
			t.Fatalf("new virtual server: %v", err)
		}
		ha.Report.Add("live config apply (lbctl config apply, both nodes)", "apply started → new VS answers", "%.2f s", time.Since(applied).Seconds())
		t.Logf("new virtual server answered by %s", r.Member)
		for i := 0; i < 3; i++ {
			again, err := conn.Get()
			if err != nil {
				t.Fatalf("established connection to %s broken by the apply: %v", scenario.VIPNAT, err)
			}
			if again.Member != first.Member || again.Source != first.Source {
				t.Fatalf("established connection answered by %s, was %s", again, first)
			}
		}
	})

	t.Run("BadConfigOnTheConsoleIsRefusedAndNothingChanges", func(t *testing.T) {
		before, err := ha.Run(1, "cat /proc/net/ip_vs")
		if err != nil {
			t.Fatal(err)
		}
		out, err := applyConfig(ha, 1, configURL+"/"+badConfig)
		if err == nil {
			t.Fatalf("lbctl config apply accepted a config with an unknown scheduler:\n%s", out)
		}
		if !strings.Contains(out, "scheduler") || !strings.Contains(out, "fastest") {
			t.Errorf("refusal does not name the bad field and value (scheduler fastest):\n%s", out)
		}
		after, err := ha.Run(1, "cat /proc/net/ip_vs")
		if err != nil {
			t.Fatal(err)
		}
		if ipvsLines(before) != ipvsLines(after) {
			t.Errorf("IPVS table changed by a refused config:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		for _, vip := range []string{scenario.VIPNAT, scenario.VIPSpare} {
			if _, err := ha.Client("client1").Get(vip); err != nil {
				t.Errorf("%s after the refused config: %v", vip, err)
			}
		}
	})

	t.Run("ConfigAppliedOnLb1RunsOnLb2AndOneLb2RefusesChangesNeither", func(t *testing.T) {
		configSyncScenario(t, ha, configURL)
	})

	t.Run("ManualSwitchoverHandsTheVIPsToThePeerAndResumeTakesThemBack", func(t *testing.T) {
		loop := ha.Client("client1").StartLoopT(scenario.VIPNAT, loopEvery, loopTimeout, 2*time.Minute)
		t0 := time.Now()
		if out, err := ha.Run(1, "lbctl ha switchover"); err != nil {
			loop.Stop()
			t.Fatalf("lbctl ha switchover: %v\n%s", err, out)
		}
		err := ha.WaitServing(scenario.VIPNAT, 2, 30*time.Second)
		dOver := time.Since(t0)
		if err != nil {
			loop.Stop()
			t.Fatal(err)
		}
		// lb1 has the higher priority but must not preempt after a switchover.
		time.Sleep(2 * time.Second)
		if n, err := ha.ServingNode(scenario.VIPNAT); err != nil || n != 2 {
			loop.Stop()
			t.Fatalf("2 s after the switchover the VIP is served by lb%d (%v), want lb2", n, err)
		}
		t1 := time.Now()
		if out, err := ha.Run(1, "lbctl ha resume"); err != nil {
			loop.Stop()
			t.Fatalf("lbctl ha resume: %v\n%s", err, out)
		}
		err = ha.WaitServing(scenario.VIPNAT, 1, 30*time.Second)
		dBack := time.Since(t1)
		s := scenario.Summarize(loop.Stop())
		if err != nil {
			t.Fatal(err)
		}
		ha.Report.Add("manual switchover (lbctl ha switchover on lb1)", "command → lb2 serves the VIP", "%.2f s", dOver.Seconds())
		ha.Report.Add("manual switchover (lbctl ha resume on lb1)", "command → lb1 serves the VIP again", "%.2f s", dBack.Seconds())
		ha.Report.Add("manual switchover and back", "requests sent / lost", "%d / %d", s.Sent, s.Lost)
		if s.Lost > handoverAllowance {
			t.Errorf("%d of %d requests lost during switchover and back (first: %v); at most %d in flight at a handover may be", s.Lost, s.Sent, s.FirstErr, handoverAllowance)
		}
	})

	t.Run("VRRPDaemonKilledOnTheMasterResumesWithoutAFailover", func(t *testing.T) {
		vrrpdKilledOnMaster(t, ha)
	})

	t.Run("MasterExternalBondLostFailsOverToTheBackup", func(t *testing.T) {
		externalBondLost(t, ha)
	})

	killed := t.Run("MasterGuestKilledBackupServesTheVIPs", func(t *testing.T) {
		// An L7 client pinned by lb1's cookie stays on its member through lb2.
		cl := ha.Client("client1")
		pin, member := l7Pin(t, cl)
		masterKilled(t, ha, "master guest killed (QEMU SIGKILL), default adverts (200 ms)")
		l7StaysPinned(t, ha, cl, pin, member)
	})

	// lb2 alone changes the config while lb1 is down (config sync refuses
	// unless forced); lb1 must take that config when it returns.
	appliedAlone := killed && t.Run("ApplyWithThePeerDownIsRefusedUnlessForcedLocal", func(t *testing.T) {
		applyWithPeerDown(t, ha, configURL)
	})

	preempted := killed && t.Run("MasterReturnsAndPreempts", func(t *testing.T) {
		loop := ha.Client("client1").StartLoopT(scenario.VIPNAT, loopEvery, loopTimeout, 4*time.Minute)
		if err := ha.Boot(1, nil, "return after kill"); err != nil {
			loop.Stop()
			t.Fatal(err)
		}
		ready := time.Now()
		err := ha.WaitServing(scenario.VIPNAT, 1, preemptDelay+30*time.Second)
		took := time.Since(ready)
		s := scenario.Summarize(loop.Stop())
		if err != nil {
			t.Fatal(err)
		}
		ha.Report.Add("master returns (preempt on, preempt_delay 8 s)", "lb1 ready → lb1 serves the VIP", "%.2f s", took.Seconds())
		ha.Report.Add("master returns (preempt on, preempt_delay 8 s)", "requests sent / lost during boot and preemption", "%d / %d", s.Sent, s.Lost)
		if s.Lost > handoverAllowance {
			t.Errorf("%d of %d requests lost while lb1 returned and took over (first: %v); at most %d in flight at a handover may be", s.Lost, s.Sent, s.FirstErr, handoverAllowance)
		}
		if held, err := ha.Holds(2, scenario.VIPNAT); err != nil || held {
			t.Errorf("lb2 still holds %s after lb1 preempted (err %v)", scenario.VIPNAT, err)
		}
		// lb1 came back with its boot config, older than the applies the
		// pair took meanwhile: config sync brings it up to date.
		t0 := time.Now()
		if err := waitAgree(ha, 30*time.Second); err != nil {
			t.Error(err)
		} else {
			ha.Report.Add("config sync", "lb1 back with its older boot config → both nodes agree", "%.2f s after preemption", time.Since(t0).Seconds())
		}
		if appliedAlone {
			// the config lb2 applied alone: web-new back on rr
			if out, err := ha.Run(1, "cat /proc/net/ip_vs"); err != nil || !webNewRR.MatchString(out) {
				t.Errorf("lb1 back does not run the config lb2 applied while it was down (%v):\n%s", err, out)
			}
		}
	})

	_ = killed && preempted && t.Run("MasterReturnsWithNopreemptAndStaysBackup", func(t *testing.T) {
		ha.Kill(1)
		if err := ha.WaitServing(scenario.VIPNAT, 2, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		// nopreempt replaces the preempt delay (validation refuses both).
		nopreempt := strings.Replace(string(ha.Config(1)), "  preempt_delay: 8s\n", "  nopreempt: true\n", 1)
		if nopreempt == string(ha.Config(1)) {
			t.Fatal("could not derive the nopreempt config")
		}
		loop := ha.Client("client1").StartLoopT(scenario.VIPNAT, loopEvery, loopTimeout, 4*time.Minute)
		loopStart := time.Now()
		if err := ha.Boot(1, []byte(nopreempt), "return with nopreempt"); err != nil {
			loop.Stop()
			t.Fatal(err)
		}
		readyAt := time.Since(loopStart)
		// Past the preempt delay and many master-down intervals: lb1 would
		// have preempted by now.
		time.Sleep(preemptDelay + 4*time.Second)
		s := scenario.Summarize(loop.Stop())
		if n, err := ha.ServingNode(scenario.VIPNAT); err != nil || n != 2 {
			t.Errorf("%s served by lb%d (%v), want lb2 to stay master", scenario.VIPNAT, n, err)
		}
		if st := ha.VRRPStates(1); slices.Contains(st, "MASTER") {
			t.Errorf("lb1 with nopreempt became master: %v", st)
		}
		if held, err := ha.Holds(1, scenario.VIPNAT); err != nil || held {
			t.Errorf("lb1 (nopreempt backup) holds %s (err %v)", scenario.VIPNAT, err)
		}
		ha.Report.Add("master returns (nopreempt)", "requests sent / lost while lb1 booted as backup", "%d / %d", s.Sent, s.Lost)
		if s.Lost > 0 {
			t.Errorf("%d of %d requests lost while lb1 returned as backup (first: %v; started at %v into the loop, lb1 ready at %v)", s.Lost, s.Sent, s.FirstErr, s.LostAt, readyAt.Round(time.Millisecond))
		}
	})
}

// masterKilled kills lb1 (the master) while clients keep making requests to
// the External and Internal VIPs, and checks and records that lb2 takes both
// over: time from the kill to the first answered request, requests lost.
func masterKilled(t *testing.T, ha *scenario.HA, what string) {
	ext := ha.Client("client1").StartLoopT(scenario.VIPNAT, loopEvery, loopTimeout, 2*time.Minute)
	in := ha.Client("iclient").StartLoopT(scenario.VIPInternal, loopEvery, loopTimeout, 2*time.Minute)
	time.Sleep(time.Second)
	t0 := time.Now()
	ha.Kill(1)
	okExt, okIn := ext.WaitOK(t0, 30*time.Second), in.WaitOK(t0, 30*time.Second)
	time.Sleep(time.Second)
	rsExt, rsIn := ext.Stop(), in.Stop()
	if !okExt || !okIn {
		t.Fatalf("no request succeeded within 30 s of killing lb1 (external ok=%v, internal ok=%v)", okExt, okIn)
	}
	dExt, lostExt, _ := scenario.Recovery(rsExt, t0)
	dIn, lostIn, _ := scenario.Recovery(rsIn, t0)
	ha.Report.Add(what, "kill → first answer, External VIP (lost / late >0.5 s / sent)", "%.2f s (%d / %d / %d)", dExt.Seconds(), lostExt, scenario.Late(rsExt, 500*time.Millisecond), len(rsExt))
	ha.Report.Add(what, "kill → first answer, Internal VIP (lost / late >0.5 s / sent)", "%.2f s (%d / %d / %d)", dIn.Seconds(), lostIn, scenario.Late(rsIn, 500*time.Millisecond), len(rsIn))
	t.Logf("failover: external %.2fs (%d lost), internal %.2fs (%d lost)", dExt.Seconds(), lostExt, dIn.Seconds(), lostIn)
	// Requests whose connection lb1 had accepted before it died are reset
	// by lb2 (no connection sync yet); new connections retry their SYN.
	if lostExt > handoverAllowance || lostIn > handoverAllowance {
		t.Errorf("requests lost across the failover: %d External, %d Internal (allowed: %d each, in flight at the kill)", lostExt, lostIn, handoverAllowance)
	}
	for _, vip := range []string{scenario.VIPNAT, scenario.VIPInternal} {
		if n, err := ha.ServingNode(vip); err != nil || n != 2 {
			t.Errorf("%s served by lb%d (%v), want lb2", vip, n, err)
		}
	}
	if st := ha.VRRPStates(2); len(st) == 0 || st[len(st)-1] != "MASTER" {
		t.Errorf("lb2 VRRP states %v, want it to end MASTER", st)
	}
	// FullNAT on the new master uses the same (floating) local addresses.
	checkFullNAT(t, ha.Client("client1"), scenario.VIPFullNAT, scenario.LocalAddresses(2))
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

// isSeconds reports whether jiffies is secs seconds at one of the kernel's
// usual HZ values.
func isSeconds(jiffies string, secs int) bool {
	for _, hz := range []int{100, 250, 300, 1000} {
		if jiffies == fmt.Sprint(secs*hz) {
			return true
		}
	}
	return false
}

// checkFullNAT makes 20 requests to vip and checks that every member
// answers and sees one of the local addresses as the source.
func checkFullNAT(t *testing.T, c *scenario.Client, vip string, local []string) {
	t.Helper()
	counts := map[string]int{}
	for i := 0; i < 20; i++ {
		r, err := c.Get(vip)
		if err != nil {
			t.Fatalf("%s request %d: %v", vip, i, err)
		}
		counts[r.Member]++
		if !slices.Contains(local, r.Source.Addr().String()) {
			t.Errorf("FullNAT %s: %s saw source %s, want one of the local addresses %v", vip, r.Member, r.Source, local)
		}
	}
	if len(counts) != len(scenario.Members()) {
		t.Errorf("FullNAT %s reached %v, want all %d members", vip, counts, len(scenario.Members()))
	}
}

// applyConfig applies the config at url with the console CLI on node n; a
// refused config is an error, with lbctl's output.
// configState is what `lbctl show config` says of the nodes' configs.
type configState struct {
	gen   string
	hash  string
	agree bool
}

var (
	configSelfRE  = regexp.MustCompile(`(?m)^# config: this node \S+ generation (\d+) hash (\w+)$`)
	configAgreeRE = regexp.MustCompile(`(?m)^# config sync: the nodes (AGREE|DISAGREE)$`)
)

func showConfig(ha *scenario.HA, n int) (configState, error) {
	out, err := ha.Run(n, "lbctl show config")
	if err != nil {
		return configState{}, fmt.Errorf("lbctl show config on lb%d: %v\n%s", n, err, out)
	}
	m, a := configSelfRE.FindStringSubmatch(out), configAgreeRE.FindStringSubmatch(out)
	if m == nil || a == nil {
		return configState{}, fmt.Errorf("lbctl show config on lb%d does not say the generation, hash and agreement:\n%s", n, out)
	}
	return configState{gen: m[1], hash: m[2], agree: a[1] == "AGREE"}, nil
}

// waitAgree waits until both nodes say they agree on the same hash.
func waitAgree(ha *scenario.HA, timeout time.Duration) error {
	var last string
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(time.Second) {
		s1, err1 := showConfig(ha, 1)
		s2, err2 := showConfig(ha, 2)
		if err1 == nil && err2 == nil && s1.agree && s2.agree && s1.hash == s2.hash && s1.gen == s2.gen {
			return nil
		}
		last = fmt.Sprintf("lb1 %+v %v, lb2 %+v %v", s1, err1, s2, err2)
	}
	return fmt.Errorf("the nodes do not agree on the config after %v: %s", timeout, last)
}

// configSyncScenario: an apply on lb1 alone runs on lb2 too (same hash,
// web-new on wrr in lb2's IPVS table); a config lb2 refuses is refused on
// lb1 and changes neither node's IPVS table or config hash.
func configSyncScenario(t *testing.T, ha *scenario.HA, configURL string) {
	if err := waitAgree(ha, 20*time.Second); err != nil {
		t.Fatalf("before: %v", err)
	}
	before, _ := showConfig(ha, 1)
	t0 := time.Now()
	out, err := applyConfig(ha, 1, configURL+"/"+syncConfig)
	if err != nil || !strings.Contains(out, "192.0.2.2") {
		t.Fatalf("lbctl config apply on lb1: %v\n%s", err, out)
	}
	ha.Report.Add("config sync", "apply on lb1, both nodes (two-phase) → lbctl returns", "%.2f s", time.Since(t0).Seconds())
	s1, err1 := showConfig(ha, 1)
	s2, err2 := showConfig(ha, 2)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if s1.hash != s2.hash || s1.gen != s2.gen || s1.hash == before.hash || !s1.agree || !s2.agree {
		t.Fatalf("after the apply on lb1: lb1 %+v, lb2 %+v (before %+v)", s1, s2, before)
	}
	// web-new 203.0.113.103:80 is CB007167:0050 in /proc/net/ip_vs
	wrr := regexp.MustCompile(`TCP\s+CB007167:0050\s+wrr`)
	var tables [3]string
	for _, n := range []int{1, 2} {
		tables[n], err = ha.Run(n, "cat /proc/net/ip_vs")
		if err != nil || !wrr.MatchString(tables[n]) {
			t.Fatalf("lb%d does not run web-new with wrr after the apply on lb1 (%v):\n%s", n, err, tables[n])
		}
	}
	out, err = applyConfig(ha, 1, configURL+"/"+peerBadConfig)
	if err == nil || !strings.Contains(out, "refused") || !strings.Contains(out, "local_address_pool") {
		t.Fatalf("a config lb2 refuses: %v\n%s", err, out)
	}
	for _, n := range []int{1, 2} {
		after, err := ha.Run(n, "cat /proc/net/ip_vs")
		if err != nil || ipvsLines(after) != ipvsLines(tables[n]) {
			t.Errorf("lb%d's IPVS table changed by a config lb2 refused (%v):\nbefore:\n%s\nafter:\n%s", n, err, tables[n], after)
		}
	}
	a1, _ := showConfig(ha, 1)
	a2, _ := showConfig(ha, 2)
	if a1 != s1 || a2 != s2 {
		t.Errorf("a refused config changed the config state: lb1 %+v → %+v, lb2 %+v → %+v", s1, a1, s2, a2)
	}
}

var webNewRR = regexp.MustCompile(`TCP\s+CB007167:0050\s+rr`)

// applyWithPeerDown (lb1 killed): an apply on lb2 is refused naming the
// unreachable peer and changes nothing; with --force-local it runs on lb2
// alone and lb2 says the nodes disagree.
func applyWithPeerDown(t *testing.T, ha *scenario.HA, configURL string) {
	before, err := ha.Run(2, "cat /proc/net/ip_vs")
	if err != nil {
		t.Fatal(err)
	}
	url := configURL + "/" + fmt.Sprintf(nextConfig, 2) // web-new on rr again
	t0 := time.Now()
	out, err := applyConfig(ha, 2, url)
	if err == nil || !strings.Contains(out, "192.0.2.1 did not answer") || !strings.Contains(out, "--force-local") {
		t.Fatalf("apply with the peer down: %v\n%s", err, out)
	}
	ha.Report.Add("config sync", "apply with the peer down → refused", "%.2f s", time.Since(t0).Seconds())
	if after, err := ha.Run(2, "cat /proc/net/ip_vs"); err != nil || ipvsLines(after) != ipvsLines(before) {
		t.Fatalf("a refused apply changed lb2's IPVS table (%v):\n%s", err, after)
	}
	out, err = ha.Run(2, "lbctl config apply --force-local "+url)
	if err != nil || !strings.Contains(out, "this node only") {
		t.Fatalf("lbctl config apply --force-local: %v\n%s", err, out)
	}
	if after, err := ha.Run(2, "cat /proc/net/ip_vs"); err != nil || !webNewRR.MatchString(after) {
		t.Fatalf("forced apply not in lb2's IPVS table (%v):\n%s", err, after)
	}
	if s2, err := showConfig(ha, 2); err != nil || s2.agree {
		t.Errorf("lb2 with its peer down says the nodes agree: %+v %v", s2, err)
	}
}

func applyConfig(ha *scenario.HA, n int, url string) (string, error) {
	return ha.Run(n, "lbctl config apply "+url)
}

// ipvsLines keeps the service and destination lines of /proc/net/ip_vs
// (without counters that change with traffic).
func ipvsLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "FWM") {
			out = append(out, strings.Join(f, " "))
		}
		if len(f) >= 4 && f[0] == "->" && f[1] != "RemoteAddress:Port" {
			out = append(out, strings.Join(f[:4], " "))
		}
	}
	return strings.Join(out, "\n")
}

var (
	resumedRE      = regexp.MustCompile(`vrrpd\|.*resuming as master`)
	runningVRRPDRE = regexp.MustCompile(`(?m)^vrrpd\s+running pid (\d+)`)
)

// vrrpdKilledOnMaster: kill -9 of vrrpd on lb1 (master). init restarts it at
// once (it ran longer than the stable period), the new vrrpd finds the VIPs
// still on the bonds and resumes as master, advertising at once: lb2 never
// becomes master and no request is lost (issue 12.5; before: lb2 took over
// at 0.7 s and lb1 preempted back at 9.9 s).
func vrrpdKilledOnMaster(t *testing.T, ha *scenario.HA) {
	out, err := ha.Run(1, "lbctl show services")
	if err != nil {
		t.Fatalf("lbctl show services: %v\n%s", err, out)
	}
	m := runningVRRPDRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("vrrpd not running on lb1:\n%s", out)
	}
	pid := m[1]
	// init restarts a daemon at once only after a run longer than its
	// stable period (10 s); right after boot it would wait 1 s first.
	time.Sleep(12 * time.Second)
	before1, before2 := ha.VRRPStates(1), ha.VRRPStates(2)
	resumedBefore := len(resumedRE.FindAllString(ha.Node(1).Console.Output(), -1))
	loop := ha.Client("client1").StartLoopT(scenario.VIPNAT, loopEvery, loopTimeout, 2*time.Minute)
	time.Sleep(time.Second)
	t0 := time.Now()
	if out, err := ha.Run(1, "kill -9 "+pid); err != nil {
		loop.Stop()
		t.Fatalf("kill -9 %s: %v\n%s", pid, err, out)
	}
	var dResume time.Duration
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if len(resumedRE.FindAllString(ha.Node(1).Console.Output(), -1)) > resumedBefore {
			dResume = time.Since(t0)
			break
		}
	}
	time.Sleep(5 * time.Second) // longer than lb2's master-down interval
	s := scenario.Summarize(loop.Stop())
	after1, after2 := ha.VRRPStates(1), ha.VRRPStates(2)
	ha.Report.Add("kill -9 vrrpd on the master", "kill → restarted vrrpd resumed as master (console)", "%.2f s", dResume.Seconds())
	ha.Report.Add("kill -9 vrrpd on the master", "backup takeovers / requests sent / lost", "%d / %d / %d", countOf(after2, "MASTER")-countOf(before2, "MASTER"), s.Sent, s.Lost)
	if dResume == 0 {
		t.Errorf("lb1's vrrpd did not resume as master within 30 s of kill -9 (states %v → %v)", before1, after1)
	}
	if n := countOf(after2, "MASTER") - countOf(before2, "MASTER"); n != 0 {
		t.Errorf("lb2 became master %d times after vrrpd was killed on lb1: %v → %v", n, before2, after2)
	}
	if s.Lost > 0 {
		t.Errorf("%d of %d requests lost across the vrrpd restart (first: %v)", s.Lost, s.Sent, s.FirstErr)
	}
	if n, err := ha.ServingNode(scenario.VIPNAT); err != nil || n != 1 {
		t.Errorf("after the vrrpd restart the VIP is served by lb%d (%v), want lb1", n, err)
	}
}

// externalBondLost: both External links of lb1 (master) cut. Tracking of
// the External and Internal bonds is on by default in HA configs, so lb1
// faults (priority-0 advert) and lb2 takes over; when the links return lb1
// preempts after preempt_delay. (Before, without a track section, losing
// the master's External bond was a full outage with no failover.)
func externalBondLost(t *testing.T, ha *scenario.HA) {
	loop := ha.Client("client1").StartLoopT(scenario.VIPNAT, loopEvery, loopTimeout, 2*time.Minute)
	time.Sleep(time.Second)
	v := ha.Node(1)
	t0 := time.Now()
	for m := 1; m <= 2; m++ {
		if err := v.SetLink(fmt.Sprintf("%s%d", netlab.External, m), false); err != nil {
			loop.Stop()
			t.Fatal(err)
		}
	}
	err := ha.WaitServing(scenario.VIPNAT, 2, 15*time.Second)
	dOver := time.Since(t0)
	for m := 1; m <= 2; m++ {
		if err := v.SetLink(fmt.Sprintf("%s%d", netlab.External, m), true); err != nil {
			t.Error(err)
		}
	}
	if err != nil {
		loop.Stop()
		t.Fatalf("lb1's External bond down: %v", err)
	}
	t1 := time.Now()
	errBack := ha.WaitServing(scenario.VIPNAT, 1, preemptDelay+30*time.Second)
	dBack := time.Since(t1)
	s := scenario.Summarize(loop.Stop())
	ha.Report.Add("master's External bond lost (both links cut)", "cut → lb2 serves the VIP", "%.2f s", dOver.Seconds())
	ha.Report.Add("master's External bond lost (both links cut)", "links back → lb1 serves again (preempt_delay 8 s)", "%.2f s", dBack.Seconds())
	ha.Report.Add("master's External bond lost (both links cut)", "requests sent / lost", "%d / %d", s.Sent, s.Lost)
	if errBack != nil {
		t.Errorf("lb1 did not take the VIP back after its External links returned: %v", errBack)
	}
}

// l7URL is the http virtual server with cookie persistence (web-cookie).
const l7URL = "http://" + scenario.VIPNAT + ":8080/"

// l7Get makes one request to web-cookie from c's namespace with cookie
// (name=value, "" for none) and returns the member and any Set-Cookie.
func l7Get(c *scenario.Client, cookie string) (member, setCookie string, err error) {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext:       func(_ context.Context, _, addr string) (net.Conn, error) { return c.Dial(addr) },
	}}
	req, _ := http.NewRequest("GET", l7URL, nil)
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	r, err := scenario.ParseReply(string(b))
	if err != nil {
		return "", "", err
	}
	sc := ""
	if cs := resp.Cookies(); len(cs) > 0 {
		sc = cs[0].Name + "=" + cs[0].Value
	}
	return r.Member, sc, nil
}

// l7Pin gets a persistence cookie from the master (waiting for its health
// checks to admit members) and the member it pins.
func l7Pin(t *testing.T, c *scenario.Client) (cookie, member string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, sc, err := l7Get(c, "")
		if err == nil && sc != "" {
			return sc, m
		}
		if time.Now().After(deadline) {
			t.Fatalf("web-cookie (%s) gave no cookie within 30 s: %v", l7URL, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// l7StaysPinned checks that the new master honours the old master's
// cookie: every request goes to the pinned member and no new cookie is set.
func l7StaysPinned(t *testing.T, ha *scenario.HA, c *scenario.Client, cookie, member string) {
	t.Helper()
	start := time.Now()
	var err error
	for time.Since(start) < 30*time.Second {
		if _, _, err = l7Get(c, cookie); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("web-cookie not served by lb2 within 30 s: %v", err)
	}
	for i := range 20 {
		m, sc, err := l7Get(c, cookie)
		if err != nil {
			t.Fatalf("request %d through lb2: %v", i, err)
		}
		if m != member || sc != "" {
			t.Fatalf("request %d through lb2 went to %s (new cookie %q); lb1's cookie pinned %s", i, m, sc, member)
		}
	}
	ha.Report.Add("L7 cookie persistence across the failover", "requests after lb2 took over that stayed on lb1's pinned member", "20 / 20 (%s)", member)
}
