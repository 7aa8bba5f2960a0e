package cfgstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"golang.org/x/sys/unix"
)

func cfg(n int) []byte { return []byte(fmt.Sprintf("version: 1\nhostname: lb%d\n", n)) }

func mustSave(t *testing.T, s *Store, b []byte, m Meta) Entry {
	t.Helper()
	e, err := s.Save(b, m)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestSaveKeepsLastNAndLoadsBack: the first save also stores the config it
// replaces (so a rollback reaches the boot config); only the newest Keep
// are kept; Load(N) counts back from the newest.
func TestSaveKeepsLastNAndLoadsBack(t *testing.T) {
	root := t.TempDir()
	s := NewDir(root, 3, true, "test")
	mustSave(t, s, cfg(1), Meta{Source: SourceApply, Replaces: cfg(0)})
	l, err := s.List()
	if err != nil || len(l) != 2 || l[1].Source != SourceBoot || l[0].Source != SourceApply {
		t.Fatalf("after the first save: %+v %v; want apply then boot", l, err)
	}
	// The running config is the newest: no second boot entry.
	mustSave(t, s, cfg(2), Meta{Source: SourceApply, Replaces: cfg(1)})
	mustSave(t, s, cfg(3), Meta{Source: SourceApply, Replaces: cfg(2)})
	e := mustSave(t, s, cfg(4), Meta{Source: SourceApply, Replaces: cfg(3)})
	if e.Gen != 5 {
		t.Errorf("generation %d, want 5", e.Gen)
	}
	l, _ = s.List()
	if len(l) != 3 {
		t.Fatalf("%d stored, want keep=3: %+v", len(l), l)
	}
	for back, want := range []int{4, 3, 2} {
		b, _, err := s.Load(back)
		if err != nil || string(b) != string(cfg(want)) {
			t.Errorf("Load(%d) = %q %v, want lb%d", back, b, err, want)
		}
	}
	var me *MissingError
	if _, _, err := s.Load(3); !errors.As(err, &me) || !strings.Contains(err.Error(), "0..2 back") {
		t.Errorf("Load(3) error %v, want a MissingError naming 0..2", err)
	}
	if _, _, err := s.Load(-1); err == nil {
		t.Error("Load(-1) succeeded")
	}
	files, _ := filepath.Glob(filepath.Join(root, Dir, "*"))
	if len(files) != 3 {
		t.Errorf("files on disk %v, want 3", files)
	}
}

// TestDamagedNewestIsSkipped: a newest file cut short (power cut before its
// fsync) is skipped at boot (the previous config runs), refused by Load
// with a clear error, and deleted by the next save.
func TestDamagedNewestIsSkipped(t *testing.T) {
	root := t.TempDir()
	s := NewDir(root, 5, true, "test")
	mustSave(t, s, cfg(1), Meta{Source: SourceApply})
	e := mustSave(t, s, cfg(2), Meta{Source: SourceApply})
	p := filepath.Join(root, Dir, e.File)
	b, _ := os.ReadFile(p)
	for _, cut := range []int{0, 10, len(b) - 1} {
		if err := os.WriteFile(p, b[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Choose(root)
		if err != nil {
			t.Fatal(err)
		}
		if string(c.Config) != string(cfg(1)) || !strings.Contains(strings.Join(c.Notes, "\n"), "skipped") {
			t.Errorf("cut at %d: boot chose %q (%v), want lb1 and a note", cut, c.Config, c.Notes)
		}
		if _, _, err := s.Load(0); err == nil || !strings.Contains(err.Error(), "damaged") {
			t.Errorf("cut at %d: Load(0) error %v, want damaged", cut, err)
		}
	}
	// Same length, other bytes.
	bad := append([]byte{}, b...)
	bad[len(bad)-2] ^= 0x20
	os.WriteFile(p, bad, 0o600)
	if c, _ := Choose(root); string(c.Config) != string(cfg(1)) {
		t.Errorf("flipped byte: boot chose %q", c.Config)
	}
	e3 := mustSave(t, s, cfg(3), Meta{Source: SourceApply})
	if e3.Gen != 3 {
		t.Errorf("gen %d after a damaged gen 2, want 3", e3.Gen)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("damaged %s not deleted by the next save: %v", e.File, err)
	}
	if c, _ := Choose(root); string(c.Config) != string(cfg(3)) {
		t.Errorf("boot chose %q, want lb3", c.Config)
	}
}

// TestChooseSeedEditedByHandWins: config.yaml changed after the last save
// runs instead of the stored config; unchanged, the stored one runs.
func TestChooseSeedEditedByHandWins(t *testing.T) {
	root := t.TempDir()
	seed := filepath.Join(root, SeedFile)
	os.WriteFile(seed, cfg(0), 0o600)
	if c, _ := Choose(root); string(c.Config) != string(cfg(0)) || c.From != SeedFile {
		t.Fatalf("empty store: chose %q from %s", c.Config, c.From)
	}
	s := NewDir(root, 5, true, "test")
	mustSave(t, s, cfg(1), Meta{Source: SourceApply, Replaces: cfg(0)})
	c, _ := Choose(root)
	if string(c.Config) != string(cfg(1)) || c.From != "fulcrum/config-00000002.yaml" {
		t.Errorf("after apply: chose %q from %s", c.Config, c.From)
	}
	os.WriteFile(seed, cfg(9), 0o600)
	c, _ = Choose(root)
	if string(c.Config) != string(cfg(9)) || !strings.Contains(strings.Join(c.Notes, ""), "config.yaml changed") {
		t.Errorf("after a hand edit: chose %q (%v), want lb9 and a note", c.Config, c.Notes)
	}
	os.Remove(seed)
	if c, _ := Choose(root); c.Config != nil {
		t.Errorf("config.yaml deleted after the apply: chose %q, want the built-in (nil)", c.Config)
	}
}

// TestOverridesNewestWins: the newest overrides are returned, a damaged
// newest one is skipped, only two are kept.
func TestOverridesNewestWins(t *testing.T) {
	root := t.TempDir()
	s := NewDir(root, 5, true, "test")
	for i := 1; i <= 3; i++ {
		if err := s.SaveOverrides([]byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	b, err := s.Overrides()
	if err != nil || string(b) != `{"n":3}` {
		t.Fatalf("overrides %q %v", b, err)
	}
	files, _ := filepath.Glob(filepath.Join(root, Dir, "overrides-*"))
	if len(files) != 2 {
		t.Errorf("%v kept, want 2", files)
	}
	os.WriteFile(filepath.Join(root, Dir, "overrides-00000003.json"), []byte("# fulcrum-store v1 gen=3"), 0o600)
	if c, _ := Choose(root); string(c.Overrides) != `{"n":2}` {
		t.Errorf("boot overrides %q, want n=2", c.Overrides)
	}
}

// TestFullStoreLeavesItUnchanged: on a filesystem with no room (a 64 KiB
// tmpfs) a save fails with ENOSPC named in the error, leaves no partial
// file, and the stored configs are as before.
func TestFullStoreLeavesItUnchanged(t *testing.T) {
	testkit.Require(t, testkit.Root)
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(root, 0) })
	s := NewDir(root, 5, true, "test")
	mustSave(t, s, cfg(1), Meta{Source: SourceApply})
	big := append(cfg(2), []byte("# "+strings.Repeat("x", 200<<10)+"\n")...)
	_, err := s.Save(big, Meta{Source: SourceApply})
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("save on a full store: %v, want ENOSPC", err)
	}
	l, _ := s.List()
	if len(l) != 1 || l[0].Damaged != "" {
		t.Errorf("store after the failed save: %+v, want the one config", l)
	}
	if b, _, err := s.Load(0); err != nil || string(b) != string(cfg(1)) {
		t.Errorf("Load(0) = %q %v", b, err)
	}
}
