package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The subcommands' exit status: 0 valid, 1 invalid, 2 usage.
func TestSubcommandStatus(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pair := "../../../lbcore/config/keepalived/testdata/pair/"
	out := filepath.Join(t.TempDir(), "lb1.yaml")
	for _, c := range []struct {
		name string
		args []string
		want int
	}{
		{"check-config", []string{"../../../qemu/configs/ha-lb1.yaml"}, 0},
		{"check-config", []string{"../../../qemu/configs/lb1.yaml", bad}, 1},
		{"check-config", nil, 2},
		{"import-keepalived", []string{"-in", pair + "keepalived.conf", "-base", pair + "base-lb1.yaml", "-config-id", "lb1", "-out", out}, 0},
		{"import-keepalived", []string{"-in", pair + "keepalived.conf", "-base", bad, "-out", out}, 1},
		{"import-keepalived", []string{"-in", filepath.Join(t.TempDir(), "none.conf")}, 1},
		{"import-keepalived", nil, 2},
	} {
		if got := subcommand(c.name)(c.args); got != c.want {
			t.Errorf("%s %v: status %d, want %d", c.name, c.args, got, c.want)
		}
	}
	if subcommand("-config") != nil {
		t.Error("a build flag taken for a subcommand")
	}
	if _, err := os.Stat(out); err != nil {
		t.Errorf("import wrote no output: %v", err)
	}
}
