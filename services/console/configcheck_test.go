package console

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCheckFile(t *testing.T) {
	c, out := newCLI(t)
	ctx := context.Background()
	good, _ := filepath.Abs("../../qemu/configs/ha-lb1.yaml")
	if err := c.Run(ctx, "config check "+good); err != nil {
		t.Fatalf("valid config refused: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), good+": valid") {
		t.Errorf("no verdict for a valid config: %q", out)
	}
	out.Reset()
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\nhostname: -x-\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := c.Run(ctx, "config check "+bad)
	if err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Fatalf("invalid config accepted: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "hostname (line 2): \"-x-\" is not a valid host name") {
		t.Errorf("problem not listed as field.path (line N): reason:\n%s", out)
	}
	if err := c.Run(ctx, "config check"); err == nil || !strings.Contains(err.Error(), "usage: config check FILE") {
		t.Errorf("no file: %v", err)
	}
}
