//go:build guest

package ipvs_test

import (
	"context"
	"flag"
	"fmt"
	"maps"
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
	cold, change, remove, noop time.Duration
	changeFull                 time.Duration // one-member change reading the whole table
	transitionCPU, transition  time.Duration // per health transition (ApplyServices of its pool's service)
	ops                        int
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
	// One member removed (health-down: deleted at once, not drained), then
	// put back untimed.
	first := st.SortedServices()[0]
	gone := first.SortedDests()[1]
	st.Unhealthy = map[ipvs.DrainRef]bool{{Service: first.Key, Dest: gone.Key}: true}
	delete(first.Dests, gone.Key)
	start = time.Now()
	if a, err = applyPlan(rec, st); err != nil || len(a.Ops) != 1 {
		t.Fatalf("one-member removal: %v %v", err, a)
	}
	r.remove = time.Since(start)
	st.Unhealthy = nil
	first.Dests[gone.Key] = gone
	if a, err = applyPlan(rec, st); err != nil || len(a.Ops) != 1 {
		t.Fatalf("member back: %v %v", err, a)
	}
	start = time.Now()
	if a, err = applyPlan(rec, st); err != nil || !a.Empty() {
		t.Fatalf("no-op apply: %v %v", err, a)
	}
	r.noop = time.Since(start)
	r.transitionCPU, r.transition = healthTransitions(t, rec, st, 100)
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

// healthTransitions hands the reconciler n health transitions the way
// lbapply's controller does (one member of one service down, then up
// again: that service alone, through ApplyServices) and returns the mean
// process CPU time and wall time of each. CPU comes from getrusage, whose
// resolution is the scheduler tick: hence the mean over many.
func healthTransitions(t testing.TB, rec *ipvs.Reconciler, st *ipvs.State, n int) (cpu, wall time.Duration) {
	svc := st.SortedServices()[2]
	member := svc.SortedDests()[3]
	cpuNow := func() time.Duration {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	c0, start := cpuNow(), time.Now()
	for i := range n {
		part := &ipvs.State{Services: map[ipvs.ServiceKey]*ipvs.Service{}}
		s := *svc
		s.Dests = maps.Clone(svc.Dests)
		if i%2 == 0 {
			delete(s.Dests, member.Key)
			part.Unhealthy = map[ipvs.DrainRef]bool{{Service: svc.Key, Dest: member.Key}: true}
		}
		part.Services[s.Key] = &s
		c, err := rec.ApplyServices(context.Background(), part)
		if err != nil {
			t.Fatal(err)
		}
		if p := c.Detail.(*ipvs.Plan); len(p.Ops) != 1 {
			t.Fatalf("transition %d planned %s", i, p)
		}
	}
	return (cpuNow() - c0) / time.Duration(n), time.Since(start) / time.Duration(n)
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
	cold := med(func(r benchResult) time.Duration { return r.cold })
	change := med(func(r benchResult) time.Duration { return r.change })
	remove := med(func(r benchResult) time.Duration { return r.remove })
	noop := med(func(r benchResult) time.Duration { return r.noop })
	var ref refTimes
	if findTool("ipvsadm") != "" {
		ref = ipvsadmReference(t, ns, runs)
	} else {
		fmt.Fprintf(&b, "ipvsadm not installed in this guest: no reference figures.\n\n")
	}
	fmt.Fprintf(&b, "| what | time | reference (same guest, same run) | ratio | target |\n| --- | --- | --- | --- | --- |\n")
	row := func(what string, d time.Duration, refWhat string, refD time.Duration, target string) {
		ratio := "–"
		if refD > 0 {
			ratio = fmt.Sprintf("%.2f×", float64(d)/float64(refD))
		}
		fmt.Fprintf(&b, "| %s | %s | %s %s | %s | %s |\n", what, d.Round(10*time.Microsecond), refWhat, refD.Round(10*time.Microsecond), ratio, target)
	}
	row(fmt.Sprintf("cold apply, 1000 VS × 10 members (%d changes, batched)", res[0].ops), cold, "`ipvsadm -R` of the same rules (one process)", ref.restore, "≤ 0.3×")
	row("one-member weight change on top (diff from memory + 1 batched change)", change, "one `ipvsadm -e` process", ref.edit, "≤ 1×")
	row("one-member removal (health-down: deleted at once)", remove, "one `ipvsadm -d` process", ref.del, "≤ 1×")
	row("no-op re-apply (diff from memory, nothing sent)", noop, "20 ms (absolute target)", 20*time.Millisecond, "≤ 1×")
	row("health transition to the kernel, CPU (its pool's service only, from memory; mean of 100)", med(func(r benchResult) time.Duration { return r.transitionCPU }), "1 ms CPU (absolute target)", time.Millisecond, "≤ 1×")
	row("health transition to the kernel, wall (same)", med(func(r benchResult) time.Duration { return r.transition }), "one `ipvsadm -d` process", ref.del, "–")
	row("one-member change reading the whole table first (what `Verify` costs, off the apply path)", med(func(r benchResult) time.Duration { return r.changeFull }), "`ipvsadm -R`", ref.restore, "–")
	if ref.script > 0 {
		fmt.Fprintf(&b, "\nipvsadm-restore (bash + grep + ipvsadm -C + ipvsadm -R, processes included): %s.\n", ref.script.Round(time.Millisecond))
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

// refTimes are ipvsadm doing the same work in the same guest.
type refTimes struct {
	restore, script, edit, del time.Duration
}

// ipvsadmReference times ipvsadm -R (and the ipvsadm-restore script when
// present) of the 1000 x 10 table on an empty table, then one ipvsadm -e
// and one ipvsadm -d process on that full table: medians of runs.
func ipvsadmReference(t *testing.T, ns *testkit.NS, runs int) refTimes {
	ipvsadm := findTool("ipvsadm")
	rules := filepath.Join(t.TempDir(), "rules")
	st := bigState(1000, 10)
	if err := os.WriteFile(rules, []byte(restoreText(st)), 0o644); err != nil {
		t.Fatal(err)
	}
	median := func(argv []string, stdin string, prepare func()) time.Duration {
		var times []time.Duration
		for i := 0; i < runs; i++ {
			prepare()
			d, err := timeWithStdin(ns, stdin, argv...)
			if err != nil {
				t.Fatalf("%s: %v", argv, err)
			}
			times = append(times, d)
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		return times[len(times)/2]
	}
	clear := func() {
		if outp, err := ns.Exec(ipvsadm, "-C"); err != nil {
			t.Fatalf("ipvsadm -C: %v %s", err, outp)
		}
	}
	var ref refTimes
	ref.restore = median([]string{ipvsadm, "-R"}, rules, clear)
	if n := countDests(t, ns); n != 10000 {
		t.Fatalf("ipvsadm -R installed %d destinations, want 10000", n)
	}
	if restore := findTool("ipvsadm-restore"); restore != "" {
		ref.script = median([]string{restore}, rules, clear)
	}
	// On the full table: the first service's first member, as the
	// reconciler's figures change it.
	clear()
	if _, err := timeWithStdin(ns, rules, ipvsadm, "-R"); err != nil {
		t.Fatal(err)
	}
	s := st.SortedServices()[0]
	vs := netip.AddrPortFrom(s.Key.Addr, s.Key.Port).String()
	d := s.SortedDests()[1].Key.String()
	w := 1
	ref.edit = median([]string{ipvsadm, "-e", "-t", vs, "-r", d, "-m", "-w", "7"}, os.DevNull, func() {})
	ref.del = median([]string{ipvsadm, "-d", "-t", vs, "-r", d}, os.DevNull, func() {
		if outp, err := ns.Exec(ipvsadm, "-a", "-t", vs, "-r", d, "-m", "-w", fmt.Sprint(w)); err != nil && !strings.Contains(string(outp), "exists") {
			t.Fatalf("ipvsadm -a: %v %s", err, outp)
		}
	})
	clear()
	return ref
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
