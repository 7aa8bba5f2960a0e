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

	"github.com/fulcrum-lb/fulcrum/services/cfgstore"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// The config partition: a FAT filesystem labelled ConfigPartLabel (the USB
// image has one) whose config.yaml replaces the config built into the
// initramfs, so an operator can edit the config on the stick.
//
// Which config runs, first match wins:
//  1. fulcrum.config=PATH on the kernel command line (explicit choice);
//  2. on the config partition, when it is found: the newest config applied
//     at runtime (kept in its fulcrum/ directory by services/cfgstore),
//     unless config.yaml was edited since it was saved; else config.yaml;
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
	// Store tells the daemons where applied configs are kept
	// (services/cfgstore): the config partition when one was found,
	// else RAM with the reason.
	Store cfgstore.Descriptor
	// Overrides are the operator overrides saved in the store (nil: none).
	Overrides []byte
}

// chooseConfig applies the precedence above. say prints to the console.
// On the config partition, configs applied at runtime are kept by
// services/cfgstore: the newest one runs unless config.yaml was edited by
// hand since (cfgstore.Choose).
func chooseConfig(log logrus.FieldLogger, cmdline Cmdline, say func(string, ...any)) ConfigChoice {
	if p, ok := cmdline[ParamConfig]; ok && p != "" {
		return ConfigChoice{Path: p, Source: "kernel argument " + ParamConfig + "=" + p,
			Store: cfgstore.Descriptor{Why: "config given by kernel argument " + ParamConfig}}
	}
	builtin := ConfigChoice{Path: DefaultConfigPath, Source: "built-in " + DefaultConfigPath,
		Store: cfgstore.Descriptor{Why: "no config partition"}}
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
	pc, err := readPartConfig(dev)
	if err != nil {
		say("fulcrum: config partition %s (%s): %v; using the built-in config", label, dev, err)
		log.WithError(err).WithField("device", dev).Warn("config partition unusable")
		builtin.Store.Why = fmt.Sprintf("config partition %s unusable: %v", dev, err)
		return builtin
	}
	for _, n := range pc.Notes {
		say("fulcrum: config partition %s: %s", label, n)
	}
	builtin.Store = cfgstore.Descriptor{Device: dev, Label: label}
	builtin.Overrides = pc.Overrides
	if pc.Config == nil {
		say("fulcrum: config partition %s (%s): no %s on it; using the built-in config", label, dev, ConfigPartFile)
		return builtin
	}
	err = os.MkdirAll(filepath.Dir(partConfigCopy), 0o755)
	if err == nil {
		err = os.WriteFile(partConfigCopy, pc.Config, 0o600)
	}
	if err != nil {
		say("fulcrum: config partition %s (%s): %v; using the built-in config", label, dev, err)
		return builtin
	}
	src := fmt.Sprintf("%s on config partition %s (%s)", pc.From, label, dev)
	return ConfigChoice{Path: partConfigCopy, Source: src, Partition: dev, Store: builtin.Store, Overrides: pc.Overrides}
}

// readPartConfig mounts dev read-only, chooses the config to run from it
// (config.yaml or the newest config applied at runtime) and unmounts.
func readPartConfig(dev string) (cfgstore.Choice, error) {
	if err := os.MkdirAll(configPartMount, 0o755); err != nil {
		return cfgstore.Choice{}, err
	}
	if err := unix.Mount(dev, configPartMount, "vfat", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return cfgstore.Choice{}, fmt.Errorf("mounting vfat read-only: %w", err)
	}
	defer unix.Unmount(configPartMount, 0)
	return cfgstore.Choose(configPartMount)
}

// keepStoreState tells the daemons where applied configs are kept and puts
// the stored operator overrides next to the config lbd reads.
func keepStoreState(log logrus.FieldLogger, choice ConfigChoice) {
	if err := cfgstore.WriteDescriptor(cfgstore.DescriptorPath, choice.Store); err != nil {
		log.WithError(err).Error("config store descriptor not written; applied configs are kept in RAM only")
	}
	if choice.Overrides == nil {
		return
	}
	p := filepath.Join(filepath.Dir(choice.Path), cfgstore.OverridesFile)
	if err := os.WriteFile(p, choice.Overrides, 0o600); err != nil {
		log.WithError(err).Error("stored operator overrides not restored")
	}
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
