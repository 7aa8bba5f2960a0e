// Package cfgstore keeps the configs an appliance has applied, and the
// operator overrides (disabled members), where the next boot finds them: on
// the USB/disk image's FAT config partition, or, where there is none (PXE,
// a config given by kernel argument), in RAM until reboot.
//
// # Layout
//
// The store is a directory (Dir, "fulcrum" on the partition, next to the
// operator's config.yaml) of generation files:
//
//	fulcrum/config-00000007.yaml    one applied config
//	fulcrum/overrides-00000003.json one set of operator overrides
//
// Every file is one header line, then the content byte for byte:
//
//	# fulcrum-store v1 gen=7 saved=2026-12-03T10:00:00Z source=apply base=<sha256|none> size=1234 sha256=<hex>
//
// The header is a YAML comment, so a config file can be copied to
// config.yaml (or to a config server) as it is. size and sha256 cover the
// content: a file cut short or scribbled over fails them and is "damaged".
//
// # Why generations and no rename
//
// A write never touches an existing file: it creates the next generation's
// file, writes it, fsyncs it (vfat's fsync writes the file's data, its short
// directory entry and the FAT, then flushes the device), fsyncs the
// directory (the new name's long-name entries are directory buffers: the
// QEMU power-cut test lost a file cut between the two fsyncs), and only
// then deletes generations beyond Keep. Linux vfat's
// rename over an existing file is NOT atomic on disk: vfat_rename rewrites
// the target's directory entry in place (written back with the renamed
// inode, which a directory fsync does not flush), removes the source's
// entries and frees the old clusters as separate, unordered buffer writes,
// so a power cut can leave the name pointing at freed clusters, or two
// entries sharing one chain. Creating a new file and checking it on read
// needs no ordering between metadata writes: whatever a power cut leaves,
// the newest generation that passes its checksum is a complete config that
// was applied, and every older one is untouched. A cut before the new
// file's fsync leaves at most a damaged newest file, which readers skip
// (the old config runs) and the next save deletes.
//
// # Which config boots (see Choose)
//
// The newest undamaged generation runs, unless the operator has changed
// config.yaml on the partition since it was saved: every generation records
// base, the sha256 of config.yaml as it was when the generation was written
// (none: no config.yaml). A config.yaml whose hash is not that base was
// edited by hand (on a laptop) and wins; the store's generations stay for
// rollback.
package cfgstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// Dir is the store's directory under the root (the partition).
	Dir = "fulcrum"
	// SeedFile is the operator's config on the partition.
	SeedFile = "config.yaml"
	// DefaultKeep is how many configs are kept when the config does not say.
	DefaultKeep = 5
	// keepOverrides: the current overrides and the previous ones.
	keepOverrides = 2
	// MaxSize bounds a stored file (the local API takes 1 MiB configs).
	MaxSize = 1<<20 + 4096

	headerMagic = "# fulcrum-store v1 "
	noBase      = "none"
)

// Kind is what a generation file holds.
type Kind string

const (
	KindConfig    Kind = "config"
	KindOverrides Kind = "overrides"
)

func (k Kind) ext() string {
	if k == KindOverrides {
		return ".json"
	}
	return ".yaml"
}

// Source says why a config was saved.
type Source string

const (
	SourceApply    Source = "apply"
	SourceRollback Source = "rollback"
	SourceBoot     Source = "boot" // the config that ran before the first save
	SourcePeer     Source = "peer" // offered by the HA peer
)

// Meta describes a save.
type Meta struct {
	Source Source
	// Replaces is the config running before this one. When the store's
	// newest config is not it (nothing saved yet, or config.yaml edited by
	// hand), it is saved first (SourceBoot), so a rollback can reach it.
	Replaces []byte
	// Time of the save (zero: now).
	Time time.Time
}

// Entry is one stored generation.
type Entry struct {
	Kind   Kind
	Gen    uint64
	File   string // name in the store directory
	Saved  time.Time
	Source Source
	Base   string // sha256 of config.yaml when saved, or "none"
	Size   int
	SHA256 string
	// Damaged says why the file cannot be used ("" when it can).
	Damaged string
}

// Store is one config store. Its methods are safe for concurrent use.
type Store struct {
	root       string
	mount      func() (unmount func() error, err error)
	keep       int
	persistent bool
	where      string
	// Pause, when set, is called at each step of a write (test hook: the
	// QEMU power-cut test slows writes down to cut power between steps).
	Pause func(step string)

	mu sync.Mutex
}

// NewDir is a store in directory root (created when missing). persistent
// says whether root survives a reboot; where names it for the operator
// ("RAM until reboot: booted by PXE").
func NewDir(root string, keep int, persistent bool, where string) *Store {
	if keep < 1 {
		keep = DefaultKeep
	}
	return &Store{root: root, keep: keep, persistent: persistent, where: where}
}

// Persistent tells whether a saved config survives a reboot.
func (s *Store) Persistent() bool { return s.persistent }

// Where names the store for messages.
func (s *Store) Where() string { return s.where }

// Keep is how many configs the store keeps.
func (s *Store) Keep() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keep
}

// SetKeep changes how many configs are kept (from the config's
// management.config_history; below 1: DefaultKeep); the next save prunes.
func (s *Store) SetKeep(n int) {
	if n < 1 {
		n = DefaultKeep
	}
	s.mu.Lock()
	s.keep = n
	s.mu.Unlock()
}

func (s *Store) pause(step string) {
	if s.Pause != nil {
		s.Pause(step)
	}
}

// open makes the store's directory reachable (mounting the partition) and
// returns the function that releases it.
func (s *Store) open() (dir string, release func() error, err error) {
	release = func() error { return nil }
	if s.mount != nil {
		if release, err = s.mount(); err != nil {
			return "", nil, err
		}
	}
	return filepath.Join(s.root, Dir), release, nil
}

// withDir runs f with the store's directory reachable; f's error comes
// first, then the release's.
func (s *Store) withDir(f func(dir string) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir, release, err := s.open()
	if err != nil {
		return err
	}
	err = f(dir)
	if rerr := release(); err == nil && rerr != nil {
		err = rerr
	}
	return err
}

// Save stores cfg as the newest config generation and deletes those beyond
// Keep. It returns the new entry. On error the store holds what it held
// before (a partly written file is removed, or left damaged if even that
// fails, which readers skip).
func (s *Store) Save(cfg []byte, m Meta) (Entry, error) {
	if m.Time.IsZero() {
		m.Time = time.Now()
	}
	var e Entry
	err := s.withDir(func(dir string) error {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("config store %s: %w", s.where, err)
		}
		if err := syncDir(s.root); err != nil {
			return fmt.Errorf("config store %s: %w", s.where, err)
		}
		base := s.seedHash()
		entries, err := scan(dir, KindConfig)
		if err != nil {
			return err
		}
		next := nextGen(entries)
		var bootFile string
		if m.Replaces != nil && !sameAsNewest(dir, entries, m.Replaces) {
			be, err := s.write(dir, KindConfig, next, m.Replaces, SourceBoot, base, m.Time)
			if err != nil {
				return err
			}
			bootFile = be.File
			next++
		}
		if e, err = s.write(dir, KindConfig, next, cfg, m.Source, base, m.Time); err != nil {
			if bootFile != "" { // all or nothing
				os.Remove(filepath.Join(dir, bootFile))
				_ = syncDir(dir)
			}
			return err
		}
		s.pause("written")
		return s.prune(dir, KindConfig, s.keep)
	})
	return e, err
}

// Remove deletes config generation gen (an apply undone because the HA
// peer refused it), so the store is as before that apply.
func (s *Store) Remove(gen uint64) error {
	return s.withDir(func(dir string) error {
		p := filepath.Join(dir, fileName(KindConfig, gen))
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s from %s: %w", fileName(KindConfig, gen), s.where, err)
		}
		return syncDir(dir)
	})
}

// SaveOverrides stores the operator overrides (JSON) as the newest
// overrides generation.
func (s *Store) SaveOverrides(b []byte) error {
	return s.withDir(func(dir string) error {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("config store %s: %w", s.where, err)
		}
		entries, err := scan(dir, KindOverrides)
		if err != nil {
			return err
		}
		if _, err := s.write(dir, KindOverrides, nextGen(entries), b, SourceApply, noBase, time.Now()); err != nil {
			return err
		}
		return s.prune(dir, KindOverrides, keepOverrides)
	})
}

// Overrides returns the newest undamaged overrides (nil, nil: none saved).
func (s *Store) Overrides() ([]byte, error) {
	var out []byte
	err := s.withDir(func(dir string) error {
		entries, err := scan(dir, KindOverrides)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Damaged == "" {
				out, _, err = readEntry(dir, e.File)
				return err
			}
		}
		return nil
	})
	return out, err
}

// List returns the stored configs, newest first (index 0 is the current
// one); damaged files are listed with Damaged set.
func (s *Store) List() ([]Entry, error) {
	var out []Entry
	err := s.withDir(func(dir string) error {
		var err error
		out, err = scan(dir, KindConfig)
		return err
	})
	return out, err
}

// Load returns the config back generations before the newest (0: the
// newest), counting damaged files too, so the number an operator reads in
// List is the one that loads.
func (s *Store) Load(back int) ([]byte, Entry, error) {
	var b []byte
	var e Entry
	err := s.withDir(func(dir string) error {
		entries, err := scan(dir, KindConfig)
		if err != nil {
			return err
		}
		if back < 0 || back >= len(entries) {
			return &MissingError{Back: back, Have: len(entries)}
		}
		e = entries[back]
		if e.Damaged != "" {
			return fmt.Errorf("stored config %d back (%s) is damaged: %s", back, e.File, e.Damaged)
		}
		b, _, err = readEntry(dir, e.File)
		return err
	})
	return b, e, err
}

// MissingError: no config that many generations back.
type MissingError struct{ Back, Have int }

func (e *MissingError) Error() string {
	if e.Have <= 1 {
		return fmt.Sprintf("no stored config %d back: the store holds %d config(s) (nothing applied since the store was started)", e.Back, e.Have)
	}
	return fmt.Sprintf("no stored config %d back: the store holds %d configs, 0..%d back", e.Back, e.Have, e.Have-1)
}

// seedHash is the sha256 of config.yaml next to the store ("none").
func (s *Store) seedHash() string {
	b, err := os.ReadFile(filepath.Join(s.root, SeedFile))
	if err != nil {
		return noBase
	}
	return hashHex(b)
}

func hashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func sameAsNewest(dir string, entries []Entry, b []byte) bool {
	for _, e := range entries {
		if e.Damaged == "" {
			return e.SHA256 == hashHex(b)
		}
	}
	return false
}

func nextGen(entries []Entry) uint64 {
	if len(entries) == 0 {
		return 1
	}
	return entries[0].Gen + 1 // entries are newest first, damaged included
}

func fileName(k Kind, gen uint64) string { return fmt.Sprintf("%s-%08d%s", k, gen, k.ext()) }

// write creates the generation file (never an existing one), fsyncs it and
// the directory.
func (s *Store) write(dir string, k Kind, gen uint64, content []byte, src Source, base string, t time.Time) (Entry, error) {
	e := Entry{Kind: k, Gen: gen, File: fileName(k, gen), Saved: t.UTC().Truncate(time.Second), Source: src, Base: base, Size: len(content), SHA256: hashHex(content)}
	path := filepath.Join(dir, e.File)
	fail := func(err error) (Entry, error) {
		os.Remove(path)
		_ = syncDir(dir)
		return Entry{}, fmt.Errorf("saving %s to %s: %w", e.File, s.where, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail(err)
	}
	data := append([]byte(header(e)), content...)
	half := len(data) / 2
	if _, err := f.Write(data[:half]); err != nil {
		f.Close()
		return fail(err)
	}
	s.pause("half-written")
	if _, err := f.Write(data[half:]); err != nil {
		f.Close()
		return fail(err)
	}
	s.pause("unsynced")
	if err := f.Sync(); err != nil {
		f.Close()
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	s.pause("file-synced")
	if err := syncDir(dir); err != nil {
		return fail(err)
	}
	return e, nil
}

func header(e Entry) string {
	return fmt.Sprintf("%sgen=%d saved=%s source=%s base=%s size=%d sha256=%s\n", headerMagic, e.Gen, e.Saved.Format(time.RFC3339), e.Source, e.Base, e.Size, e.SHA256)
}

// prune deletes every file of kind k but the newest keep undamaged ones.
func (s *Store) prune(dir string, k Kind, keep int) error {
	entries, err := scan(dir, k)
	if err != nil {
		return err
	}
	kept, removed := 0, false
	for _, e := range entries {
		if e.Damaged == "" && kept < keep {
			kept++
			continue
		}
		s.pause("pruning")
		if err := os.Remove(filepath.Join(dir, e.File)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing old %s from %s: %w", e.File, s.where, err)
		}
		removed = true
	}
	if removed {
		return syncDir(dir)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// scan lists the files of kind k in dir, newest generation first, each
// checked (a missing dir is an empty store).
func scan(dir string, k Kind) ([]Entry, error) {
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading config store %s: %w", dir, err)
	}
	var out []Entry
	for _, de := range des {
		gen, ok := parseName(k, de.Name())
		if !ok {
			continue
		}
		_, e, err := readEntry(dir, de.Name())
		if err != nil {
			e = Entry{Kind: k, Gen: gen, File: de.Name(), Damaged: err.Error()}
		} else if e.Gen != gen {
			e.Damaged = fmt.Sprintf("header says generation %d, name says %d", e.Gen, gen)
		}
		e.Kind, e.Gen, e.File = k, gen, de.Name()
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Gen > out[j].Gen })
	return out, nil
}

func parseName(k Kind, name string) (uint64, bool) {
	rest, ok := strings.CutPrefix(strings.ToLower(name), string(k)+"-")
	if !ok {
		return 0, false
	}
	num, ok := strings.CutSuffix(rest, k.ext())
	if !ok || len(num) == 0 {
		return 0, false
	}
	gen, err := strconv.ParseUint(num, 10, 64)
	return gen, err == nil
}

// readEntry reads and checks one generation file.
func readEntry(dir, name string) ([]byte, Entry, error) {
	b, err := readLimited(filepath.Join(dir, name))
	if err != nil {
		return nil, Entry{}, err
	}
	return Parse(b)
}

func readLimited(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Size() > MaxSize {
		return nil, fmt.Errorf("%d bytes, more than a stored file may hold", fi.Size())
	}
	return os.ReadFile(path)
}

// Parse checks a generation file's header against its content and returns
// the content.
func Parse(b []byte) ([]byte, Entry, error) {
	var e Entry
	line, content, ok := bytes.Cut(b, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte(headerMagic)) {
		return nil, e, errors.New("no store header (cut short before its first line ended?)")
	}
	fields := map[string]string{}
	for _, f := range strings.Fields(string(line[len(headerMagic):])) {
		k, v, _ := strings.Cut(f, "=")
		fields[k] = v
	}
	var err error
	if e.Gen, err = strconv.ParseUint(fields["gen"], 10, 64); err != nil {
		return nil, e, fmt.Errorf("header: bad gen %q", fields["gen"])
	}
	if e.Size, err = strconv.Atoi(fields["size"]); err != nil {
		return nil, e, fmt.Errorf("header: bad size %q", fields["size"])
	}
	e.Saved, _ = time.Parse(time.RFC3339, fields["saved"])
	e.Source, e.Base, e.SHA256 = Source(fields["source"]), fields["base"], fields["sha256"]
	if len(content) != e.Size {
		return nil, e, fmt.Errorf("%d bytes of content, header says %d (cut short by a power loss while saving?)", len(content), e.Size)
	}
	if got := hashHex(content); got != e.SHA256 {
		return nil, e, fmt.Errorf("content sha256 %s…, header says %s…", got[:12], trim(e.SHA256, 12))
	}
	return content, e, nil
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
