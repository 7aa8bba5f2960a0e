package manifest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestEveryProgramIsListedAndExists keeps the manifest and the source tree
// in step: every main package under CmdDir is in the manifest (else the
// image would silently lack it) and every listed program has one.
func TestEveryProgramIsListedAndExists(t *testing.T) {
	root := filepath.Join("..", "..")
	entries, err := os.ReadDir(filepath.Join(root, CmdDir))
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		if e.IsDir() && isMain(t, filepath.Join(root, CmdDir, e.Name())) {
			found = append(found, e.Name())
		}
	}
	progs := Programs()
	for _, f := range found {
		if !slices.Contains(progs, f) {
			t.Errorf("%s/%s is a program but not in the manifest", CmdDir, f)
		}
	}
	for _, p := range progs {
		if !slices.Contains(found, p) {
			t.Errorf("manifest lists %s, but %s/%s is no main package", p, CmdDir, p)
		}
	}
}

// TestAfterNamesEarlierDaemons: a daemon waits only for daemons listed
// before it (so no cycle), and names are unique.
func TestAfterNamesEarlierDaemons(t *testing.T) {
	seen := map[string]bool{}
	for _, d := range Daemons() {
		if seen[d.Name] {
			t.Errorf("daemon %s listed twice", d.Name)
		}
		for _, a := range d.After {
			if !seen[a] {
				t.Errorf("%s is After %s, which is not an earlier daemon", d.Name, a)
			}
		}
		seen[d.Name] = true
	}
	if d := Daemons()[1]; d.Name != "vrrpd" || d.Watchdog <= 0 || !slices.Equal(d.After, []string{"lbd"}) {
		t.Errorf("vrrpd entry %+v: want After lbd and a watchdog", d)
	}
}

func isMain(t *testing.T, dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "package ") {
				return strings.TrimSpace(strings.TrimPrefix(l, "package ")) == "main"
			}
		}
	}
	return false
}
