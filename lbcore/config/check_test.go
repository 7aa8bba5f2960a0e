package config

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestCheckValidConfigs(t *testing.T) {
	files, _ := filepath.Glob("../../qemu/configs/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example configs found")
	}
	for _, f := range files {
		var out bytes.Buffer
		if err := Check(&out, f); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out.String())
		}
		if want := f + ": valid\n"; out.String() != want {
			t.Errorf("%s: output %q, want %q", f, out.String(), want)
		}
	}
}

// Every problem of an invalid config is printed on its own line as
// `field.path (line N): reason`, and Check fails naming how many there are.
func TestCheckListsEveryProblemWithPathAndLine(t *testing.T) {
	doc := lbNetwork + `
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: nosuch}
  - {name: web2, vip: 203.0.113.101, port: 99999, pool: web, scheduler: bogus}
pools:
  web:
    members: [{address: 198.51.100.11}]
`
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := Check(&out, path)
	if err == nil {
		t.Fatalf("invalid config accepted:\n%s", out.String())
	}
	if !strings.Contains(err.Error(), "3 problems") {
		t.Errorf("error %q does not count 3 problems", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		`virtual_servers[0].pool (line 11): unknown pool "nosuch"`,
		`virtual_servers[1].port (line 12): "99999" is not a port`,
		`virtual_servers[1].scheduler (line 12): unknown scheduler "bogus"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
	}
	form := regexp.MustCompile(`^[a-z_]+(\[\d+\])?(\.[a-z_]+(\[\d+\])?)* \(line \d+\): .+`)
	for i, l := range lines {
		if !form.MatchString(l) {
			t.Errorf("line %q is not `field.path (line N): reason`", l)
		}
		if !strings.HasPrefix(l, want[i]) {
			t.Errorf("line %d = %q, want prefix %q", i, l, want[i])
		}
	}
}

func TestCheckMissingFile(t *testing.T) {
	var out bytes.Buffer
	err := Check(&out, filepath.Join(t.TempDir(), "none.yaml"))
	if err == nil || !strings.Contains(out.String(), "no such file") {
		t.Fatalf("missing file: err %v, output %q", err, out.String())
	}
}
