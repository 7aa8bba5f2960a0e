package health_test

import (
	"bufio"
	"context"
	"fmt"
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
)

// The benchmark's listeners run in a child process (this test binary
// re-executed) so their accept work is not counted as the checker's CPU.
const benchServerEnv = "HC_BENCH_SERVER"

// The veth variant (HC_BENCH_NETNS=1): the listeners run in a server
// namespace, the benchmark re-runs itself in a checker namespace joined to
// it by a veth pair, with the listeners' addresses in HC_BENCH_TARGETS.
const (
	benchListenEnv  = "HC_BENCH_LISTEN"
	benchNetnsEnv   = "HC_BENCH_NETNS"
	benchTargetsEnv = "HC_BENCH_TARGETS"
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

// BenchmarkScheduler10k checks 10 000 members (TCP connect, 1 s interval)
// against loopback listeners for HC_BENCH_SECONDS (default 10) seconds,
// measures the checker process's CPU (getrusage) as % of one core and the
// spread of check start times from their slots, and writes
// out/health-bench.md. Run it once:
//
//	go test -run '^$' -bench Scheduler10k -benchtime 1x ./lbcore/health/
//
// With HC_BENCH_NETNS=1 (root) the listeners live in another network
// namespace behind a veth pair instead of on loopback, and the report goes
// to out/health-bench-veth.md.
func BenchmarkScheduler10k(b *testing.B) {
	const members, listeners = 10000, 200
	interval := time.Second
	seconds := 10
	if s, err := strconv.Atoi(os.Getenv("HC_BENCH_SECONDS")); err == nil && s > 0 {
		seconds = s
	}

	if os.Getenv(benchNetnsEnv) == "1" && os.Getenv(benchTargetsEnv) == "" {
		runBenchOverVeth(b, listeners)
		return
	}
	var addrs []netip.AddrPort
	where := "loopback listeners served by a separate process (not counted)"
	reportName := "health-bench.md"
	if t := os.Getenv(benchTargetsEnv); t != "" {
		for _, a := range strings.Split(t, ",") {
			addrs = append(addrs, netip.MustParseAddrPort(a))
		}
		where = "listeners in another network namespace over a veth pair, served by a separate process (not counted)"
		reportName = "health-bench-veth.md"
	} else {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), benchServerEnv+"="+strconv.Itoa(listeners))
		addrs = startBenchServer(b, cmd, func() error { return cmd.Start() })
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
	floorWall0 := time.Now()
	floorErrs := rawConnectLoop(addrs, members, time.Duration(floorSecs)*time.Second)
	fu1, fs1 := cpuTime()
	floorWall := float64(time.Since(floorWall0))
	floorPct := 100 * float64(fu1-fu0+fs1-fs0) / floorWall

	mon := health.Monitor{Type: health.TypeTCP, Interval: health.Duration(interval), Timeout: health.Duration(500 * time.Millisecond)}
	mon.ApplyDefaults()
	ms := make([]health.Member, members)
	for i := range ms {
		ap := addrs[i%listeners]
		ms[i] = health.Member{ID: fmt.Sprintf("bench/%05d", i), Target: health.Target{Addr: ap.Addr(), Port: ap.Port()}, Monitor: "tcp"}
	}

	// Samples of start lateness (Started - Scheduled), and starts per 10ms
	// bucket of the interval, collected during the measured window only.
	var measuring atomic.Bool
	lateness := make([]int64, members*(seconds+2))
	var nLate, fails, checks atomic.Int64
	var buckets [100]atomic.Int64
	s := health.NewScheduler(health.Options{OnResult: func(o health.Observation) {
		if !measuring.Load() {
			return
		}
		checks.Add(1)
		if !o.Result.OK {
			fails.Add(1)
		}
		if i := nLate.Add(1) - 1; i < int64(len(lateness)) {
			lateness[i] = int64(o.Started.Sub(o.Scheduled))
		}
		buckets[(o.Scheduled.UnixNano()%int64(interval))/int64(10*time.Millisecond)].Add(1)
	}})
	if err := s.Configure(health.Monitors{"tcp": mon}, ms); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()

	time.Sleep(2 * interval) // every member has had its first slot
	b.ResetTimer()
	measuring.Store(true)
	u0, s0 := cpuTime()
	wall0 := time.Now()
	time.Sleep(time.Duration(seconds) * time.Second)
	u1, s1 := cpuTime()
	wall1 := time.Now()
	measuring.Store(false)
	b.StopTimer()
	cancel()
	<-done

	wall := float64(wall1.Sub(wall0))
	userPct, sysPct := 100*float64(u1-u0)/wall, 100*float64(s1-s0)/wall
	cpuPct := userPct + sysPct
	n := min(int(nLate.Load()), len(lateness))
	late := lateness[:n]
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	var sum, sq float64
	for _, v := range late {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	mean := sum / float64(max(n, 1))
	std := math.Sqrt(max(sq/float64(max(n, 1))-mean*mean, 0))
	pct := func(p float64) time.Duration {
		if n == 0 {
			return 0
		}
		return time.Duration(late[min(n-1, int(p*float64(n)))])
	}
	minB, maxB := int64(math.MaxInt64), int64(0)
	for i := range buckets {
		minB, maxB = min(minB, buckets[i].Load()), max(maxB, buckets[i].Load())
	}
	expected := int64(members) * int64(seconds)
	perBucket := float64(checks.Load()) / 100

	b.ReportMetric(cpuPct, "%core")
	b.ReportMetric(floorPct, "%core-kernel-floor")
	b.ReportMetric(float64(checks.Load())/wall1.Sub(wall0).Seconds(), "checks/s")
	b.ReportMetric(float64(std)/1e3, "start-stddev-µs")
	b.ReportMetric(float64(pct(1))/1e3, "start-max-µs")

	report := fmt.Sprintf(`# Health-check scheduler benchmark

%s, %s, GOMAXPROCS %d, %d CPUs.

Setup: %d members, TCP connect monitor, interval %s, timeout %s, against %d
%s. Measured over %d s after a %s warm-up.

| what | value | goal |
| --- | --- | --- |
| checker CPU (user+sys, getrusage) | %.1f %% of one core | ≤ 25 %% |
| of which user / system | %.1f %% / %.1f %% | |
| kernel floor: bare blocking connect+reset loop at the same rate | %.1f %% of one core (%d errors) | |
| checker CPU above that floor | %.1f %% of one core | |
| checks completed | %d (expected ≈ %d) | |
| failed checks | %d | 0 |
| start lateness mean | %s | |
| start lateness stddev | %s | |
| start lateness p50 / p99 / max | %s / %s / %s | |
| starts per 10 ms slice of the interval (min / max, ideal %.0f) | %d / %d | |

Lateness is the time from a member's slot (its hash phase in the interval)
to the moment its check began.
`, time.Now().UTC().Format(time.RFC3339), runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(),
		members, interval, mon.Timeout, listeners, where, seconds, 2*interval,
		cpuPct, userPct, sysPct, floorPct, floorErrs, cpuPct-floorPct, checks.Load(), expected, fails.Load(),
		time.Duration(mean), time.Duration(std), pct(0.5), pct(0.99), pct(1),
		perBucket, minB, maxB)
	if err := writeBenchReport(reportName, report); err != nil {
		b.Logf("report not written: %v", err)
	}
	b.Log("\n" + report)
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

// runBenchOverVeth starts the listeners in a server namespace and this
// benchmark again in a checker namespace (a child process, so every one of
// its threads is in that namespace and no check pays for a setns), joined
// by a veth pair; the child measures and writes out/health-bench-veth.md.
func runBenchOverVeth(b *testing.B, listeners int) {
	lab := nslab.New(b, nil, "198.51.100.11")
	srv := exec.Command(os.Args[0], "-test.run=^$")
	srv.Env = append(os.Environ(), benchServerEnv+"="+strconv.Itoa(listeners), benchListenEnv+"=198.51.100.11")
	addrs := startBenchServer(b, srv, func() error { return lab.Do(lab.Server, srv.Start) })
	if len(addrs) != listeners {
		b.Fatalf("bench server gave %d listeners", len(addrs))
	}
	targets := make([]string, len(addrs))
	for i, a := range addrs {
		targets[i] = a.String()
	}
	inner := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkScheduler10k$", "-test.benchtime=1x", "-test.v")
	inner.Env = append(os.Environ(), benchTargetsEnv+"="+strings.Join(targets, ","))
	inner.Stdout, inner.Stderr = os.Stdout, os.Stderr
	if err := lab.Do(lab.Checker, inner.Start); err != nil {
		b.Fatal(err)
	}
	if err := inner.Wait(); err != nil {
		b.Fatalf("benchmark in the checker namespace: %v", err)
	}
}
