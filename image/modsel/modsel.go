// Package modsel picks the kernel modules the appliance needs out of a kernel
// package: it reads every module's .modinfo, follows depends= (and softdep
// pre/post) to the dependency closure of the wanted set, and writes the
// modules.dep that the package itself lacks (Debian runs depmod at install
// time, which we never do).
package modsel

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Module is one loadable module in the kernel tree.
type Module struct {
	Name    string   // canonical name (underscores)
	Path    string   // relative to lib/modules/<release>, e.g. kernel/net/ipv4/ipip.ko
	Depends []string // canonical names from depends=
	// Softdep are the modules named by softdep= pre:/post:, resolved
	// through aliases (softdep=pre: crc32c means crc32c_generic). They are
	// written into modules.dep as dependencies, because loaders that read
	// only modules.dep (u-root's kmodule) would otherwise load libcrc32c
	// before any crc32c provider and fail with ENOENT.
	Softdep []string
	Aliases []string
}

// Index is every module of one kernel, by canonical name.
type Index struct {
	Dir     string // lib/modules/<release>
	Modules map[string]*Module
	Builtin map[string]bool
}

// Canonical normalises a module name: dashes become underscores.
func Canonical(name string) string { return strings.ReplaceAll(name, "-", "_") }

var moduleSuffixes = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

func stripSuffix(p string) (string, bool) {
	for _, s := range moduleSuffixes {
		if strings.HasSuffix(p, s) {
			return strings.TrimSuffix(p, s), true
		}
	}
	return p, false
}

// Scan reads every module below dir (lib/modules/<release>).
func Scan(dir string) (*Index, error) {
	idx := &Index{Dir: dir, Modules: map[string]*Module{}, Builtin: map[string]bool{}}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		base, ok := stripSuffix(filepath.Base(p))
		if !ok {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := readModinfo(p)
		if err != nil {
			return fmt.Errorf("module %s: %w", rel, err)
		}
		m := &Module{Name: Canonical(base), Path: rel}
		if n := info["name"]; len(n) > 0 && n[0] != "" {
			m.Name = Canonical(n[0])
		}
		for _, d := range info["depends"] {
			for _, dep := range strings.Split(d, ",") {
				if dep = strings.TrimSpace(dep); dep != "" {
					m.Depends = append(m.Depends, Canonical(dep))
				}
			}
		}
		for _, s := range info["softdep"] {
			m.Softdep = append(m.Softdep, parseSoftdep(s)...)
		}
		m.Aliases = info["alias"]
		idx.Modules[m.Name] = m
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scanning modules in %s: %w", dir, err)
	}
	idx.resolveSoftdeps()
	if b, err := os.ReadFile(filepath.Join(dir, "modules.builtin")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if base, ok := stripSuffix(filepath.Base(strings.TrimSpace(line))); ok {
				idx.Builtin[Canonical(base)] = true
			}
		}
	}
	return idx, nil
}

// resolveSoftdeps replaces softdep names by the module that provides them:
// the module of that name, else one whose alias matches (preferring a
// "generic" implementation, which loads on any CPU); unresolvable names are
// dropped.
func (idx *Index) resolveSoftdeps() {
	byAlias := map[string][]string{}
	for _, m := range idx.Modules {
		for _, a := range m.Aliases {
			byAlias[a] = append(byAlias[a], m.Name)
		}
	}
	for _, m := range idx.Modules {
		var out []string
		for _, name := range m.Softdep {
			if _, ok := idx.Modules[name]; ok {
				out = append(out, name)
				continue
			}
			cands := append(append([]string{}, byAlias[name]...), byAlias["crypto-"+name]...)
			if len(cands) == 0 {
				continue
			}
			sort.Slice(cands, func(i, j int) bool {
				gi, gj := strings.Contains(cands[i], "generic"), strings.Contains(cands[j], "generic")
				if gi != gj {
					return gi
				}
				return cands[i] < cands[j]
			})
			out = append(out, cands[0])
		}
		m.Softdep = out
	}
}

// parseSoftdep reads "pre: a b post: c" into [a b c].
func parseSoftdep(s string) []string {
	var out []string
	for _, f := range strings.Fields(s) {
		if strings.HasSuffix(f, ":") {
			continue
		}
		out = append(out, Canonical(f))
	}
	return out
}

// readModinfo returns the key=value pairs of a module's .modinfo section,
// decompressing .ko.xz/.ko.zst/.ko.gz first.
func readModinfo(path string) (map[string][]string, error) {
	data, err := readModule(path)
	if err != nil {
		return nil, err
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not an ELF object: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("no .modinfo section")
	}
	raw, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo: %w", err)
	}
	info := map[string][]string{}
	for _, kv := range bytes.Split(raw, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if ok {
			info[k] = append(info[k], v)
		}
	}
	return info, nil
}

// readModule returns a module's ELF bytes, whatever its compression.
func readModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".xz"):
		xr, err := xz.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		r = xr
	case strings.HasSuffix(path, ".zst"):
		zr, err := zstd.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(path, ".gz"):
		gr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		r = gr
	}
	return io.ReadAll(r)
}

// Selection is a dependency-closed set of modules.
type Selection struct {
	Index   *Index
	Wanted  []string // the names asked for that exist (or are built in)
	Missing []string // optional names this kernel does not have
	Modules []*Module
}

// Select returns the closure of required and optional module names. A
// required name that is neither a module nor built in is an error; a missing
// optional one is recorded in Missing.
func (idx *Index) Select(required, optional []string) (*Selection, error) {
	sel := &Selection{Index: idx}
	seen := map[string]bool{}
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		if seen[name] || idx.Builtin[name] {
			return nil
		}
		m, ok := idx.Modules[name]
		if !ok {
			return fmt.Errorf("module %s (needed by %s) is not in %s", name, strings.Join(chain, " → "), idx.Dir)
		}
		seen[name] = true
		for _, d := range m.deps() {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		sel.Modules = append(sel.Modules, m)
		return nil
	}
	for _, group := range []struct {
		names    []string
		required bool
	}{{required, true}, {optional, false}} {
		for _, n := range group.names {
			c := Canonical(n)
			if _, ok := idx.Modules[c]; !ok && !idx.Builtin[c] {
				if group.required {
					return nil, fmt.Errorf("module %s is neither a module nor built into kernel %s", n, filepath.Base(idx.Dir))
				}
				sel.Missing = append(sel.Missing, c)
				continue
			}
			sel.Wanted = append(sel.Wanted, c)
			if err := visit(c, []string{"wanted"}); err != nil {
				return nil, err
			}
		}
	}
	sort.Slice(sel.Modules, func(i, j int) bool { return sel.Modules[i].Path < sel.Modules[j].Path })
	return sel, nil
}

// deps are the modules that must load before m: softdeps first, then hard
// dependencies.
func (m *Module) deps() []string {
	return append(append([]string{}, m.Softdep...), m.Depends...)
}

// ModulesDep renders modules.dep for the selection in depmod's format:
// "path: dep-path dep-path", with the full transitive closure of hard
// dependencies, deepest last (the order modprobe loads in reverse).
func (s *Selection) ModulesDep() string {
	var b strings.Builder
	for _, m := range s.Modules {
		var deps []string
		seen := map[string]bool{}
		var walk func(n string)
		walk = func(n string) {
			dm, ok := s.Index.Modules[n]
			if !ok || seen[n] {
				return
			}
			seen[n] = true
			deps = append(deps, dm.Path)
			for _, d := range dm.deps() {
				walk(d)
			}
		}
		for _, d := range m.deps() {
			walk(d)
		}
		fmt.Fprintf(&b, "%s:", m.Path)
		for _, d := range deps {
			fmt.Fprintf(&b, " %s", d)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ModulesAlias is a modules.alias for the selection: "alias PATTERN NAME"
// for every alias a selected module declares (init loads a PCI driver only
// when a present device matches one of its aliases).
func (s *Selection) ModulesAlias() string {
	var b strings.Builder
	for _, m := range s.Modules {
		for _, a := range m.Aliases {
			fmt.Fprintf(&b, "alias %s %s\n", a, m.Name)
		}
	}
	return b.String()
}

// Size is the total size of the selected module files in bytes.
func (s *Selection) Size() int64 {
	var n int64
	for _, m := range s.Modules {
		if fi, err := os.Stat(filepath.Join(s.Index.Dir, m.Path)); err == nil {
			n += fi.Size()
		}
	}
	return n
}
