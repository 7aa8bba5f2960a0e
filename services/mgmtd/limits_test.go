package mgmtd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

const testToken = "0123456789abcdef-token"

// An unauthenticated client controls the request path: one request with a
// 1 MB path, then a flood, must leave a few short log lines.
func TestUnauthenticatedRequestsLogLittle(t *testing.T) {
	h, _ := TokenHash(config.APIAccess{Token: testToken})
	var buf bytes.Buffer
	logger := logrus.New()
	logger.SetOutput(&buf)
	s := &Server{API: localapi.NewAppliance(t.TempDir()), TokenHash: h, Log: logger.WithField("daemon", "mgmtd")}
	hd := s.Handler()
	for i := 0; i < 1000; i++ {
		path := Prefix + "/vs"
		if i == 0 {
			path = "/" + strings.Repeat("A", 1<<20) + "%0alevel=error%20msg=forged"
		}
		w := httptest.NewRecorder()
		hd.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != http.StatusUnauthorized {
			t.Fatalf("request %d: %d, want 401", i, w.Code)
		}
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	for _, l := range lines {
		if len(l) > 1024 {
			t.Errorf("log line of %d bytes (client text not cut): %.200s...", len(l), l)
		}
		if strings.HasPrefix(l, "level=error") {
			t.Errorf("a client forged a log line: %q", l)
		}
	}
	if len(lines) > 2*authLogBurst {
		t.Errorf("1000 unauthenticated requests in a burst logged %d lines, want at most %d", len(lines), 2*authLogBurst)
	}
}

// helperEnv makes the test binary run the API server (TestHelperAPIServer)
// with the appliance's open-file limit (the kernel's 4096 hard limit for
// PID 1 and its children).
const helperEnv = "FULCRUM_MGMTD_HELPER"

// TestMain runs the helper API server instead of the tests when the
// parent test starts this binary with helperEnv set (no test reports a
// skip for it).
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		if err := helperAPIServer(); err != nil {
			fmt.Fprintln(os.Stderr, "helper API server:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperAPIServer serves the API with the appliance's open-file limit
// until the parent closes stdin.
func helperAPIServer() error {
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: 4096, Max: 4096}); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "mgmtd-helper")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	h, _ := TokenHash(config.APIAccess{Token: testToken})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println("LISTEN", l.Addr())
	logger := logrus.New()
	logger.SetOutput(io.Discard)
	srv := Limits().Server((&Server{API: localapi.NewAppliance(dir), TokenHash: h, Log: logger.WithField("d", "mgmtd")}).Handler())
	go srv.Serve(l)
	io.Copy(io.Discard, os.Stdin) // until the parent closes stdin
	return nil
}

// 4200 idle connections and 100 slowloris clients locked the admin out
// (accept failed at the open-file limit until the idle ones timed out).
func TestIdleClientsDoNotLockOutTheAdmin(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 4300 connections")
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() }()
	sc := bufio.NewScanner(out)
	var addr string
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		t.Fatal("helper server did not say where it listens")
	}
	go io.Copy(io.Discard, out)

	var mu sync.Mutex
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var connected, failed atomic.Int64
	dial := func(n int, slow bool) {
		var wg sync.WaitGroup
		work := make(chan struct{})
		for w := 0; w < 64; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range work {
					c, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						failed.Add(1)
						continue
					}
					connected.Add(1)
					if slow {
						io.WriteString(c, "GET /api/v1/vs HTTP/1.1\r\nHost: x\r\nX-Slow: ")
					}
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}()
		}
		for i := 0; i < n; i++ {
			work <- struct{}{}
		}
		close(work)
		wg.Wait()
	}
	start := time.Now()
	dial(4200, false)
	dial(100, true)
	t.Logf("opened %d connections (%d failed) in %v", connected.Load(), failed.Load(), time.Since(start).Round(time.Millisecond))
	if connected.Load() < 4000 {
		t.Fatalf("only %d idle/slow connections opened; the test needs 4000+", connected.Load())
	}

	begin := time.Now()
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatalf("admin cannot connect: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "GET %s/vs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", Prefix, testToken)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("admin got no answer within 3 s with 4300 idle/slow clients: %v", err)
	}
	// No daemons run here: 502 from the API is an answer from past the token check.
	if !strings.HasPrefix(line, "HTTP/1.1 502") {
		t.Fatalf("admin got %q, want the API's 502 (no daemons in this test)", line)
	}
	t.Logf("admin answered in %v", time.Since(begin).Round(time.Millisecond))
}

// GET /api/v1/config returned the token and the console password hash.
func TestConfigIsRedacted(t *testing.T) {
	dir := t.TempDir()
	mux := http.NewServeMux()
	localapi.Route(mux, "GET", localapi.PathConfig, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "version: 1\nmanagement:\n  console: {password_hash: \"$2a$10$oNRa3xwoTZDbKXuGAXWJDOf2fNO3b545OnrK75alM.qhaXk9zGCZm\"}\n  api: {token: \""+testToken+"\"}\n")
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.LBD), mux, nil)
	h, _ := TokenHash(config.APIAccess{Token: testToken})
	hd := (&Server{API: localapi.NewAppliance(dir), TokenHash: h}).Handler()
	var body string
	for i := 0; i < 100; i++ {
		r := httptest.NewRequest("GET", Prefix+"/config", nil)
		r.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		hd.ServeHTTP(w, r)
		if w.Code == http.StatusOK {
			body = w.Body.String()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if body == "" {
		t.Fatal("GET /api/v1/config never answered 200")
	}
	if strings.Contains(body, testToken) || strings.Contains(body, "oNRa3xwoTZDb") || strings.Count(body, "<redacted>") != 2 {
		t.Errorf("GET /api/v1/config:\n%s", body)
	}
}
