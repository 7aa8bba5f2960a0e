package lbapply

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHealthMembersChecksScriptProgram: the script monitor's program is
// checked where it is used, and the refusal names the field and its line
// like a validation error.
func TestHealthMembersChecksScriptProgram(t *testing.T) {
	dir := t.TempDir()
	exe, plain := filepath.Join(dir, "check"), filepath.Join(dir, "notes")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := func(prog string) string {
		return strings.Replace(cfgHealth, "  web: {type: tcp, interval: 1s}",
			"  web:\n    type: script\n    interval: 1s\n    command: ["+prog+", \"{addr}\"]", 1)
	}
	if _, _, err := HealthMembers(parse(t, doc(exe))); err != nil {
		t.Fatalf("executable script refused: %v", err)
	}
	for prog, want := range map[string]string{
		filepath.Join(dir, "missing"): "monitors.web.command[0] (line 20): cannot use " + filepath.Join(dir, "missing") + ": no such file or directory",
		plain:                         "monitors.web.command[0] (line 20): " + plain + " is not executable",
		dir:                           "monitors.web.command[0] (line 20): " + dir + " is not a regular file",
	} {
		_, _, err := HealthMembers(parse(t, doc(prog)))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", prog, err, want)
		}
	}
	icmp := strings.Replace(cfgHealth, "web: {type: tcp, interval: 1s}", "web: {type: icmp, interval: 1s}", 1)
	if _, members, err := HealthMembers(parse(t, icmp)); err != nil || len(members) != 2 {
		t.Errorf("icmp monitor: %v %v", members, err)
	}
}
