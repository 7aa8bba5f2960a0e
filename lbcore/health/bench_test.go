package health_test

import (
	"bufio"
	"context"
	"fmt"
	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/health"
	"github.com/fulcrum-lb/fulcrum/lbcore/health/internal/nslab"
	"golang.org/x/sys/unix"
)

// The benchmark's listeners run in a child process (this test binary
// re-executed) so their accept work is not counted as the checker's CPU.
const benchServerEnv = "HC_BENCH_SERVER"

// The split-CPU variant: the listeners run in a server namespace, the
// benchmark re-runs itself in a checker namespace joined to it by a veth
// pair, with the listeners' addresses in HC_BENCH_TARGETS and the CPU it is
// pinned to in HC_BENCH_CPU.
const (
	benchListenEnv  = "HC_BENCH_LISTEN"
	benchTargetsEnv = "HC_BENCH_TARGETS"
	benchCPUEnv     = "HC_BENCH_CPU"
)

func TestMain(m *testing.M) {
	if n := os.Getenv(benchServerEnv); n != "" {
		os.Exit(benchServer(n))
	}
	os.Exit(m.Run())
}

// benchServer listens on n loopback ports, prints their addresses, accepts
// and closes connections until its stdin closes.
func benchServer(arg string) int {
	n, err := strconv.Atoi(arg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	host := "127.0.0.1"
	if h := os.Getenv(benchListenEnv); h != "" {
		host = h
	}
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(ln.Addr().String())
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	fmt.Println("ready")
	bufio.NewReader(os.Stdin).ReadString('\n') // parent gone or done
	return 0
}

// cpuTime returns the process's user and system CPU time.
func cpuTime() (user, sys time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// BenchmarkScheduler10k checks 10 000 members (TCP connect and half-open,
// 1 s interval) against loopback listeners for HC_BENCH_SECONDS (default 10)
// seconds per monitor type, measures the checker process's CPU (getrusage)
// as % of one core and the spread of check start times from their slots,
// and writes out/health-bench.md. Run it once:
//
//	go test -run '^$' -bench Scheduler10k -benchtime 1x ./lbcore/health/
//
// On loopback the kernel runs the listeners' side of every handshake in
// the checker's send calls, so this is an upper bound;
// BenchmarkScheduler10kSplitCPU measures with that work on another CPU.
func BenchmarkScheduler10k(b *testing.B) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServerEnv+"="+strconv.Itoa(benchListeners))
	addrs := startBenchServer(b, cmd, func() error { return cmd.Start() })
	benchScheduler(b, addrs, "loopback listeners served by a separate process (not counted)", "health-bench.md", -1)
}

// BenchmarkScheduler10kSplitCPU is the same measurement with the listeners
// in another network namespace behind a veth pair whose receive processing
// is steered (RPS) so that the listeners' kernel work runs on CPU 1 while
// the checker, pinned to CPU 0, handles its own packets: the split a real
// network gives, where members do their side of the handshake themselves.
// It reports the checker's getrusage and CPU 0's busy time from /proc/stat
// (which also counts softirq work done for the checker's packets) and
// writes out/health-bench-split.md. Needs root and two CPUs.
func BenchmarkScheduler10kSplitCPU(b *testing.B) {
	if t := os.Getenv(benchTargetsEnv); t != "" { // the re-run in the checker namespace
		var addrs []netip.AddrPort
		for _, a := range strings.Split(t, ",") {
			addrs = append(addrs, netip.MustParseAddrPort(a))
		}
		cpu, _ := strconv.Atoi(os.Getenv(benchCPUEnv))
		benchScheduler(b, addrs, "listeners in another network namespace over a veth pair, served by a separate process on CPU 1 (not counted), their packets processed on CPU 1 (RPS); the checker pinned to CPU 0",
			"health-bench-split.md", cpu)
		return
	}
	if runtime.NumCPU() < 2 {
		b.Skip("needs two CPUs")
	}
	runBenchSplitCPU(b)
}

const benchListeners = 200

// benchScheduler measures the connect floor and then the scheduler with each
// monitor type against addrs, and writes the report. With cpu >= 0 it also
// reports that CPU's busy time.
func benchScheduler(b *testing.B, addrs []netip.AddrPort, where, reportName string, cpu int) {
	const members, listeners = 10000, benchListeners
	interval := time.Second
	seconds := 10
	if s, err := strconv.Atoi(os.Getenv("HC_BENCH_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	if len(addrs) != listeners {
		b.Fatalf("bench server gave %d listeners", len(addrs))
	}

	// Kernel floor: the same connect+reset done 10 000 times a second by a
	// bare blocking syscall loop, no scheduler, no poller. On loopback the
	// kernel runs both ends of every handshake in the checker's context, so
	// this is the part of the checker's CPU the code cannot remove.
	floorSecs := max(seconds/2, 2)
	fu0, fs0 := cpuTime()
	fb0, ft0 := cpuBusy(cpu)
	floorWall0 := time.Now()
	floorErrs := rawConnectLoop(addrs, members, time.Duration(floorSecs)*time.Second)
	fu1, fs1 := cpuTime()
	fb1, ft1 := cpuBusy(cpu)
	floorWall := float64(time.Since(floorWall0))
	floorPct := 100 * float64(fu1-fu0+fs1-fs0) / floorWall
	floorBusy := ""
	if ft1 > ft0 {
		floorBusy = fmt.Sprintf("; CPU %d busy %.1f %%", cpu, 100*float64(fb1-fb0)/float64(ft1-ft0))
	}

	types := []string{string(config.MonitorTCP), string(config.MonitorTCPHalfOpen)}
	if t := os.Getenv("HC_BENCH_TYPES"); t != "" { // e.g. for profiling one
		types = strings.Split(t, ",")
	}
	var results []benchResult
	for _, typ := range types {
		r := measureScheduler(b, typ, addrs, members, interval, seconds, cpu)
		results = append(results, r)
		b.ReportMetric(r.cpuPct, "%core-"+typ)
	}
	b.ReportMetric(floorPct, "%core-kernel-floor")

	row := func(what string, f func(r benchResult) string) string {
		line := "| " + what + " |"
		for _, r := range results {
			line += " " + f(r) + " |"
		}
		return line + "\n"
	}
	header := "| what |"
	sep := "| --- |"
	for _, typ := range types {
		header += " " + typ + " |"
		sep += " --- |"
	}
	cpuRow := ""
	if cpu >= 0 {
		cpuRow = row(fmt.Sprintf("CPU %d busy (/proc/stat: user+system+irq+softirq), %% of one core", cpu), func(r benchResult) string { return fmt.Sprintf("%.1f", r.cpuBusyPct) })
	}
	table := header + "\n" + sep + "\n" +
		row("checker CPU (user+sys, getrusage), % of one core; goal ≤ 25", func(r benchResult) string { return fmt.Sprintf("%.1f", r.cpuPct) }) +
		row("of which user / system", func(r benchResult) string { return fmt.Sprintf("%.1f / %.1f", r.userPct, r.sysPct) }) +
		cpuRow +
		row("checker CPU above the connect floor below", func(r benchResult) string {
			if r.typ != string(config.MonitorTCP) {
				return "n/a (no connect)"
			}
			return fmt.Sprintf("%.1f", r.cpuPct-floorPct)
		}) +
		row(fmt.Sprintf("checks completed (expected ≈ %d)", members*seconds), func(r benchResult) string { return fmt.Sprint(r.checks) }) +
		row("failed checks (goal 0)", func(r benchResult) string { return fmt.Sprint(r.fails) }) +
		row("start lateness mean", func(r benchResult) string { return r.mean.String() }) +
		row("start lateness stddev", func(r benchResult) string { return r.std.String() }) +
		row("start lateness p50 / p99 / max", func(r benchResult) string { return fmt.Sprintf("%s / %s / %s", r.p50, r.p99, r.max) }) +
		row(fmt.Sprintf("starts per 10 ms slice of the interval, min / max (ideal ≈ %d)", members*seconds/100), func(r benchResult) string { return fmt.Sprintf("%d / %d", r.minBucket, r.maxBucket) })

	report := fmt.Sprintf(`# Health-check scheduler benchmark

%s, %s, GOMAXPROCS %d, %d CPUs.

Setup: %d members, interval %s, timeout 500ms, against %d
%s. Each monitor type measured over %d s after a %s warm-up.

%s
Kernel floor for the tcp check: a bare blocking connect+reset loop at the same
rate, no scheduler, no poller: %.1f %% of one core%s (%d errors). On loopback and
veth the kernel runs the server's half of every handshake in the checker's
context too (unless steered elsewhere, as in the split-CPU variant), so
there both columns include work a real network puts on the members.

tcp_half_open sends a SYN from a raw socket and takes the SYN-ACK (the kernel
resets it): no socket, connect or close per check, and the server never makes
a connection. It proves a listener, not an accepting application.

Lateness is the time from a member's slot (its hash phase in the interval)
to the moment its check began.
`, time.Now().UTC().Format(time.RFC3339), runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(),
		members, interval, listeners, where, seconds, 2*interval, table, floorPct, floorBusy, floorErrs)
	if err := writeBenchReport(reportName, report); err != nil {
		b.Logf("report not written: %v", err)
	}
	b.Log("\n" + report)
}

type benchResult struct {
	typ                     string
	cpuPct, userPct, sysPct float64
	cpuBusyPct              float64 // the pinned CPU's busy time, when watched
	checks, fails           int64
	mean, std               time.Duration
	p50, p99, max           time.Duration
	minBucket, maxBucket    int64
}

// measureScheduler runs a scheduler with members checks of type typ spread
// over addrs and measures the process's CPU and the check start lateness.
func measureScheduler(b *testing.B, typ string, addrs []netip.AddrPort, members int, interval time.Duration, seconds, cpu int) benchResult {
	mon := config.Monitor{Type: config.MonitorType(typ), Interval: config.Duration(interval), Timeout: config.Duration(500 * time.Millisecond)}
	mon.ApplyDefaults()
	ms := make([]health.Member, members)
	for i := range ms {
		ap := addrs[i%len(addrs)]
		ms[i] = health.Member{ID: fmt.Sprintf("bench/%05d", i), Target: health.Target{Addr: ap.Addr(), Port: ap.Port()}, Monitor: typ}
	}

	// Samples of start lateness (Started - Scheduled), and starts per 10ms
	// bucket of the interval, collected during the measured window only.
	var measuring atomic.Bool
	lateness := make([]int64, members*(seconds+2))
	var nLate, fails, checks atomic.Int64
	var buckets [100]atomic.Int64
	var firstFail atomic.Value
	quantum, _ := time.ParseDuration(os.Getenv("HC_BENCH_QUANTUM")) // 0: the scheduler's default
	s := health.NewScheduler(health.Options{Quantum: quantum, OnResult: func(o health.Observation) {
		if !measuring.Load() {
			return
		}
		checks.Add(1)
		if !o.Result.OK {
			fails.Add(1)
			firstFail.CompareAndSwap(nil, o.Result.Reason)
		}
		if i := nLate.Add(1) - 1; i < int64(len(lateness)) {
			lateness[i] = int64(o.Started.Sub(o.Scheduled))
		}
		buckets[(o.Scheduled.UnixNano()%int64(interval))/int64(10*time.Millisecond)].Add(1)
	}})
	if err := s.Configure(config.Monitors{typ: mon}, ms); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()

	time.Sleep(2 * interval) // every member has had its first slot
	measuring.Store(true)
	u0, s0 := cpuTime()
	busy0, total0 := cpuBusy(cpu)
	wall0 := time.Now()
	time.Sleep(time.Duration(seconds) * time.Second)
	u1, s1 := cpuTime()
	busy1, total1 := cpuBusy(cpu)
	wall1 := time.Now()
	measuring.Store(false)
	cancel()
	<-done
	if r := firstFail.Load(); r != nil {
		b.Logf("%s: first failure: %v", typ, r)
	}

	wall := float64(wall1.Sub(wall0))
	r := benchResult{typ: typ, userPct: 100 * float64(u1-u0) / wall, sysPct: 100 * float64(s1-s0) / wall,
		checks: checks.Load(), fails: fails.Load()}
	r.cpuPct = r.userPct + r.sysPct
	if total1 > total0 {
		r.cpuBusyPct = 100 * float64(busy1-busy0) / float64(total1-total0)
	}
	n := min(int(nLate.Load()), len(lateness))
	late := lateness[:n]
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	var sum, sq float64
	for _, v := range late {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	mean := sum / float64(max(n, 1))
	r.mean = time.Duration(mean)
	r.std = time.Duration(math.Sqrt(max(sq/float64(max(n, 1))-mean*mean, 0)))
	pct := func(p float64) time.Duration {
		if n == 0 {
			return 0
		}
		return time.Duration(late[min(n-1, int(p*float64(n)))])
	}
	r.p50, r.p99, r.max = pct(0.5), pct(0.99), pct(1)
	r.minBucket = math.MaxInt64
	for i := range buckets {
		r.minBucket, r.maxBucket = min(r.minBucket, buckets[i].Load()), max(r.maxBucket, buckets[i].Load())
	}
	return r
}

func writeBenchReport(name, report string) error {
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return fmt.Errorf("no go.mod above %s", dir)
		}
		dir = parent
	}
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, name), []byte(report), 0o644)
}

// rawConnectLoop connects to addrs round robin, rate per second, for d, with
// blocking syscalls, closing each connection with a reset. It returns how
// many connects failed.
func rawConnectLoop(addrs []netip.AddrPort, rate int, d time.Duration) int {
	errs := 0
	start := time.Now()
	const batch = 10
	for i := 0; time.Since(start) < d; i += batch {
		for j := 0; j < batch; j++ {
			ap := addrs[(i+j)%len(addrs)]
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				errs++
				continue
			}
			if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
				errs++
			}
			syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
			syscall.Close(fd)
		}
		// pace: batch connects every batch/rate seconds
		if ahead := time.Duration(i+batch)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
	return errs
}

// startBenchServer starts the listener process (start runs cmd.Start, in
// whatever namespace) and returns its listeners' addresses; it is stopped
// when b ends.
func startBenchServer(b *testing.B, cmd *exec.Cmd, start func() error) []netip.AddrPort {
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	var addrs []netip.AddrPort
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "ready" {
		addrs = append(addrs, netip.MustParseAddrPort(sc.Text()))
	}
	return addrs
}

// runBenchSplitCPU starts the listeners in a server namespace pinned to
// CPU 1 and this benchmark again in a checker namespace (a child process,
// so every one of its threads is in that namespace and no check pays for a
// setns) pinned to CPU 0, joined by a veth pair steered the same way; the
// child measures and writes out/health-bench-split.md.
func runBenchSplitCPU(b *testing.B) {
	const checkerCPU, serverCPU = 0, 1
	lab := nslab.NewSplitCPU(b, checkerCPU, serverCPU, "198.51.100.11")
	srv := exec.Command(os.Args[0], "-test.run=^$")
	srv.Env = append(os.Environ(), benchServerEnv+"="+strconv.Itoa(benchListeners), benchListenEnv+"=198.51.100.11")
	addrs := startBenchServer(b, srv, func() error { return lab.Do(lab.Server, pinnedStart(srv, serverCPU)) })
	if len(addrs) != benchListeners {
		b.Fatalf("bench server gave %d listeners", len(addrs))
	}
	targets := make([]string, len(addrs))
	for i, a := range addrs {
		targets[i] = a.String()
	}
	inner := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkScheduler10kSplitCPU$", "-test.benchtime=1x", "-test.v")
	inner.Env = append(os.Environ(), benchTargetsEnv+"="+strings.Join(targets, ","), benchCPUEnv+"="+strconv.Itoa(checkerCPU))
	inner.Stdout, inner.Stderr = os.Stdout, os.Stderr
	if err := lab.Do(lab.Checker, pinnedStart(inner, checkerCPU)); err != nil {
		b.Fatal(err)
	}
	if err := inner.Wait(); err != nil {
		b.Fatalf("benchmark in the checker namespace: %v", err)
	}
}

// pinnedStart starts cmd from a thread pinned to cpu, so the child (which
// inherits the affinity) runs there; the thread's affinity is restored.
func pinnedStart(cmd *exec.Cmd, cpu int) func() error {
	return func() error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var old, one unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			return fmt.Errorf("affinity: %w", err)
		}
		one.Set(cpu)
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			return fmt.Errorf("pin to CPU %d: %w", cpu, err)
		}
		err := cmd.Start()
		if rerr := unix.SchedSetaffinity(0, &old); rerr != nil && err == nil {
			err = fmt.Errorf("restore affinity: %w", rerr)
		}
		return err
	}
}

// cpuBusy returns CPU cpu's busy and total time in clock ticks from
// /proc/stat (busy: user, nice, system, irq, softirq), or zeros for cpu < 0.
func cpuBusy(cpu int) (busy, total uint64) {
	if cpu < 0 {
		return 0, 0
	}
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	prefix := fmt.Sprintf("cpu%d ", cpu)
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)[1:]
		for i, v := range f {
			n, _ := strconv.ParseUint(v, 10, 64)
			if i < 8 { // user nice system idle iowait irq softirq steal
				total += n
			}
			switch i {
			case 0, 1, 2, 5, 6:
				busy += n
			}
		}
	}
	return busy, total
}
