package ipvs

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Schedulers lists the IPVS schedulers a kernel can use: the ip_vs_<name>
// modules that modules.dep and modules.builtin under modDir
// (/lib/modules/<release>) name. The kernel loads a scheduler's module when
// a service first asks for it; one it does not have fails only then, with
// ENOENT, so callers check the config against this list first.
func Schedulers(modDir string) (map[string]bool, error) {
	out := map[string]bool{}
	found := false
	for _, name := range []string{"modules.dep", "modules.builtin"} {
		f, err := os.Open(filepath.Join(modDir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("ipvs schedulers: %w", err)
		}
		found = true
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			mod, _, _ := strings.Cut(sc.Text(), ":")
			if s, ok := SchedulerOfModule(mod); ok {
				out[s] = true
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("ipvs schedulers: read %s: %w", name, err)
		}
	}
	if !found {
		return nil, fmt.Errorf("ipvs schedulers: neither modules.dep nor modules.builtin in %s", modDir)
	}
	return out, nil
}

// notSchedulers are the ip_vs_* modules that are not schedulers (protocol
// helpers and persistence engines).
var notSchedulers = map[string]bool{"ftp": true, "pe_sip": true}

// SchedulerOfModule returns the scheduler a module path or name carries
// ("kernel/net/netfilter/ipvs/ip_vs_wrr.ko.xz" → "wrr").
func SchedulerOfModule(mod string) (string, bool) {
	base := path.Base(strings.TrimSpace(mod))
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, suf)
	}
	base = strings.ReplaceAll(strings.TrimSuffix(base, ".ko"), "-", "_")
	name, ok := strings.CutPrefix(base, "ip_vs_")
	if !ok || name == "" || notSchedulers[name] {
		return "", false
	}
	return name, true
}
