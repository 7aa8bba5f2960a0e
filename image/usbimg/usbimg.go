// Package usbimg writes the appliance's raw disk image for a USB stick (or
// any disk): GPT with
//
//  1. a BIOS boot partition holding GRUB's i386-pc core image (legacy BIOS
//     boot: boot.img in the protective MBR loads it),
//  2. an EFI system partition (FAT32) with GRUB for x86-64 UEFI as
//     /EFI/BOOT/BOOTX64.EFI, grub.cfg, the kernel and the initramfs,
//  3. a small FAT32 config partition labelled ConfigLabel holding
//     config.yaml, which init reads at boot (see init/boot/configpart.go).
//
// Partitions and filesystems are made with go-diskfs. GRUB's binaries come
// from Debian's grub-pc-bin and grub-efi-amd64-bin packages and its
// grub-mkimage from grub-common, downloaded and unpacked into the cache,
// never installed. Both GRUBs read the same grub.cfg on the ESP, so the
// serial console settings and kernel arguments are the same on BIOS and UEFI.
package usbimg

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// Labels: the ESP's and the config partition's FAT volume label and GPT
// partition name.
const (
	ESPLabel    = "FULCRUM-ESP"
	ConfigLabel = "FULCRUM-CFG"
	// ConfigFile is the config's name on the config partition.
	ConfigFile = "config.yaml"
	// CmdlineParam tells init to wait for the config partition (the stick
	// may take a few seconds to appear on USB).
	CmdlineParam = "fulcrum.configpart=" + ConfigLabel
)

// Partition numbers (go-diskfs counts from 1).
const (
	PartBIOS   = 1
	PartESP    = 2
	PartConfig = 3
)

const (
	sector     = 512
	mib        = 1 << 20
	biosSize   = 1 * mib
	espSize    = 64 * mib // FAT32 needs ≥ 65525 clusters; 512-byte clusters make that ~33 MiB
	configSize = 40 * mib
)

// Paths on the ESP.
const (
	espKernel    = "/fulcrum/vmlinuz"
	espInitramfs = "/fulcrum/initramfs.cpio.gz"
	espGrubCfg   = "/boot/grub/grub.cfg"
	espEFIBoot   = "/EFI/BOOT/BOOTX64.EFI"
)

// Debian packages the boot loaders come from.
var bootPackages = []string{"grub-common", "grub-pc-bin", "grub-efi-amd64-bin"}

// GRUB modules built into each core image.
var (
	grubCommon = []string{"part_gpt", "part_msdos", "fat", "search", "search_fs_file", "normal", "linux",
		"serial", "terminal", "configfile", "echo", "test", "gzio"}
	grubBIOS = []string{"biosdisk"}
	grubEFI  = []string{"efi_gop", "all_video"}
)

// Spec describes one image.
type Spec struct {
	Kernel    string // vmlinuz
	Initramfs string
	Config    string // the config written to the config partition
	Cmdline   string // kernel arguments (the serial console ones included)
	Out       string // image path
	CacheDir  string // where the GRUB packages are unpacked
	Log       func(format string, args ...any)
}

// Build writes the image to s.Out (through a temporary file).
func Build(ctx context.Context, s Spec) error {
	logf := s.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	pk := &Packages{CacheDir: s.CacheDir, Log: logf}
	roots := map[string]string{}
	for _, p := range bootPackages {
		r, err := pk.Unpack(ctx, p)
		if err != nil {
			return fmt.Errorf("usb image: %w", err)
		}
		roots[p] = r
	}
	tmp, err := os.MkdirTemp(s.CacheDir, "usbimg-")
	if err != nil {
		return fmt.Errorf("usb image: %w", err)
	}
	defer os.RemoveAll(tmp)
	early := filepath.Join(tmp, "early.cfg")
	if err := os.WriteFile(early, []byte(EarlyConfig()), 0o644); err != nil {
		return err
	}
	mkimage := filepath.Join(roots["grub-common"], "usr", "bin", "grub-mkimage")
	biosCore := filepath.Join(tmp, "core.img")
	if err := grubMkimage(ctx, mkimage, filepath.Join(roots["grub-pc-bin"], "usr/lib/grub/i386-pc"), "i386-pc", early, biosCore, append(grubCommon, grubBIOS...)); err != nil {
		return err
	}
	efiApp := filepath.Join(tmp, "bootx64.efi")
	if err := grubMkimage(ctx, mkimage, filepath.Join(roots["grub-efi-amd64-bin"], "usr/lib/grub/x86_64-efi"), "x86_64-efi", early, efiApp, append(grubCommon, grubEFI...)); err != nil {
		return err
	}
	bootImg, err := os.ReadFile(filepath.Join(roots["grub-pc-bin"], "usr/lib/grub/i386-pc/boot.img"))
	if err != nil {
		return fmt.Errorf("usb image: %w", err)
	}
	core, err := os.ReadFile(biosCore)
	if err != nil {
		return err
	}

	part := s.Out + ".tmp"
	os.Remove(part)
	if err := write(part, s, bootImg, core, efiApp); err != nil {
		os.Remove(part)
		return fmt.Errorf("usb image %s: %w", s.Out, err)
	}
	return os.Rename(part, s.Out)
}

// Layout returns the partition table of the image and its size in bytes.
func Layout() (*gpt.Table, int64) {
	start := uint64(mib / sector)
	var parts []*gpt.Partition
	add := func(size uint64, t gpt.Type, name string, attrs uint64) {
		n := size / sector
		parts = append(parts, &gpt.Partition{Index: len(parts) + 1, Start: start, End: start + n - 1, Size: size, Type: t, Name: name, Attributes: attrs})
		start += n
	}
	add(biosSize, gpt.BIOSBoot, "BIOS boot", 0)
	add(espSize, gpt.EFISystemPartition, ESPLabel, 0)
	add(configSize, gpt.MicrosoftBasicData, ConfigLabel, 0)
	size := int64(start)*sector + mib // room for the backup GPT
	return &gpt.Table{Partitions: parts, LogicalSectorSize: sector, PhysicalSectorSize: sector, ProtectiveMBR: true}, size
}

func write(path string, s Spec, bootImg, core []byte, efiApp string) error {
	table, size := Layout()
	if len(core) > biosSize {
		return fmt.Errorf("GRUB core image is %d bytes, the BIOS boot partition %d", len(core), biosSize)
	}
	d, err := diskfs.Create(path, size, diskfs.SectorSize512)
	if err != nil {
		return err
	}
	if err := fill(d, table, s, efiApp); err != nil {
		d.Close()
		return err
	}
	if err := d.Close(); err != nil {
		return err
	}
	return patchBIOS(path, table, bootImg, core)
}

func fill(d *disk.Disk, table *gpt.Table, s Spec, efiApp string) error {
	if err := d.Partition(table); err != nil {
		return fmt.Errorf("partition table: %w", err)
	}
	esp, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: PartESP, FSType: filesystem.TypeFat32, VolumeLabel: ESPLabel})
	if err != nil {
		return fmt.Errorf("ESP: %w", err)
	}
	for _, f := range []struct{ src, dst string }{
		{efiApp, espEFIBoot}, {s.Kernel, espKernel}, {s.Initramfs, espInitramfs},
	} {
		if err := copyInto(esp, f.src, f.dst); err != nil {
			return fmt.Errorf("ESP: %w", err)
		}
	}
	if err := writeInto(esp, espGrubCfg, []byte(GrubConfig(s.Cmdline))); err != nil {
		return fmt.Errorf("ESP: %w", err)
	}
	cfgFS, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: PartConfig, FSType: filesystem.TypeFat32, VolumeLabel: ConfigLabel})
	if err != nil {
		return fmt.Errorf("config partition: %w", err)
	}
	if err := copyInto(cfgFS, s.Config, "/"+ConfigFile); err != nil {
		return fmt.Errorf("config partition: %w", err)
	}
	if err := writeInto(cfgFS, "/README.txt", []byte(configReadme)); err != nil {
		return fmt.Errorf("config partition: %w", err)
	}
	return nil
}

func patchBIOS(path string, table *gpt.Table, bootImg, core []byte) error {
	// Legacy BIOS: GRUB's boot.img as the MBR's boot code, pointing at the
	// core image in the BIOS boot partition.
	coreLBA := table.Partitions[PartBIOS-1].Start
	mbr, patched, err := PatchBIOS(bootImg, core, coreLBA)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return err
	}
	if _, err := f.WriteAt(patched, int64(coreLBA)*sector); err != nil {
		return err
	}
	return f.Close()
}

// Offsets GRUB's grub-bios-setup patches (include/grub/i386/pc/boot.h).
const (
	bootKernelSector = 0x5c  // boot.img: LBA of the core image's first sector
	bootDriveCheck   = 0x66  // boot.img: jmp over the buggy-BIOS drive check
	mbrCodeSize      = 440   // boot code before the disk signature and partition table
	blocklistStart   = 0x1f4 // diskboot.img: first blocklist entry (start, len, segment)
)

// PatchBIOS does what grub-bios-setup does for a core image embedded in a
// BIOS boot partition at LBA coreLBA: it returns the MBR boot code (boot.img
// with the core's LBA, first 440 bytes only, so the protective MBR's
// partition table stays) and the core image with its first sector's
// blocklist pointing at the rest.
func PatchBIOS(bootImg, core []byte, coreLBA uint64) (mbr, patchedCore []byte, err error) {
	if len(bootImg) != sector {
		return nil, nil, fmt.Errorf("boot.img is %d bytes, want %d", len(bootImg), sector)
	}
	if len(core) < 2*sector {
		return nil, nil, fmt.Errorf("core.img is only %d bytes", len(core))
	}
	mbr = append([]byte{}, bootImg[:mbrCodeSize]...)
	binary.LittleEndian.PutUint64(mbr[bootKernelSector:], coreLBA)
	// A hard disk: skip the jump that works around BIOSes passing a
	// floppy drive number (grub-bios-setup does the same).
	mbr[bootDriveCheck], mbr[bootDriveCheck+1] = 0x90, 0x90

	patchedCore = append([]byte{}, core...)
	if pad := len(patchedCore) % sector; pad != 0 {
		patchedCore = append(patchedCore, make([]byte, sector-pad)...)
	}
	sectors := len(patchedCore) / sector
	if sectors-1 > 0xffff {
		return nil, nil, fmt.Errorf("core.img too large: %d sectors", sectors)
	}
	bl := patchedCore[blocklistStart : blocklistStart+12]
	if seg := binary.LittleEndian.Uint16(bl[10:]); seg != 0x820 {
		return nil, nil, fmt.Errorf("core.img's first blocklist has segment %#x, want 0x820: not a GRUB diskboot image", seg)
	}
	binary.LittleEndian.PutUint64(bl[0:], coreLBA+1)
	binary.LittleEndian.PutUint16(bl[8:], uint16(sectors-1))
	clear(patchedCore[blocklistStart-12 : blocklistStart]) // terminator
	return mbr, patchedCore, nil
}

// EarlyConfig is built into both GRUB images: find the ESP by its files and
// read grub.cfg there.
func EarlyConfig() string {
	return "search --no-floppy --file --set=root " + espKernel + "\nset prefix=($root)/boot/grub\n"
}

// GrubConfig is the ESP's grub.cfg.
func GrubConfig(cmdline string) string {
	return strings.Join([]string{
		"serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1",
		"terminal_input console serial",
		"terminal_output console serial",
		"set timeout=2",
		"set default=0",
		`menuentry "Fulcrum load-balancer appliance" {`,
		"  echo 'Loading Fulcrum...'",
		"  linux " + espKernel + " " + strings.TrimSpace(cmdline+" "+CmdlineParam),
		"  initrd " + espInitramfs,
		"}",
		"",
	}, "\n")
}

const configReadme = `Fulcrum config partition

config.yaml here is the appliance config: at boot, init mounts this partition
(label FULCRUM-CFG) read-only and uses config.yaml instead of the config built
into the image. An invalid config.yaml puts the appliance into maintenance
state (the console names the bad field); delete config.yaml to boot with the
built-in config. Keep the label FULCRUM-CFG when reformatting.
`

func grubMkimage(ctx context.Context, mkimage, dir, format, early, out string, modules []string) error {
	args := append([]string{"-d", dir, "-O", format, "-o", out, "-c", early, "-p", "/boot/grub"}, modules...)
	cmd := exec.CommandContext(ctx, mkimage, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("grub-mkimage -O %s: %w: %s", format, err, strings.TrimSpace(string(b)))
	}
	return nil
}

func copyInto(fs filesystem.FileSystem, src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeInto(fs, dst, b)
}

func writeInto(fs filesystem.FileSystem, dst string, b []byte) error {
	if dir := filepath.Dir(dst); dir != "/" {
		if err := fs.Mkdir(dir); err != nil {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
	}
	f, err := fs.OpenFile(dst, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(f, bytes.NewReader(b)); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return f.Close()
}

// ReadConfig returns config.yaml from an image's config partition.
func ReadConfig(image string) ([]byte, error) {
	d, err := diskfs.Open(image, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", image, err)
	}
	defer d.Close() // read-only: nothing to flush
	fs, err := d.GetFilesystem(PartConfig)
	if err != nil {
		return nil, fmt.Errorf("image %s: config partition: %w", image, err)
	}
	// go-diskfs's FAT File.Read can return bytes past the end of the file
	// when called again at a cluster boundary (so no io.ReadAll): read
	// exactly the size the directory records, in one call.
	entries, err := fs.ReadDir(".")
	if err != nil {
		return nil, fmt.Errorf("image %s: config partition: %w", image, err)
	}
	size := int64(-1)
	for _, e := range entries {
		if strings.EqualFold(e.Name(), ConfigFile) {
			fi, err := e.Info()
			if err != nil {
				return nil, fmt.Errorf("image %s: %s: %w", image, ConfigFile, err)
			}
			size = fi.Size()
		}
	}
	if size < 0 {
		return nil, fmt.Errorf("image %s: no %s on the config partition", image, ConfigFile)
	}
	f, err := fs.OpenFile("/"+ConfigFile, os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("image %s: %s: %w", image, ConfigFile, err)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("image %s: reading %s: %w", image, ConfigFile, err)
	}
	return b, nil
}

// WriteConfig replaces config.yaml on an image's config partition (what an
// operator does by editing the file on the stick); nil removes it.
func WriteConfig(image string, yaml []byte) error {
	d, err := diskfs.Open(image)
	if err != nil {
		return fmt.Errorf("image %s: %w", image, err)
	}
	err = func() error {
		fs, err := d.GetFilesystem(PartConfig)
		if err != nil {
			return fmt.Errorf("config partition: %w", err)
		}
		if yaml == nil {
			if err := fs.Remove("/" + ConfigFile); err != nil {
				return fmt.Errorf("removing %s: %w", ConfigFile, err)
			}
			return nil
		}
		return writeInto(fs, "/"+ConfigFile, yaml)
	}()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("image %s: %w", image, err)
	}
	return nil
}
