package boot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// The config partition: a FAT filesystem labelled ConfigPartLabel (the USB
// image has one) whose config.yaml replaces the config built into the
// initramfs, so an operator can edit the config on the stick.
//
// Which config runs, first match wins:
//  1. fulcrum.config=PATH on the kernel command line (explicit choice);
//  2. config.yaml on the config partition, when the partition is found;
//  3. the built-in /etc/fulcrum/config.yaml.
//
// The console always says which one. A config partition that cannot be
// mounted or has no readable config.yaml is announced and the built-in config
// is used (so deleting config.yaml on the stick is how to go back to it). A
// config.yaml that is there but INVALID is not skipped: it is the config the
// operator put there, so it fails validation like any other and the
// appliance enters maintenance state naming the bad field; silently running
// an older config instead would hide the mistake.
const (
	// ParamConfigPart asks init to wait for the config partition (value:
	// its label) while USB and disk drivers find their devices; the USB
	// image's boot loader passes it. Without it init looks once, without
	// waiting.
	ParamConfigPart = "fulcrum.configpart"
	ConfigPartLabel = "FULCRUM-CFG"
	ConfigPartFile  = "config.yaml"
	// ConfigPartWait bounds the wait for the partition.
	ConfigPartWait = 15 * time.Second
	// partConfigCopy is where the partition's config is copied, so the
	// stick can be unmounted (and pulled) and daemons reloading the
	// config read the same file.
	partConfigCopy  = "/run/fulcrum/config.yaml"
	configPartMount = "/run/fulcrum/configpart"
)

// ConfigChoice is the config init runs and where it came from.
type ConfigChoice struct {
	Path   string
	Source string // for the console: "built-in ...", "config partition ..."
	// Partition is set when the config came from the config partition.
	Partition string
}

// chooseConfig applies the precedence above. say prints to the console.
func chooseConfig(log logrus.FieldLogger, cmdline Cmdline, say func(string, ...any)) ConfigChoice {
	if p, ok := cmdline[ParamConfig]; ok && p != "" {
		return ConfigChoice{Path: p, Source: "kernel argument " + ParamConfig + "=" + p}
	}
	builtin := ConfigChoice{Path: DefaultConfigPath, Source: "built-in " + DefaultConfigPath}
	label, wait := ConfigPartLabel, time.Duration(0)
	if v, ok := cmdline[ParamConfigPart]; ok {
		if v != "" {
			label = v
		}
		wait = ConfigPartWait
	}
	f := partFinder{sysBlock: "/sys/class/block", dev: "/dev"}
	dev, err := f.wait(label, wait)
	if err != nil {
		if wait > 0 {
			say("fulcrum: config partition %s not found (%v); using the built-in config", label, err)
		}
		return builtin
	}
	b, err := readPartConfig(dev)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(partConfigCopy), 0o755)
	}
	if err == nil {
		err = os.WriteFile(partConfigCopy, b, 0o600)
	}
	if err != nil {
		say("fulcrum: config partition %s (%s): %v; using the built-in config", label, dev, err)
		log.WithError(err).WithField("device", dev).Warn("config partition unusable")
		return builtin
	}
	src := fmt.Sprintf("%s on config partition %s (%s)", ConfigPartFile, label, dev)
	return ConfigChoice{Path: partConfigCopy, Source: src, Partition: dev}
}

// readPartConfig mounts dev read-only, reads config.yaml and unmounts.
func readPartConfig(dev string) ([]byte, error) {
	if err := os.MkdirAll(configPartMount, 0o755); err != nil {
		return nil, err
	}
	if err := unix.Mount(dev, configPartMount, "vfat", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("mounting vfat read-only: %w", err)
	}
	defer unix.Unmount(configPartMount, 0)
	b, err := os.ReadFile(filepath.Join(configPartMount, ConfigPartFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no %s on it", ConfigPartFile)
	}
	return b, err
}

// partFinder finds a block device holding a FAT filesystem with a label.
type partFinder struct {
	sysBlock string // /sys/class/block
	dev      string // /dev
}

var errNoPartition = errors.New("no FAT filesystem with that label")

func (f partFinder) wait(label string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		dev, err := f.find(label)
		if err == nil || time.Now().After(deadline) {
			if err != nil && wait > 0 {
				err = fmt.Errorf("%w after %v", err, wait)
			}
			return dev, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// find returns /dev/<name> of the first block device whose FAT volume label
// (or GPT partition name) is label.
func (f partFinder) find(label string) (string, error) {
	entries, err := os.ReadDir(f.sysBlock)
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") {
			continue
		}
		if partName(filepath.Join(f.sysBlock, name, "uevent")) == label {
			return filepath.Join(f.dev, name), nil
		}
		if l, ok := readFATLabel(filepath.Join(f.dev, name)); ok && strings.EqualFold(l, label) {
			return filepath.Join(f.dev, name), nil
		}
	}
	return "", errNoPartition
}

// partName is PARTNAME from a block device's uevent (the GPT partition name).
func partName(uevent string) string {
	b, err := os.ReadFile(uevent)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PARTNAME="); ok {
			return v
		}
	}
	return ""
}

func readFATLabel(dev string) (string, bool) {
	f, err := os.Open(dev)
	if err != nil {
		return "", false
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := io.ReadFull(f, b); err != nil {
		return "", false
	}
	return FATLabel(b)
}

// FATLabel returns the volume label in a FAT12/16/32 boot sector.
func FATLabel(bs []byte) (string, bool) {
	if len(bs) < 512 || bs[510] != 0x55 || bs[511] != 0xaa {
		return "", false
	}
	// Extended BPB: FAT32 at 0x40 (signature 0x42, label 0x47, type
	// 0x52), FAT12/16 at 0x24 (signature 0x26, label 0x2b, type 0x36).
	for _, o := range []struct{ sig, label, typ int }{{0x42, 0x47, 0x52}, {0x26, 0x2b, 0x36}} {
		if bs[o.sig] == 0x29 && bytes.HasPrefix(bs[o.typ:o.typ+8], []byte("FAT")) {
			return strings.TrimRight(string(bs[o.label:o.label+11]), " \x00"), true
		}
	}
	return "", false
}
