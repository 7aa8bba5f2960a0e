package boot

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

var earlyMounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "gid=5,mode=620,ptmxmode=666"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"bpf", "/sys/fs/bpf", "bpf", 0, ""},
}

// mountAll mounts the usual pseudo filesystems; one that is already mounted
// (EBUSY) is fine.
func mountAll(log logrus.FieldLogger) error {
	var errs []string
	for _, m := range earlyMounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			errs = append(errs, fmt.Sprintf("mkdir %s: %v", m.target, err))
			continue
		}
		if err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil && err != unix.EBUSY {
			errs = append(errs, fmt.Sprintf("mount %s on %s: %v", m.fstype, m.target, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("mounts: %s", strings.Join(errs, "; "))
	}
	return nil
}

// moduleParams are parameters for modules that need them: bonding would
// otherwise create a stray bond0.
var moduleParams = map[string]string{
	"bonding": "max_bonds=0",
}

// loadModules loads each named module with its dependencies (modules.dep),
// compressed or not. It loads everything it can and reports what failed.
func loadModules(log logrus.FieldLogger, names []string) error {
	prober, err := kmodule.NewProber(kmodule.ProbeOpts{})
	if err != nil {
		return fmt.Errorf("modules: %w", err)
	}
	var failed []string
	loaded := 0
	for _, n := range names {
		if err := prober.Probe(n, moduleParams[n]); err != nil {
			log.WithField("module", n).WithError(err).Error("module load failed")
			failed = append(failed, n)
			continue
		}
		loaded++
	}
	log.WithField("count", loaded).Info("kernel modules loaded")
	if len(failed) > 0 {
		return fmt.Errorf("modules failed to load: %s", strings.Join(failed, ", "))
	}
	return nil
}

// readList reads a file with one name per line (# comments allowed).
func readList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// pciBus lists the PCI devices the kernel found before /init ran (PCI is
// enumerated at boot, before init starts).
const pciBus = "/sys/bus/pci/devices"

// readAliases reads a modules.alias ("alias PATTERN MODULE" lines) into
// each module's alias patterns.
func readAliases(path string) (map[string][]string, error) {
	lines, err := readList(path)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "alias" {
			return nil, fmt.Errorf("%s: %q is not \"alias PATTERN MODULE\"", path, l)
		}
		out[f[2]] = append(out[f[2]], f[1])
	}
	return out, nil
}

// deviceModaliases reads the modalias of every device under dir.
func deviceModaliases(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*", "modalias"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, strings.TrimSpace(string(b)))
	}
	return out, nil
}

// withoutAbsentPCIDrivers drops from names the PCI drivers for hardware
// this machine lacks: a module with PCI aliases, none matching a present
// device's modalias, and otherwise only auxiliary-bus aliases (devices a
// PCI driver creates itself, like mlx5_core's auxiliary:mlx5_core.eth). Anything else (no aliases, other
// buses, an alias pattern that does not parse) is kept: loading a driver in
// vain costs time, missing one costs the NIC.
func withoutAbsentPCIDrivers(names []string, aliases map[string][]string, devices []string) (load, skipped []string) {
	for _, n := range names {
		if pciDriver(aliases[n]) && !matchesAny(aliases[n], devices) {
			skipped = append(skipped, n)
			continue
		}
		load = append(load, n)
	}
	return load, skipped
}

func pciDriver(patterns []string) bool {
	pci := false
	for _, p := range patterns {
		switch {
		case strings.HasPrefix(p, "pci:"):
			pci = true
		case strings.HasPrefix(p, "auxiliary:"):
		default:
			return false
		}
	}
	return pci
}

func matchesAny(patterns, devices []string) bool {
	for _, p := range patterns {
		for _, d := range devices {
			if ok, err := path.Match(p, d); ok || err != nil {
				return true
			}
		}
	}
	return false
}

// presentHardwareOnly is names without the PCI drivers for absent hardware
// (withoutAbsentPCIDrivers), using the image's modules.alias and the PCI
// devices in sysfs. When either cannot be read, names are kept whole.
func presentHardwareOnly(log logrus.FieldLogger, names []string) []string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		log.WithError(err).Warn("uname; loading every listed module")
		return names
	}
	aliasPath := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]), "modules.alias")
	aliases, err := readAliases(aliasPath)
	if err != nil {
		log.WithError(err).Warn("no module aliases; loading every listed module")
		return names
	}
	devices, err := deviceModaliases(pciBus)
	if err != nil || len(devices) == 0 {
		log.WithError(err).Warn("no PCI devices found; loading every listed module")
		return names
	}
	load, skipped := withoutAbsentPCIDrivers(names, aliases, devices)
	if len(skipped) > 0 {
		log.WithField("modules", strings.Join(skipped, ",")).Info("not loading drivers for hardware this machine lacks")
	}
	return load
}
