package daemon

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const base = `version: 1
network:
  failover: {members: [eth0], addresses: [192.0.2.1/25]}
  internal: {members: [eth1], addresses: [198.51.100.2/24]}
  external: {members: [eth2], addresses: [203.0.113.2/24]}
`

func logLine(t *testing.T, cfg string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(p, []byte(cfg), 0o644)
	log, err := Logger("lbd", "info", p)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log.Logger.SetOutput(&buf)
	log.WithField("vs", "web").Info("applied")
	return buf.String()
}

func TestJSONWhenTheConfigAsksForIt(t *testing.T) {
	out := logLine(t, base+"management:\n  log: {format: json}\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("not JSON: %q (%v)", out, err)
	}
	if rec["msg"] != "applied" || rec["daemon"] != "lbd" || rec["vs"] != "web" {
		t.Fatalf("record %v", rec)
	}
}

func TestTextByDefaultAndOnABrokenConfig(t *testing.T) {
	for _, cfg := range []string{base, "version: 99\n"} {
		out := logLine(t, cfg)
		if !strings.Contains(out, `msg=applied`) || !strings.Contains(out, "daemon=lbd") || strings.HasPrefix(out, "{") {
			t.Fatalf("want a text line, got %q", out)
		}
	}
	if _, err := Logger("lbd", "loud", "/nonexistent"); err == nil {
		t.Fatal("a bad level must be an error")
	}
}
