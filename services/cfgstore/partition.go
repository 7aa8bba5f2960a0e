package cfgstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Where init tells the daemons which store this boot has.
const (
	// DescriptorPath is written by init once it has chosen the config.
	DescriptorPath = "/run/fulcrum/store.json"
	// RAMDir holds the store when there is no config partition.
	RAMDir = "/run/fulcrum/store"
	// OverridesFile is where, next to the running config, lbd keeps the
	// operator overrides (init puts the stored ones there at boot).
	OverridesFile = "overrides.json"
	// mountPoint is where the partition is mounted for each store access.
	mountPoint = "/run/fulcrum/store-part"
)

// Descriptor says where this boot's configs are stored.
type Descriptor struct {
	// Device is the config partition (/dev/sdb3); "" when there is none.
	Device string `json:"device,omitempty"`
	// Label of the partition (for messages).
	Label string `json:"label,omitempty"`
	// Why is, without a partition, why nothing is persisted ("the config
	// came from a config server (PXE)").
	Why string `json:"why,omitempty"`
}

// WriteDescriptor writes d to path (init, before the daemons start).
func WriteDescriptor(path string, d Descriptor) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Open returns the store the descriptor at path names, keeping keep
// configs. A missing descriptor (no init: a test, a host run) is a RAM
// store.
func Open(path string, keep int) (*Store, error) {
	var d Descriptor
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.Why = "no config partition"
	case err != nil:
		return nil, fmt.Errorf("config store descriptor: %w", err)
	default:
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("config store descriptor %s: %w", path, err)
		}
	}
	if d.Device == "" {
		why := d.Why
		if why == "" {
			why = "no config partition"
		}
		return NewDir(RAMDir, keep, false, "RAM only ("+why+")"), nil
	}
	return NewPartition(d.Device, d.Label, mountPoint, keep), nil
}

// NewPartition is a store on the FAT partition dev, mounted at mnt for each
// access and unmounted after it (so the partition is clean between writes
// and the stick may be pulled).
func NewPartition(dev, label, mnt string, keep int) *Store {
	s := NewDir(mnt, keep, true, fmt.Sprintf("config partition %s (%s)", label, dev))
	s.mount = func() (func() error, error) {
		if err := os.MkdirAll(mnt, 0o700); err != nil {
			return nil, err
		}
		if err := unix.Mount(dev, mnt, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "umask=077"); err != nil {
			return nil, fmt.Errorf("mounting config partition %s read-write: %w", dev, err)
		}
		return func() error {
			if err := unix.Unmount(mnt, 0); err != nil {
				return fmt.Errorf("unmounting config partition %s: %w", dev, err)
			}
			return nil
		}, nil
	}
	return s
}

// Choice is the config a boot should run from a store's root.
type Choice struct {
	// Config is the content to run (nil: no config here; use the built-in).
	Config []byte
	// From names it: "config.yaml" or "fulcrum/config-00000007.yaml".
	From string
	// Notes are for the console (damaged files skipped, config.yaml
	// edited by hand since the last apply).
	Notes []string
	// Overrides are the newest saved operator overrides (nil: none).
	Overrides []byte
}

// Choose picks the config to boot from a store root (the mounted
// partition): the newest undamaged generation, unless config.yaml changed
// since that generation was saved (edited by hand: it wins), else
// config.yaml.
func Choose(root string) (Choice, error) {
	var c Choice
	seed, err := os.ReadFile(filepath.Join(root, SeedFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return c, fmt.Errorf("reading %s: %w", SeedFile, err)
	}
	seedHash := noBase
	if err == nil {
		seedHash = hashHex(seed)
		c.Config, c.From = seed, SeedFile
	}
	dir := filepath.Join(root, Dir)
	entries, err := scan(dir, KindConfig)
	if err != nil {
		return c, err
	}
	for _, e := range entries {
		if e.Damaged != "" {
			c.Notes = append(c.Notes, fmt.Sprintf("%s/%s skipped: %s", Dir, e.File, e.Damaged))
			continue
		}
		if e.Base != seedHash {
			what, runs := "changed", SeedFile
			if c.Config == nil {
				what, runs = "removed", "the built-in config"
			}
			c.Notes = append(c.Notes, fmt.Sprintf("%s %s since %s/%s was applied: running %s (the applied configs stay in %s/ for rollback)", SeedFile, what, Dir, e.File, runs, Dir))
			break
		}
		b, _, err := readEntry(dir, e.File)
		if err != nil {
			c.Notes = append(c.Notes, fmt.Sprintf("%s/%s skipped: %v", Dir, e.File, err))
			continue
		}
		c.Config, c.From = b, Dir+"/"+e.File
		break
	}
	ovs, err := scan(dir, KindOverrides)
	if err != nil {
		return c, err
	}
	for _, e := range ovs {
		if e.Damaged != "" {
			c.Notes = append(c.Notes, fmt.Sprintf("%s/%s skipped: %s", Dir, e.File, e.Damaged))
			continue
		}
		if b, _, err := readEntry(dir, e.File); err == nil {
			c.Overrides = b
			break
		}
	}
	return c, nil
}
