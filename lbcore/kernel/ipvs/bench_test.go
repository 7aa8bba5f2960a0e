//go:build guest

package ipvs_test

import (
	"context"
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

	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
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
	changeFull         time.Duration // one-member change reading the whole table (the old way)
	ops                int
}

func runBench(t testing.TB, ns *testkit.NS, nVS, nDest int) benchResult {
	h, err := ipvs.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rec := ipvs.NewReconciler(h, discard(), ipvs.Options{DrainTimeout: time.Minute})
	if _, err := applyPlan(rec, ipvs.NewState()); err != nil { // start empty
		t.Fatal(err)
	}
	st := bigState(nVS, nDest)
	start := time.Now()
	a, err := applyPlan(rec, st)
	if err != nil {
		t.Fatal(err)
	}
	var r benchResult
	r.cold, r.ops = time.Since(start), len(a.Ops)
	// One member's weight changes.
	for _, s := range st.SortedServices()[:1] {
		s.SortedDests()[0].Weight = 7
	}
	start = time.Now()
	a, err = applyPlan(rec, st)
	if err != nil {
		t.Fatal(err)
	}
	r.change = time.Since(start)
	if len(a.Ops) != 1 {
		t.Fatalf("one-member change planned %d ops", len(a.Ops))
	}
	start = time.Now()
	if a, err = applyPlan(rec, st); err != nil || !a.Empty() {
		t.Fatalf("no-op apply: %v %v", err, a)
	}
	r.noop = time.Since(start)
	// The same change undone by a reconciler that reads everything each time.
	full := ipvs.NewReconciler(h, discard(), ipvs.Options{DrainTimeout: time.Minute, FullReadEvery: time.Nanosecond})
	for _, s := range st.SortedServices()[:1] {
		s.SortedDests()[0].Weight = 1
	}
	start = time.Now()
	if a, err = applyPlan(full, st); err != nil || len(a.Ops) != 1 {
		t.Fatalf("full-read change: %v %v", err, a)
	}
	r.changeFull = time.Since(start)
	if _, err := applyPlan(rec, ipvs.NewState()); err != nil {
		t.Fatal(err)
	}
	return r
}

// BenchmarkApply1000x10 applies 1000 VS x 10 members cold, then a
// one-member change (reported as extra metrics). Needs IPVS (guest).
func BenchmarkApply1000x10(b *testing.B) {
	requireIPVS(b)
	ns := testkit.NewNS(b, "lbbench")
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
	ns := testkit.NewNS(t, "lbbench")
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
	fmt.Fprintf(&b, "| lbcore/kernel/ipvs cold apply, 1000 VS x 10 members (%d netlink ops) | %s |\n", res[0].ops, med(func(r benchResult) time.Duration { return r.cold }).Round(time.Millisecond))
	fmt.Fprintf(&b, "| lbcore/kernel/ipvs one-member change on top (service-list check + 1 destination read + diff + 1 op) | %s |\n", med(func(r benchResult) time.Duration { return r.change }).Round(time.Microsecond))
	fmt.Fprintf(&b, "| same one-member change reading the whole table (before this change; FullReadEvery=1ns) | %s |\n", med(func(r benchResult) time.Duration { return r.changeFull }).Round(time.Microsecond))
	fmt.Fprintf(&b, "| lbcore/kernel/ipvs no-op re-apply (service-list check + diff) | %s |\n", med(func(r benchResult) time.Duration { return r.noop }).Round(time.Microsecond))
	if restore := findTool("ipvsadm-restore"); restore != "" {
		rules := filepath.Join(t.TempDir(), "rules")
		if err := os.WriteFile(rules, []byte(restoreText(bigState(1000, 10))), 0o644); err != nil {
			t.Fatal(err)
		}
		ipvsadm := findTool("ipvsadm")
		// The script (bash: grep the comments out, ipvsadm -C, ipvsadm -R)
		// and ipvsadm -R alone, on an empty table each time.
		for _, tool := range []struct {
			what string
			argv []string
		}{
			{"ipvsadm-restore of the same rules (script: bash + grep + ipvsadm -C + ipvsadm -R, processes included)", []string{restore}},
			{"ipvsadm -R of the same rules (one process)", []string{ipvsadm, "-R"}},
		} {
			var times []time.Duration
			for i := 0; i < runs; i++ {
				if outp, err := ns.Exec(ipvsadm, "-C"); err != nil {
					t.Fatalf("ipvsadm -C: %v %s", err, outp)
				}
				d, err := timeWithStdin(ns, rules, tool.argv...)
				if err != nil {
					t.Fatalf("%s: %v", tool.argv[0], err)
				}
				if n := countDests(t, ns); n != 10000 {
					t.Fatalf("%s installed %d destinations, want 10000", tool.argv[0], n)
				}
				times = append(times, d)
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			fmt.Fprintf(&b, "| %s | %s |\n", tool.what, times[len(times)/2].Round(time.Millisecond))
		}
		ns.Exec(ipvsadm, "-C")
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
	// For the host side of a guest run, which extracts the report.
	fmt.Printf("@@IPVS-BENCH-BEGIN@@\n%s@@IPVS-BENCH-END@@\n", b.String())
}

// findTool looks a program up in PATH, then in the sbin directories (a
// guest's console PATH has neither).
func findTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return filepath.Join(d, name)
		}
	}
	return ""
}

// timeWithStdin runs argv inside ns with the file as its standard input and
// returns how long it took, process start included.
func timeWithStdin(ns *testkit.NS, file string, argv ...string) (time.Duration, error) {
	var d time.Duration
	err := ns.Do(func() error {
		in, err := os.Open(file)
		if err != nil {
			return err
		}
		defer in.Close()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdin = in
		cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d = time.Since(start)
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	})
	return d, err
}

// countDests counts the destinations in the namespace's IPVS table.
func countDests(t testing.TB, ns *testkit.NS) int {
	h, err := ipvs.Open(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	st, err := ipvs.NewReconciler(h, discard(), ipvs.Options{}).Read()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range st.Services {
		n += len(s.Dests)
	}
	return n
}

// applyPlan runs r's stage Apply and returns the plan it carried out.
func applyPlan(r *ipvs.Reconciler, st *ipvs.State) (*ipvs.Plan, error) {
	c, err := r.Apply(context.Background(), st)
	if err != nil {
		return nil, err
	}
	return c.Detail.(*ipvs.Plan), nil
}
