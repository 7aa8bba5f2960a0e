package build

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/services/manifest"
)

// TestInvalidConfigBuildsNothing checks that validation comes first: a bad
// config fails the build with the field path and line, before any kernel
// is fetched or any file is written to the output directory.
func TestInvalidConfigBuildsNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte(`version: 1
hostname: lb1
network:
  failover: {members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {members: [eth2], mode: round-robin-please}
  external: {members: [eth3]}
`), 0o644)
	out := filepath.Join(dir, "out")
	var fetched bool
	_, err := Build(context.Background(), Options{
		ConfigPath: cfg, OutDir: out, CacheDir: filepath.Join(dir, "cache"), SourceDir: dir,
		KernelDeb: "/nonexistent/should-not-be-read.deb",
		Log: func(format string, a ...any) {
			if strings.Contains(format, "fetching kernel") || strings.Contains(strings.Join(toStrings(a), " "), "fetching kernel") {
				fetched = true
			}
		},
	})
	if err == nil {
		t.Fatal("build with an invalid bond mode succeeded")
	}
	if !strings.Contains(err.Error(), "network.internal.mode (line 5)") || !strings.Contains(err.Error(), "round-robin-please") {
		t.Fatalf("error %q does not name network.internal.mode, its line and the bad value", err)
	}
	if fetched {
		t.Error("the kernel was fetched although the config was invalid")
	}
	if entries, _ := os.ReadDir(out); len(entries) > 0 {
		t.Errorf("output directory has %d entries after a failed build", len(entries))
	}
}

func toStrings(a []any) []string {
	var s []string
	for _, x := range a {
		if str, ok := x.(string); ok {
			s = append(s, str)
		}
	}
	return s
}

func TestCommandsAreInitTheManifestAndConsoleTools(t *testing.T) {
	cmds := Commands()
	if cmds[0] != ModulePath+"/init" {
		t.Errorf("first command %s, want init", cmds[0])
	}
	joined := strings.Join(cmds, " ")
	for _, p := range manifest.Programs() {
		if !strings.Contains(joined, ModulePath+"/services/cmd/"+p+" ") {
			t.Errorf("manifest program %s missing from %v", p, cmds)
		}
	}
	if !strings.Contains(joined, "cmds/core/gosh") {
		t.Errorf("console shell missing from %v", cmds)
	}
}
