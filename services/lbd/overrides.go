package lbd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/services/cfgstore"
)

// Operator overrides (disabled members) outlive an lbd restart: every
// change is written next to the config (mode 0600, atomically) and lbd
// reads the file before its first apply. A member the config no longer has
// is dropped when the file is read.

// OverridesPath is where the overrides of the config at configPath are
// kept.
func OverridesPath(configPath string) string {
	return filepath.Join(filepath.Dir(configPath), cfgstore.OverridesFile)
}

// overridesFile is the file's form.
type overridesFile struct {
	Disabled []config.MemberRef `json:"disabled"`
}

// EncodeOverrides is ov in the overrides file's form (JSON, members
// sorted); nothing overridden is {"disabled": []}.
func EncodeOverrides(ov engine.Overrides) []byte {
	f := overridesFile{Disabled: []config.MemberRef{}}
	for r, off := range ov.Disabled {
		if off {
			f.Disabled = append(f.Disabled, r)
		}
	}
	sort.Slice(f.Disabled, func(i, j int) bool { return f.Disabled[i].String() < f.Disabled[j].String() })
	b, _ := json.MarshalIndent(f, "", "  ") // MemberRef marshals without error
	return append(b, '\n')
}

// SaveOverrides writes ov to path (removes it when nothing is overridden).
func SaveOverrides(path string, ov engine.Overrides) error {
	n := 0
	for _, off := range ov.Disabled {
		if off {
			n++
		}
	}
	if n == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing overrides %s: %w", path, err)
		}
		return nil
	}
	if err := writeAtomic(path, EncodeOverrides(ov)); err != nil {
		return fmt.Errorf("writing overrides %s: %w", path, err)
	}
	return nil
}

// LoadOverrides reads the overrides at path for cfg; a missing file is no
// overrides. Members cfg does not have are left out and named in dropped.
func LoadOverrides(path string, cfg *config.Config) (ov engine.Overrides, dropped []string, err error) {
	ov = engine.Overrides{Disabled: map[config.MemberRef]bool{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ov, nil, nil
	}
	if err != nil {
		return ov, nil, fmt.Errorf("reading overrides: %w", err)
	}
	var f overridesFile
	if err := json.Unmarshal(b, &f); err != nil {
		return ov, nil, fmt.Errorf("overrides %s: %w", path, err)
	}
	have := map[config.MemberRef]bool{}
	for name, p := range cfg.Pools {
		if p == nil {
			continue
		}
		for i := range p.Members {
			have[p.Members[i].Ref(name)] = true
		}
	}
	for _, r := range f.Disabled {
		if have[r] {
			ov.Disabled[r] = true
		} else {
			dropped = append(dropped, r.String())
		}
	}
	return ov, dropped, nil
}
