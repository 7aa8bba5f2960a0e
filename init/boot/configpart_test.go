package boot

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// fatImage makes a real FAT32 filesystem (go-diskfs, as the USB image
// builder does) and returns its path.
func fatImage(t *testing.T, dir, name, label string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	const size = 40 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := fat32.Create(file.New(f, false), size, 0, 512, label, false); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func TestFATLabelReadsGoDiskfsFAT32(t *testing.T) {
	p := fatImage(t, t.TempDir(), "fs", "FULCRUM-CFG")
	b, _ := os.ReadFile(p)
	l, ok := FATLabel(b[:512])
	if !ok || l != "FULCRUM-CFG" {
		t.Fatalf("label %q ok=%v, want FULCRUM-CFG", l, ok)
	}
	zero := make([]byte, 512)
	if _, ok := FATLabel(zero); ok {
		t.Error("an empty sector has a FAT label")
	}
	b[0x52] = 'X' // not a FAT type string any more
	if _, ok := FATLabel(b[:512]); ok {
		t.Error("label read from a boot sector without FAT type")
	}
}

// TestPartFinder builds a fake /sys/class/block and /dev: a disk, an ESP
// with another label, the config partition found by FAT label, and one found
// by GPT partition name only.
func TestPartFinder(t *testing.T) {
	dir := t.TempDir()
	sys, dev := filepath.Join(dir, "sys"), filepath.Join(dir, "dev")
	for _, d := range []string{sys, dev} {
		os.MkdirAll(d, 0o755)
	}
	add := func(name, uevent, devFile string) {
		os.MkdirAll(filepath.Join(sys, name), 0o755)
		os.WriteFile(filepath.Join(sys, name, "uevent"), []byte(uevent), 0o644)
		if devFile != "" {
			os.Rename(devFile, filepath.Join(dev, name))
		}
	}
	add("loop0", "", fatImage(t, dir, "l", "FULCRUM-CFG")) // loop devices are skipped
	add("sda", "DEVTYPE=disk\n", "")
	add("sda2", "DEVTYPE=partition\nPARTNAME=FULCRUM-ESP\n", fatImage(t, dir, "a", "FULCRUM-ESP"))
	add("sda3", "DEVTYPE=partition\nPARTNAME=data\n", fatImage(t, dir, "b", "FULCRUM-CFG"))
	add("nvme0n1p1", "DEVTYPE=partition\nPARTNAME=OTHER-CFG\n", "")
	f := partFinder{sysBlock: sys, dev: dev}
	if got, err := f.find("FULCRUM-CFG"); err != nil || got != filepath.Join(dev, "sda3") {
		t.Errorf("find FULCRUM-CFG = %q, %v; want sda3 by FAT label", got, err)
	}
	if got, err := f.find("OTHER-CFG"); err != nil || got != filepath.Join(dev, "nvme0n1p1") {
		t.Errorf("find OTHER-CFG = %q, %v; want nvme0n1p1 by GPT name", got, err)
	}
	if got, err := f.wait("NOPE", 300*1e6); err == nil {
		t.Errorf("found %q for a label nobody has", got)
	}
}
