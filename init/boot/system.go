package boot

import (
	"bufio"
	"fmt"
	"os"
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
