package ipvs_test

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/nat/nstest"
	"golang.org/x/sys/unix"
)

// bigState is nVS services (VIPs 203.0.113.100-149 x ports) with nDest
// members each (198.51.100.11.. :8080), wrr, persistence 600 s, NAT.
func bigState(nVS, nDest int) *ipvs.State {
	st := ipvs.NewState()
	for i := 0; i < nVS; i++ {
		vip := netip.AddrFrom4([4]byte{203, 0, 113, byte(100 + i%50)})
		k := ipvs.ServiceKey{Family: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Addr: vip, Port: uint16(1000 + i/50)}
		s := &ipvs.Service{Key: k, Scheduler: "wrr", Flags: ipvs.FlagPersistent, Timeout: 600, Netmask: ipvs.NetmaskV4(32), Dests: map[ipvs.DestKey]*ipvs.Dest{}}
		for j := 0; j < nDest; j++ {
			dk := ipvs.DestKey{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(11 + j)}), Port: 8080}
			s.Dests[dk] = &ipvs.Dest{Key: dk, Weight: 1, Fwd: ipvs.FwdMasq}
		}
		st.Services[k] = s
	}
	return st
}

// restoreText is the same table in ipvsadm-restore form.
func restoreText(st *ipvs.State) string {
	var b strings.Builder
	for _, s := range st.SortedServices() {
		vs := netip.AddrPortFrom(s.Key.Addr, s.Key.Port)
		fmt.Fprintf(&b, "-A -t %s -s %s -p %d\n", vs, s.Scheduler, s.Timeout)
		for _, d := range s.SortedDests() {
			fmt.Fprintf(&b, "-a -t %s -r %s -m -w %d\n", vs, d.Key, d.Weight)
		}
	}
	return b.String()
}

type benchResult struct {
	cold, change, noop time.Duration
	ops                int
}

func runBench(t testing.TB, ns *nstest.NS, nVS, nDest int) benchResult {
	h, err := ipvs.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rec := ipvs.NewReconciler(h, discard(), ipvs.Options{DrainTimeout: time.Minute})
	if _, err := rec.Apply(ipvs.NewState()); err != nil { // start empty
		t.Fatal(err)
	}
	st := bigState(nVS, nDest)
	start := time.Now()
	a, err := rec.Apply(st)
	if err != nil {
		t.Fatal(err)
	}
	var r benchResult
	r.cold, r.ops = time.Since(start), len(a.Plan.Ops)
	// One member's weight changes.
	for _, s := range st.SortedServices()[:1] {
		s.SortedDests()[0].Weight = 7
	}
	start = time.Now()
	a, err = rec.Apply(st)
	if err != nil {
		t.Fatal(err)
	}
	r.change = time.Since(start)
	if len(a.Plan.Ops) != 1 {
		t.Fatalf("one-member change planned %d ops", len(a.Plan.Ops))
	}
	start = time.Now()
	if a, err = rec.Apply(st); err != nil || !a.Plan.Empty() {
		t.Fatalf("no-op apply: %v %v", err, a.Plan)
	}
	r.noop = time.Since(start)
	if _, err := rec.Apply(ipvs.NewState()); err != nil {
		t.Fatal(err)
	}
	return r
}

// BenchmarkApply1000x10 applies 1000 VS x 10 members cold, then a
// one-member change (reported as extra metrics). Needs IPVS (guest).
func BenchmarkApply1000x10(b *testing.B) {
	requireIPVS(b)
	ns := nstest.New(b, "lbbench")
	var cold, change time.Duration
	for i := 0; i < b.N; i++ {
		r := runBench(b, ns, 1000, 10)
		cold += r.cold
		change += r.change
	}
	b.ReportMetric(float64(cold.Milliseconds())/float64(b.N), "ms-cold")
	b.ReportMetric(float64(change.Microseconds())/float64(b.N), "us-one-change")
}

var benchReport = flag.String("ipvs-bench-report", "", "write the IPVS benchmark report (markdown) to this file (TestGuestBenchReport)")

// TestGuestBenchReport writes the benchmark report (markdown) to the file
// named by -ipvs-bench-report or FULCRUM_IPVS_BENCH, beside ipvsadm-restore
// of the same rules when ipvsadm is installed, and logs it. Skipped unless
// one of them is set.
func TestGuestBenchReport(t *testing.T) {
	out := *benchReport
	if out == "" {
		out = os.Getenv("FULCRUM_IPVS_BENCH")
	}
	if out == "" {
		t.Skip("set -ipvs-bench-report=FILE or FULCRUM_IPVS_BENCH=FILE to write the IPVS benchmark report")
	}
	requireIPVS(t)
	ns := nstest.New(t, "lbbench")
	const runs = 3
	var res []benchResult
	for i := 0; i < runs; i++ {
		res = append(res, runBench(t, ns, 1000, 10))
	}
	med := func(f func(benchResult) time.Duration) time.Duration {
		v := make([]time.Duration, len(res))
		for i, r := range res {
			v[i] = f(r)
		}
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		return v[len(v)/2]
	}
	var b strings.Builder
	uname, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "# IPVS apply benchmark\n\nKernel %s, %d runs each, median.\n\n", strings.TrimSpace(string(uname)), runs)
	fmt.Fprintf(&b, "| what | time |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| lbcore/ipvs cold apply, 1000 VS x 10 members (%d netlink ops) | %s |\n", res[0].ops, med(func(r benchResult) time.Duration { return r.cold }).Round(time.Millisecond))
	fmt.Fprintf(&b, "| lbcore/ipvs one-member change on top (read + diff + 1 op) | %s |\n", med(func(r benchResult) time.Duration { return r.change }).Round(time.Microsecond))
	fmt.Fprintf(&b, "| lbcore/ipvs no-op re-apply (read + diff) | %s |\n", med(func(r benchResult) time.Duration { return r.noop }).Round(time.Microsecond))
	if _, err := exec.LookPath("ipvsadm-restore"); err == nil {
		rules := filepath.Join(t.TempDir(), "rules")
		if err := os.WriteFile(rules, []byte(restoreText(bigState(1000, 10))), 0o644); err != nil {
			t.Fatal(err)
		}
		var times []time.Duration
		for i := 0; i < runs; i++ {
			if outp, err := ns.Exec("ipvsadm", "-C"); err != nil {
				t.Fatalf("ipvsadm -C: %v %s", err, outp)
			}
			start := time.Now()
			if outp, err := ns.Exec("sh", "-c", "ipvsadm-restore < "+rules); err != nil {
				t.Fatalf("ipvsadm-restore: %v %s", err, outp)
			}
			times = append(times, time.Since(start))
		}
		ns.Exec("ipvsadm", "-C")
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		fmt.Fprintf(&b, "| ipvsadm-restore of the same rules (process included) | %s |\n", times[len(times)/2].Round(time.Millisecond))
	} else {
		fmt.Fprintf(&b, "\nipvsadm-restore not installed in this guest: no comparison.\n")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
}
