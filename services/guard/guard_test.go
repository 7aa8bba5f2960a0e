package guard

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
)

func TestClip(t *testing.T) {
	if got := Clip("/api/v1/vs", 64); got != "/api/v1/vs" {
		t.Errorf("short path changed: %q", got)
	}
	got := Clip("/"+strings.Repeat("a", 100000), 100)
	if len(got) > 140 || !strings.HasSuffix(got, "...(99901 more bytes)") {
		t.Errorf("long text not cut: %d bytes, ends %q", len(got), got[len(got)-30:])
	}
	if got := Clip("a\nlevel=error msg=\"fake\"\x1b[2J\xff", 100); strings.ContainsAny(got, "\n\x1b\xff") || !strings.Contains(got, `\"fake\"`) {
		t.Errorf("control characters, quotes or bad UTF-8 not escaped: %q", got)
	}
}

func TestEvery(t *testing.T) {
	e := &Every{Burst: 3, Per: time.Second}
	t0 := time.Unix(1000, 0)
	let := 0
	for i := 0; i < 100; i++ {
		if ok, _ := e.Allow(t0.Add(time.Duration(i) * time.Millisecond)); ok {
			let++
		}
	}
	if let != 3 {
		t.Fatalf("%d of 100 lines in 100 ms let through, want 3", let)
	}
	ok, sup := e.Allow(t0.Add(time.Second))
	if !ok || sup != 97 {
		t.Fatalf("next window: ok=%v suppressed=%d, want true 97", ok, sup)
	}
}

func TestSlots(t *testing.T) {
	s := NewSlots(2)
	if s.Take() != nil || s.Take() != nil {
		t.Fatal("two slots not available")
	}
	if err := s.Take(); err != ErrBusy {
		t.Fatalf("third take: %v, want ErrBusy", err)
	}
	s.Release()
	if s.Take() != nil {
		t.Fatal("released slot not available")
	}
}

// serve starts a server with a cap of max connections and returns its address.
func serve(t *testing.T, max int) (string, *Server) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := HTTP{ReadHeaderTimeout: 30 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second,
		IdleTimeout: 30 * time.Second, MaxHeaderBytes: 4096, MaxBodyBytes: 1024, MaxConns: max}.Server(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.ReadAll(r.Body); err != nil {
				http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
				return
			}
			io.WriteString(w, "ok")
		}))
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return l.Addr().String(), s
}

func get(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// waitOpen waits until the server counts n open connections.
func waitOpen(t *testing.T, s *Server, n int) {
	t.Helper()
	testkit.Eventually(t, 2*time.Second, 10*time.Millisecond, func() error {
		if open, _, _ := s.Conns.Stats(); open != n {
			return fmt.Errorf("server has %d connections open, want %d", open, n)
		}
		return nil
	})
}

func TestCapEvictsTheOldestIdle(t *testing.T) {
	addr, s := serve(t, 3)
	var idle []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
		waitOpen(t, s, i+1)
	}
	if line, err := get(addr); err != nil || line != "HTTP/1.1 200 OK" {
		t.Fatalf("at the cap with 3 idle connections: %q %v", line, err)
	}
	idle[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("oldest idle connection not closed: %v", err)
	}
	if _, ev, _ := s.Conns.Stats(); ev != 1 {
		t.Errorf("%d evictions, want 1", ev)
	}
}

func TestCapNeverCutsABusyRequest(t *testing.T) {
	addr, s := serve(t, 2)
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// The handler is reading the body: a request in progress.
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nabc")
		waitOpen(t, s, i+1)
	}
	time.Sleep(50 * time.Millisecond)
	if line, err := get(addr); err == nil && line != "" {
		t.Fatalf("a third connection was served while two requests were in progress: %q", line)
	}
	if _, ev, ref := s.Conns.Stats(); ev != 0 || ref == 0 {
		t.Errorf("evicted %d, refused %d; want 0 and at least 1", ev, ref)
	}
}

// A client that trickles its headers (slowloris) has no request yet: it is
// evicted like an idle one.
func TestCapEvictsSlowHeaders(t *testing.T) {
	addr, s := serve(t, 2)
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: a")
		waitOpen(t, s, i+1)
	}
	if line, err := get(addr); err != nil || line != "HTTP/1.1 200 OK" {
		t.Fatalf("at the cap with 2 slow-header clients: %q %v", line, err)
	}
}

func TestBodyLimit(t *testing.T) {
	addr, _ := serve(t, 4)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"+strings.Repeat("x", 5000))
	line, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.Contains(line, "413") {
		t.Fatalf("5000-byte body with a 1024-byte limit: %q", line)
	}
}

func TestLimitedWriter(t *testing.T) {
	var b strings.Builder
	w := &LimitedWriter{W: &b, Max: 50, Every: &Every{Burst: 2, Per: time.Hour}}
	for i := 0; i < 100; i++ {
		io.WriteString(w, "http: TLS handshake error from 1.2.3.4: "+strings.Repeat("x", 1000)+"\n")
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || len(lines[0]) > 100 {
		t.Errorf("100 long lines at 2 per hour wrote %d lines, first %d bytes", len(lines), len(lines[0]))
	}
}
