package boot

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFetchConfig(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok.yaml":
			w.Write([]byte("hostname: lb-url\n"))
		case "/big.yaml":
			w.Write([]byte(strings.Repeat("#", 2048)))
		case "/slow.yaml":
			time.Sleep(2 * time.Second)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	b, err := FetchConfig(ctx, srv.URL+"/ok.yaml", 5*time.Second, 1024)
	if err != nil || string(b) != "hostname: lb-url\n" {
		t.Errorf("ok.yaml: %q, %v", b, err)
	}
	for _, c := range []struct{ path, want string }{
		{"/missing.yaml", "HTTP 404"},
		{"/big.yaml", "larger than 1024 bytes"},
		{"/slow.yaml", "deadline exceeded"},
	} {
		if _, err := FetchConfig(ctx, srv.URL+c.path, 500*time.Millisecond, 1024); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.path, err, c.want)
		}
	}
	// A port nobody listens on: refused, and the message does not repeat the URL.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	_, err = FetchConfig(ctx, "http://"+addr+"/lb.yaml", time.Second, 1024)
	if err == nil || !strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "http://") {
		t.Errorf("refused port: %v", err)
	}
}

func TestMgmtSelector(t *testing.T) {
	dir := t.TempDir()
	base, err := os.ReadFile("../../qemu/configs/lb1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	with := strings.Replace(string(base), "  routes:", "  management:\n    interface: \"52:54:00:01:04:01\"\n  routes:", 1)
	withPath, withoutPath := filepath.Join(dir, "with.yaml"), filepath.Join(dir, "without.yaml")
	os.WriteFile(withPath, []byte(with), 0o644)
	os.WriteFile(withoutPath, base, 0o644)

	if s, err := MgmtSelector(Cmdline{}, withPath); err != nil || s != "52:54:00:01:04:01" {
		t.Errorf("from the built-in config: %q, %v", s, err)
	}
	if s, err := MgmtSelector(Cmdline{ParamMgmt: "eth6"}, withPath); err != nil || s != "eth6" {
		t.Errorf("kernel argument: %q, %v", s, err)
	}
	if _, err := MgmtSelector(Cmdline{}, withoutPath); err == nil || !strings.Contains(err.Error(), ParamMgmt) {
		t.Errorf("no management anywhere: %v, want an error naming %s", err, ParamMgmt)
	}
	if _, err := MgmtSelector(Cmdline{}, filepath.Join(dir, "absent.yaml")); err == nil {
		t.Error("no built-in config and no kernel argument: no error")
	}
	if _, err := MgmtSelector(Cmdline{ParamMgmt: "not/a name"}, withPath); err == nil {
		t.Error("bad fulcrum.mgmt value accepted")
	}
}
