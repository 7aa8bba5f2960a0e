package lbd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/services/console"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/mgmtd"
)

// appliance serves this lbd's local API on a socket in a fresh directory,
// with the console CLI and the HTTP API (token "test-token-of-16-chars")
// on top of it, as on the appliance.
func appliance(t *testing.T) (*recIPVS, string, *console.CLI, *bytes.Buffer, http.Handler) {
	t.Helper()
	srv, ip, path, api := server(t)
	srv.Close()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.LBD), api.Handler(), nil)
	testkit.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		return localapi.NewClient("lbd", localapi.SocketPath(dir, localapi.LBD)).Get(ctx, localapi.PathHealth, nil)
	})
	var out bytes.Buffer
	cli := &console.CLI{API: localapi.NewAppliance(dir), Out: &out}
	cli.Init()
	m := &mgmtd.Server{API: localapi.NewAppliance(dir), TokenHash: sha256.Sum256([]byte("test-token-of-16-chars"))}
	return ip, path, cli, &out, m.Handler()
}

func httpPost(h http.Handler, path, body string) (int, []byte) {
	r := httptest.NewRequest("POST", mgmtd.Prefix+path, strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer test-token-of-16-chars")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

// config diff (console and HTTP API) says what an apply would change, in
// ipvsadm's words, and changes nothing: not the kernel, not the file.
func TestConfigDiffChangesNothing(t *testing.T) {
	ip, path, cli, out, h := appliance(t)
	next := strings.Replace(cfgDoc, "weight: 3}", "weight: 4}", 1)
	next = strings.Replace(next, "external: {members: [eth2],", "external: {members: [eth2], mtu: 9000,", 1)
	file := filepath.Join(t.TempDir(), "next.yaml")
	if err := os.WriteFile(file, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cli.Run(context.Background(), "config diff "+file); err != nil {
		t.Fatalf("config diff: %v\n%s", err, out)
	}
	want := "IPVS (changes now):\n  ~   TCP  203.0.113.100:80 (web) -> 198.51.100.12:8080 weight 3 -> 4\n" +
		"network (bonds, addresses, routes, sysctls) (takes effect at the next boot):\n  ~ network.external.mtu: 1500 -> 9000\n"
	if out.String() != want {
		t.Errorf("config diff printed\n%s\nwant\n%s", out, want)
	}
	code, body := httpPost(h, "/config/diff", next)
	var res localapi.ConfigDiff
	if err := json.Unmarshal(body, &res); code != 200 || err != nil || !res.OK || !res.Reboot || res.Text != want || len(res.Sections) != 2 {
		t.Errorf("POST /config/diff: %d %s", code, body)
	}
	if w := ip.weights(); w["198.51.100.12"] != 3 {
		t.Errorf("diff changed the kernel: %v", w)
	}
	if b, _ := os.ReadFile(path); string(b) != cfgDoc {
		t.Error("diff changed the config file")
	}
}

// Every way in refuses an invalid config with the same field errors
// `config check` prints, and changes nothing.
func TestBadConfigRefusedTheSameWayEverywhere(t *testing.T) {
	ip, path, cli, out, h := appliance(t)
	bad := strings.Replace(cfgDoc, "weight: 3}", "weight: 4, wieght: 5}", 1) + "---\nversion: 1\n"
	file := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, perr := config.Parse([]byte(bad))
	want := config.Problems(perr)
	if len(want) != 2 || !strings.HasPrefix(want[0], `pools.web.members[1].wieght (line 12): unknown field "wieght"`) || !strings.HasPrefix(want[1], "document (line 13): a second YAML document") {
		t.Fatalf("config.Problems: %q", want)
	}
	ctx := context.Background()
	for _, cmd := range []string{"config check", "config diff"} {
		out.Reset()
		if err := cli.Run(ctx, cmd+" "+file); err == nil || !strings.Contains(err.Error(), "invalid") {
			t.Errorf("%s accepted a bad file: %v", cmd, err)
		}
		if got := strings.Split(strings.TrimSpace(out.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s printed %q, want %q", cmd, got, want)
		}
	}
	for _, op := range []string{"/config/validate", "/config/diff", "/config/apply"} {
		code, body := httpPost(h, op, bad)
		var res localapi.ConfigResult
		if err := json.Unmarshal(body, &res); code != http.StatusUnprocessableEntity || err != nil || res.OK || strings.Join(res.Errors, "\n") != strings.Join(want, "\n") {
			t.Errorf("POST %s: %d %s, want 422 with errors %q", op, code, body, want)
		}
	}
	if w := ip.weights(); w["198.51.100.12"] != 3 {
		t.Errorf("a refused config changed the kernel: %v", w)
	}
	if b, _ := os.ReadFile(path); string(b) != cfgDoc {
		t.Error("a refused config changed the config file")
	}
}
