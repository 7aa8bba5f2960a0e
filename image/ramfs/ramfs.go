// Package ramfs assembles the appliance initramfs with u-root's mkuimage as a
// Go library: our init and daemons compiled into one busybox-style binary,
// plus the kernel modules, their modules.dep and the appliance config.
package ramfs

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// Paths inside the initramfs that init and the daemons agree on.
const (
	ConfigPath      = "etc/fulcrum/config.yaml"
	ModuleListPath  = "etc/fulcrum/modules"
	BuildInfoPath   = "etc/fulcrum/build-info"
	ModulesRootPath = "lib/modules"
)

// Spec is what goes into the initramfs.
type Spec struct {
	// Commands are Go package paths built into the busybox binary; the one
	// whose last element is "init" becomes /init.
	Commands []string
	// Shell is the command linked to /bin/sh (for the maintenance console).
	Shell string
	// Files are extra records (modules, config, ...).
	Files []cpio.Record
	// TempDir is where the Go build happens.
	TempDir string
	// ModuleDir is the directory of the go.mod the commands are built from.
	ModuleDir string
	// Log receives progress lines; may be nil.
	Log func(format string, args ...any)
}

// FileRecord reads a host file into a record at dest (mode kept).
func FileRecord(src, dest string) (cpio.Record, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return cpio.Record{}, fmt.Errorf("initramfs file %s: %w", src, err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return cpio.Record{}, fmt.Errorf("initramfs file %s: %w", src, err)
	}
	return cpio.StaticRecord(data, cpio.Info{Name: dest, Mode: cpio.S_IFREG | uint64(fi.Mode().Perm())}), nil
}

// WithParents adds directory records for every parent of the given records
// that is not already present, so the archive unpacks on any kernel.
func WithParents(recs []cpio.Record) []cpio.Record {
	have := map[string]bool{}
	for _, r := range recs {
		have[r.Name] = true
	}
	var out []cpio.Record
	for _, r := range recs {
		for d := path.Dir(r.Name); d != "." && d != "/" && !have[d]; d = path.Dir(d) {
			have[d] = true
			out = append(out, cpio.Directory(d, 0o755))
		}
	}
	// parents must come before children
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return append(sortDirs(out), recs...)
}

func sortDirs(d []cpio.Record) []cpio.Record {
	// shorter paths first is enough for parents-before-children
	for i := 1; i < len(d); i++ {
		for j := i; j > 0 && strings.Count(d[j].Name, "/") < strings.Count(d[j-1].Name, "/"); j-- {
			d[j], d[j-1] = d[j-1], d[j]
		}
	}
	return d
}

// Build writes the gzip-compressed initramfs to out.
func Build(spec Spec, out string) error {
	logf := spec.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(spec.TempDir, 0o755); err != nil {
		return fmt.Errorf("initramfs temp dir: %w", err)
	}
	base := uimage.DefaultRamfs()
	for _, r := range WithParents(spec.Files) {
		if _, ok := base.Get(r.Name); ok && r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			continue
		}
		if err := base.WriteRecord(r); err != nil {
			return fmt.Errorf("initramfs record %s: %w", r.Name, err)
		}
	}
	var initCmd string
	for _, c := range spec.Commands {
		if path.Base(c) == "init" {
			initCmd = "init"
		}
	}
	if initCmd == "" {
		return fmt.Errorf("initramfs: no command named init among %v", spec.Commands)
	}
	cpioPath := filepath.Join(spec.TempDir, "initramfs.cpio")
	logger := llog.New(slog.LevelWarn, func(format string, v ...any) { logf("mkuimage: "+format, v...) })
	env := golang.Default(golang.DisableCGO(), golang.WithWorkingDir(spec.ModuleDir), golang.WithBuildTag("goshsmall"))
	err := uimage.Create(logger,
		uimage.WithReplaceEnv(env),
		uimage.WithTempDir(spec.TempDir),
		uimage.WithBaseArchive(base),
		uimage.WithBusyboxCommands(spec.Commands...),
		uimage.WithBusyboxBuildOpts(&golang.BuildOpts{ExtraArgs: []string{"-trimpath", "-ldflags=-s -w"}}),
		uimage.WithInit(initCmd),
		uimage.WithShell(spec.Shell),
		uimage.WithSkipLDD(),
		uimage.WithCPIOOutput(cpioPath),
	)
	if err != nil {
		return fmt.Errorf("initramfs: u-root build: %w", err)
	}
	logf("compressing initramfs")
	if err := gzipFile(cpioPath, out); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return os.Remove(cpioPath)
}

func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		f.Close()
		return err
	}
	if _, err := io.Copy(zw, in); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// WriteArchive writes records as a gzip-compressed newc cpio to w. The QEMU
// lab uses it for small overlay archives (a test's config) appended to the
// image's initramfs: the kernel unpacks concatenated archives in order, so a
// later record replaces an earlier one.
func WriteArchive(w io.Writer, recs []cpio.Record) error {
	zw := gzip.NewWriter(w)
	cw := cpio.Newc.Writer(zw)
	for _, r := range WithParents(recs) {
		if err := cw.WriteRecord(r); err != nil {
			return fmt.Errorf("cpio record %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("cpio trailer: %w", err)
	}
	return zw.Close()
}
