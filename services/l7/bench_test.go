//go:build bench

package l7

// The L7 engine (the real l7d binary) and nginx as reverse proxies in front
// of the same members, in namespaces on the host, both pinned to the same
// CPU with taskset, driven by the same wrk. make bench runs it and the
// results go to out/l7-bench.md (the "L7 proxy (l7d) vs nginx" section;
// FULCRUM_L7_BENCH names the file; other sections are kept), which make
// bench-report folds into out/bench.md.

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
)

const benchCPU = "1" // both proxies run on this CPU only

type benchResult struct {
	rps, p50, p99 float64 // req/s, ms, ms
	rssKiB        int
}

func TestL7BenchReport(t *testing.T) {
	out := os.Getenv("FULCRUM_L7_BENCH")
	if out == "" {
		t.Fatal("FULCRUM_L7_BENCH (the report file) is not set; run make bench")
	}
	testkit.Require(t, testkit.Root, testkit.Tool("wrk"), testkit.Tool("nginx"), testkit.Tool("taskset"))
	s := testkit.Suffix()
	cl, lb, srv := testkit.NewNS(t, "client"), testkit.NewNS(t, "lb"), testkit.NewNS(t, "members")
	testkit.Veth(t, cl, "c"+s, "203.0.113.10/24", lb, "x"+s, "203.0.113.2/24")
	testkit.Veth(t, lb, "i"+s, "198.51.100.2/24", srv, "m"+s, "198.51.100.11/24")
	srv.AddAddr(t, "m"+s, "198.51.100.12/24")
	lb.AddAddr(t, "x"+s, "203.0.113.100/32")
	lb.AddAddr(t, "x"+s, "203.0.113.101/32")
	lb.WaitOperUp(t, "x"+s)
	lb.WaitOperUp(t, "i"+s)
	big := strings.Repeat("x", 64<<10)
	for _, a := range []string{"198.51.100.11:8080", "198.51.100.12:8080"} {
		var ln net.Listener
		if err := srv.Do(func() (err error) { ln, err = net.Listen("tcp", a); return }); err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/big" {
				w.Write([]byte(big))
				return
			}
			w.Write([]byte("ok\n"))
		})}
		go hs.Serve(ln)
		t.Cleanup(func() { hs.Close() })
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "l7d")
	if b, err := exec.Command("go", "build", "-o", bin, "github.com/fulcrum-lb/fulcrum/services/cmd/l7d").CombinedOutput(); err != nil {
		t.Fatalf("build l7d: %v\n%s", err, b)
	}
	cfg := filepath.Join(dir, "l7.yaml")
	os.WriteFile(cfg, []byte(`
version: 1
network:
  failover: {members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {members: [eth2], addresses: [198.51.100.2/24]}
  external: {members: [eth3], addresses: [203.0.113.2/24]}
virtual_servers:
  - name: web
    vip: 203.0.113.100
    port: 80
    mode: http
    pool: web
    scheduler: rr
    http: {cookie: {enabled: false}, max_connections: 20000}
pools:
  web:
    members:
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080}
`), 0o600)
	l7 := exec.Command("taskset", "-c", benchCPU, bin, "-config", cfg, "-log-level", "warn", "-status-socket", "", "-socket-dir", dir)
	var l7Err strings.Builder
	l7.Stderr = &l7Err
	t.Cleanup(func() {
		if l7Err.Len() > 0 {
			t.Logf("l7d: %s", guardClip(l7Err.String()))
		}
	})
	lb.Start(t, l7)
	ngConf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(ngConf, []byte(fmt.Sprintf(`
worker_processes 1;
daemon off;
master_process on;
pid %s/nginx.pid;
error_log stderr error;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path %s; proxy_temp_path %s;
  upstream web { server 198.51.100.11:8080; server 198.51.100.12:8080; keepalive 1024; }
  server {
    listen 203.0.113.101:80 reuseport;
    location / { proxy_pass http://web; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_buffering on; }
  }
}
`, dir, dir, dir)), 0o600)
	ng := exec.Command("taskset", "-c", benchCPU, "nginx", "-e", "stderr", "-c", ngConf, "-p", dir)
	var ngErr strings.Builder
	ng.Stderr = &ngErr
	lb.Start(t, ng)
	// nginx's master stops its worker on SIGTERM (a SIGKILL, testkit's
	// cleanup, would leave the worker running)
	t.Cleanup(func() {
		ng.Process.Signal(syscall.SIGTERM)
		ng.Wait()
		if ngErr.Len() > 0 {
			t.Logf("nginx: %s", ngErr.String())
		}
	})
	for _, vip := range []string{"203.0.113.100:80", "203.0.113.101:80"} {
		testkit.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
			c, _, err := cl.Dial("", vip, time.Second)
			if err == nil {
				c.Close()
				return nil
			}
			if strings.Contains(err.Error(), "read greeting") {
				return nil // connected; HTTP servers send no greeting
			}
			return err
		})
	}
	type row struct {
		conns int
		path  string
	}
	rows := []row{{1, "/"}, {64, "/"}, {1024, "/"}, {1, "/big"}, {64, "/big"}, {1024, "/big"}}
	var b strings.Builder
	fmt.Fprintf(&b, "Both proxies pinned to CPU %s (taskset; l7d GOMAXPROCS follows, nginx 1 worker), members: 2 Go HTTP servers, load: wrk -t1 -d5s (keep-alive), "+
		"on a shared 2-core host (other jobs running: numbers are noisy). Cookie persistence off, access logs off (l7d at log level warn, nginx access_log off). "+
		"Small = 3-byte body, big = 64 KiB body.\n\n", benchCPU)
	b.WriteString("| conns | body | l7d req/s | nginx req/s | ratio | l7d p50/p99 ms | nginx p50/p99 ms | p99 ratio | l7d RSS MiB | nginx RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		us := wrk(t, cl, "http://203.0.113.100"+r.path, r.conns)
		us.rssKiB = rss(t, l7.Process.Pid)
		them := wrk(t, cl, "http://203.0.113.101"+r.path, r.conns)
		them.rssKiB = rss(t, ng.Process.Pid) + childRSS(t, ng.Process.Pid)
		body := "small"
		if r.path == "/big" {
			body = "64 KiB"
		}
		fmt.Fprintf(&b, "| %d | %s | %.0f | %.0f | %.2f | %.2f / %.2f | %.2f / %.2f | %.2f | %.1f | %.1f |\n", r.conns, body, us.rps, them.rps, us.rps/them.rps,
			us.p50, us.p99, them.p50, them.p99, us.p99/them.p99, float64(us.rssKiB)/1024, float64(them.rssKiB)/1024)
		t.Logf("%d conns %s: l7d %.0f req/s p99 %.2f ms, nginx %.0f req/s p99 %.2f ms", r.conns, body, us.rps, us.p99, them.rps, them.p99)
	}
	if err := writeSection(out, "L7 proxy (l7d) vs nginx", b.String()); err != nil {
		t.Fatal(err)
	}
	t.Logf("written to %s:\n%s", out, b.String())
}

var (
	rpsRE = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	pctRE = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
)

func wrk(t *testing.T, cl *testkit.NS, url string, conns int) benchResult {
	t.Helper()
	cmd := exec.Command("wrk", "-t1", "-c"+strconv.Itoa(conns), "-d5s", "--latency", url)
	var outb strings.Builder
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cl.Do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("wrk %s: %v\n%s", url, err, outb.String())
	}
	o := outb.String()
	var r benchResult
	m := rpsRE.FindStringSubmatch(o)
	if m == nil {
		t.Fatalf("no Requests/sec in wrk output:\n%s", o)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, p := range pctRE.FindAllStringSubmatch(o, -1) {
		v, _ := strconv.ParseFloat(p[2], 64)
		switch p[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if p[1] == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if strings.Contains(o, "Non-2xx") {
		t.Errorf("%s: non-2xx answers:\n%s", url, o)
	}
	return r
}

func rss(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// childRSS sums the RSS of pid's children (nginx's worker).
func childRSS(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	sum := 0
	for _, f := range strings.Fields(string(b)) {
		c, _ := strconv.Atoi(f)
		sum += rss(t, c)
	}
	return sum
}

// writeSection replaces (or appends) the section titled title in the
// markdown file at path, keeping every other section.
func writeSection(path, title, body string) error {
	begin, end := "<!-- begin "+title+" -->", "<!-- end "+title+" -->"
	old, _ := os.ReadFile(path)
	s := string(old)
	sec := begin + "\n## " + title + "\n\n" + body + end + "\n"
	if i := strings.Index(s, begin); i >= 0 {
		if j := strings.Index(s[i:], end); j >= 0 {
			rest := strings.TrimPrefix(s[i+j+len(end):], "\n")
			s = s[:i] + sec + rest
			return os.WriteFile(path, []byte(s), 0o644)
		}
	}
	if s != "" && !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(s+"\n"+sec), 0o644)
}

func guardClip(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "..."
	}
	return s
}
