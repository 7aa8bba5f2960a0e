package engine

import (
	"errors"
	"sort"
	"strings"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
)

// CheckSchedulers refuses IPVS virtual servers whose scheduler the kernel
// (named by kernel, e.g. its release) does not have, one field error each,
// so a config asking for one fails at check or apply with its field rather
// than with the kernel's ENOENT half-way through an apply.
func CheckSchedulers(cfg *config.Config, available map[string]bool, kernel string) error {
	var errs []error
	for i := range cfg.VirtualServers {
		vs := &cfg.VirtualServers[i]
		if vs.Mode.L7() || available[string(vs.Scheduler)] {
			continue
		}
		errs = append(errs, cfg.FieldError(cfgerr.Join(cfgerr.Index("virtual_servers", i), "scheduler"),
			"scheduler %q is not in kernel %s (it has: %s)", vs.Scheduler, kernel, list(available)))
	}
	return errors.Join(errs...)
}

func list(set map[string]bool) string {
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
