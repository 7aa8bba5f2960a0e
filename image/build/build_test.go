package build

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

func TestCommandsIncludeInitDaemonsAndConsoleTools(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "services", "cmd", "lbd"), 0o755)
	os.WriteFile(filepath.Join(dir, "services", "cmd", "lbd", "main.go"), []byte("// Command lbd.\npackage main\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "services", "cmd", "lib"), 0o755)
	os.WriteFile(filepath.Join(dir, "services", "cmd", "lib", "lib.go"), []byte("package lib\n"), 0o644)
	cmds, err := Commands(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cmds[0] != ModulePath+"/init" {
		t.Errorf("first command %s, want init", cmds[0])
	}
	joined := strings.Join(cmds, " ")
	if !strings.Contains(joined, ModulePath+"/services/cmd/lbd") {
		t.Errorf("daemon lbd missing from %v", cmds)
	}
	if strings.Contains(joined, "/lib") {
		t.Errorf("library package services/localapi taken for a command: %v", cmds)
	}
	if !strings.Contains(joined, "cmds/core/gosh") {
		t.Errorf("console shell missing from %v", cmds)
	}
}
