package build

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/image/ramfs"
	"github.com/u-root/mkuimage/cpio"
)

// TestMeasureInitramfsGroupsContributors: the busybox binary, the modules
// and the rest are sized apart, biggest (compressed) first, and an
// incompressible file costs about its size while a compressible one costs
// little.
func TestMeasureInitramfsGroupsContributors(t *testing.T) {
	random := make([]byte, 300_000)
	rand.Read(random)
	recs := []cpio.Record{
		cpio.StaticFile(busyboxPath, string(random), 0o755),
		cpio.StaticFile("lib/modules/6.1/kernel/a.ko", strings.Repeat("module", 20_000), 0o644),
		cpio.StaticFile("lib/modules/6.1/kernel/b.ko", string(random[:50_000]), 0o644),
		cpio.StaticFile("lib/modules/6.1/modules.dep", "a.ko:\n", 0o644),
		cpio.StaticFile("etc/fulcrum/config.yaml", "version: 1\n", 0o600),
	}
	path := filepath.Join(t.TempDir(), "initramfs.cpio.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ramfs.WriteArchive(f, recs); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s, err := MeasureInitramfs(path, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Groups) != 4 {
		t.Fatalf("groups %+v: want busybox, modules, other and (empty) firmware", s.Groups)
	}
	bb, mods := s.Groups[0], s.Groups[1]
	if bb.Name != groupOf(busyboxPath) || bb.Files != 1 || bb.Bytes != 300_000 || bb.Gzip < 290_000 {
		t.Errorf("first group %+v: want the busybox binary, 300000 bytes, about as big compressed", bb)
	}
	if mods.Name != "kernel modules" || mods.Files != 2 || mods.Bytes != 170_000 || mods.Gzip > 60_000 || mods.Gzip < 50_000 {
		t.Errorf("second group %+v: want 2 modules of 170000 bytes costing about 50 KB compressed", mods)
	}
	if fw := s.Groups[3]; fw.Name != "firmware" || fw.Files != 0 {
		t.Errorf("last group %+v: want firmware, empty", fw)
	}
	if len(s.Files) != 2 || s.Files[0].Name != busyboxPath || s.Files[1].Name != "lib/modules/6.1/kernel/b.ko" {
		t.Errorf("top files %+v: want bbin/bb then b.ko", s.Files)
	}
	md := s.Markdown(8_000_000, 10_000_000, MaxBootImageBytes)
	if !strings.Contains(md, "= 18.00 MB, budget 25.0 MB") || !strings.Contains(md, "| `bbin/bb` | 0.30 MB |") {
		t.Errorf("markdown:\n%s", md)
	}
}

// TestBudgetFailsAboveTwentyFiveMB: at the budget the build passes; a byte
// over fails, naming the contributors.
func TestBudgetFailsAboveTwentyFiveMB(t *testing.T) {
	s := &Sizes{Groups: []Part{{Name: "Go busybox", Gzip: 9_000_000}, {Name: "kernel modules", Gzip: 7_000_000}}}
	if err := CheckBudget(8_000_000, 17_000_000, MaxBootImageBytes, s); err != nil {
		t.Errorf("exactly 25 MB: %v", err)
	}
	err := CheckBudget(8_000_000, 17_000_001, MaxBootImageBytes, s)
	if err == nil || !strings.Contains(err.Error(), "over the 25.0 MB budget") || !strings.Contains(err.Error(), "Go busybox 9.0 MB, kernel modules 7.0 MB") {
		t.Errorf("a byte over 25 MB: error %v, want the budget and the contributors named", err)
	}
}
