package usbimg

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
)

// TestPatchBIOS checks the grub-bios-setup patches on synthetic boot.img and
// core.img: the MBR code names the core's LBA, the drive check is NOPed, the
// partition-table bytes are not part of the MBR code, and the core's first
// blocklist covers the rest of the core.
func TestPatchBIOS(t *testing.T) {
	boot := make([]byte, 512)
	boot[0x66], boot[0x67] = 0xeb, 0x05
	core := make([]byte, 5*512+100)
	binary.LittleEndian.PutUint16(core[510:], 0x820)
	mbr, pc, err := PatchBIOS(boot, core, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if len(mbr) != 440 {
		t.Errorf("MBR code is %d bytes, want 440 (the partition table must stay)", len(mbr))
	}
	if got := binary.LittleEndian.Uint64(mbr[0x5c:]); got != 2048 {
		t.Errorf("kernel sector %d, want 2048", got)
	}
	if mbr[0x66] != 0x90 || mbr[0x67] != 0x90 {
		t.Errorf("drive check not NOPed: % x", mbr[0x66:0x68])
	}
	if len(pc) != 6*512 {
		t.Errorf("core padded to %d bytes, want %d", len(pc), 6*512)
	}
	if s, n := binary.LittleEndian.Uint64(pc[500:]), binary.LittleEndian.Uint16(pc[508:]); s != 2049 || n != 5 {
		t.Errorf("blocklist start %d len %d, want 2049 5", s, n)
	}
	bad := append([]byte{}, core...)
	bad[511] = 0
	if _, _, err := PatchBIOS(boot, bad, 2048); err == nil {
		t.Error("accepted a core image that is not GRUB's diskboot")
	}
}

func TestLayoutFitsAndFAT32SizesAreReal(t *testing.T) {
	table, size := Layout()
	p := table.Partitions
	if len(p) != 3 || p[PartESP-1].Name != ESPLabel || p[PartConfig-1].Name != ConfigLabel {
		t.Fatalf("partitions %+v", p)
	}
	for i := 1; i < len(p); i++ {
		if p[i].Start != p[i-1].End+1 {
			t.Errorf("partition %d starts at %d, previous ends at %d", i+1, p[i].Start, p[i-1].End)
		}
	}
	if end := int64(p[len(p)-1].End+1) * 512; end+33*512 > size {
		t.Errorf("no room for the backup GPT: last partition ends %d, image %d", end, size)
	}
	// UEFI firmware decides FAT type by cluster count: FAT32 needs 65525.
	for _, i := range []int{PartESP, PartConfig} {
		if clusters := p[i-1].Size / 512; clusters < 65525+2048 {
			t.Errorf("partition %d: %d clusters of 512 bytes; firmware would not take it for FAT32", i, clusters)
		}
	}
}

// TestConfigRoundTrip writes and rewrites config.yaml on a config partition
// made like Build makes it, and reads it back exactly (go-diskfs reads past
// EOF with io.ReadAll, which is how a first version of this broke).
func TestConfigRoundTrip(t *testing.T) {
	img := filepath.Join(t.TempDir(), "x.img")
	table, size := Layout()
	d, err := diskfs.Create(img, size, diskfs.SectorSize512)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Partition(table); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: PartESP, FSType: filesystem.TypeFat32, VolumeLabel: ESPLabel}); err != nil {
		t.Fatal(err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: PartConfig, FSType: filesystem.TypeFat32, VolumeLabel: ConfigLabel})
	if err != nil {
		t.Fatal(err)
	}
	first := []byte(strings.Repeat("# padding line to cross a cluster\n", 26) + "hostname: lb1\n")
	if err := writeInto(fs, "/"+ConfigFile, first); err != nil {
		t.Fatal(err)
	}
	d.Close()
	got, err := ReadConfig(img)
	if err != nil || !bytes.Equal(got, first) {
		t.Fatalf("read %d bytes (%v), want the %d written", len(got), err, len(first))
	}
	second := bytes.Replace(first, []byte("lb1"), []byte("lb-longer-name"), 1)
	if err := WriteConfig(img, second); err != nil {
		t.Fatal(err)
	}
	if got, err = ReadConfig(img); err != nil || !bytes.Equal(got, second) {
		t.Fatalf("after rewrite read %q (%v)", got, err)
	}
	shorter := []byte("hostname: x\n")
	if err := WriteConfig(img, shorter); err != nil {
		t.Fatal(err)
	}
	if got, err = ReadConfig(img); err != nil || !bytes.Equal(got, shorter) {
		t.Fatalf("after shorter rewrite read %q (%v)", got, err)
	}
	if err := WriteConfig(img, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadConfig(img); err == nil {
		t.Fatal("config still there after removing it")
	}
	os.Remove(img)
}

func TestGrubConfigHasSerialConsoleAndConfigPartition(t *testing.T) {
	c := GrubConfig("console=tty0 console=ttyS0,115200n8")
	for _, want := range []string{"serial --unit=0 --speed=115200", "terminal_output console serial",
		"linux /fulcrum/vmlinuz console=tty0 console=ttyS0,115200n8 fulcrum.configpart=FULCRUM-CFG", "initrd /fulcrum/initramfs.cpio.gz"} {
		if !strings.Contains(c, want) {
			t.Errorf("grub.cfg lacks %q:\n%s", want, c)
		}
	}
}
