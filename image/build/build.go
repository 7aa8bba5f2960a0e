// Package build turns an appliance config and a Debian kernel package into
// the boot artefacts in out/: vmlinuz, initramfs.cpio.gz and a PXE tree. The
// config is validated before anything is fetched or built, so an invalid
// config never produces an image.
package build

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/image/kernel"
	"github.com/fulcrum-lb/fulcrum/image/modsel"
	"github.com/fulcrum-lb/fulcrum/image/pxe"
	"github.com/fulcrum-lb/fulcrum/image/ramfs"
	"github.com/fulcrum-lb/fulcrum/image/usbimg"
	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/services/manifest"
	"github.com/u-root/mkuimage/cpio"
)

// ModulePath is this Go module's path; commands are named relative to it.
const ModulePath = "github.com/fulcrum-lb/fulcrum"

// ConsoleCommands are u-root commands for the maintenance shell on the
// serial console (and for lab tests that look inside a guest).
var ConsoleCommands = []string{
	"github.com/u-root/u-root/cmds/core/gosh",
	"github.com/u-root/u-root/cmds/core/cat",
	"github.com/u-root/u-root/cmds/core/ls",
	"github.com/u-root/u-root/cmds/core/ip",
	"github.com/u-root/u-root/cmds/core/dmesg",
	"github.com/u-root/u-root/cmds/core/ps",
	"github.com/u-root/u-root/cmds/core/ping",
	"github.com/u-root/u-root/cmds/core/sleep",
	"github.com/u-root/u-root/cmds/core/kill",
	"github.com/u-root/u-root/cmds/core/uname",
	"github.com/u-root/u-root/cmds/core/lsmod",
	"github.com/u-root/u-root/cmds/core/free",
	"github.com/u-root/u-root/cmds/core/mount",
}

// Options control one build.
type Options struct {
	ConfigPath    string
	OutDir        string
	CacheDir      string
	KernelPackage string // Debian package name; default linux-image-amd64
	KernelDeb     string // a local .deb instead of apt (optional)
	SourceDir     string // root of this Go module
	// ExtraFiles are host:archive pairs added to the initramfs (tests use
	// this to add a test binary).
	ExtraFiles []string
	Log        func(format string, args ...any)
}

// Result describes what a build produced.
type Result struct {
	Kernel        string
	Initramfs     string
	PXEDir        string
	USBImage      string
	KernelRelease string
	Modules       int
	ModulesBytes  int64
	Commands      []string
	// Sizes breaks the initramfs down by contributor.
	Sizes    *Sizes
	Duration time.Duration
}

// Build validates the config and produces the boot artefacts.
func Build(ctx context.Context, o Options) (*Result, error) {
	start := time.Now()
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	step := func(n int, what string) { logf("[%d/7 %5.1fs] %s", n, time.Since(start).Seconds(), what) }

	if err := absPaths(&o); err != nil {
		return nil, err
	}
	step(1, "validating config "+o.ConfigPath)
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return nil, err
	}

	step(2, "fetching kernel")
	tree, err := fetchKernel(ctx, o, logf)
	if err != nil {
		return nil, err
	}

	step(3, "selecting modules")
	sel, files, err := initramfsFiles(o, cfg, tree, logf)
	if err != nil {
		return nil, err
	}

	step(4, "building initramfs with u-root (Go compile of init, daemons and console tools)")
	res := &Result{
		Kernel:        filepath.Join(o.OutDir, "vmlinuz"),
		Initramfs:     filepath.Join(o.OutDir, "initramfs.cpio.gz"),
		PXEDir:        filepath.Join(o.OutDir, "pxe"),
		USBImage:      filepath.Join(o.OutDir, "fulcrum-usb.img"),
		KernelRelease: tree.Release,
		Modules:       len(sel.Modules),
		ModulesBytes:  sel.Size(),
		Commands:      Commands(),
	}
	if err := buildInitramfs(o, res, files, logf); err != nil {
		return nil, err
	}

	step(5, "copying kernel, checking the size budget")
	if err := copyFile(tree.Vmlinuz, res.Kernel); err != nil {
		return nil, err
	}
	if err := checkSize(res); err != nil {
		os.Remove(res.Initramfs) // an image over budget is no image
		return nil, err
	}

	step(6, "writing PXE tree")
	cmdline, err := writePXE(ctx, o, cfg, res)
	if err != nil {
		return nil, err
	}

	step(7, "writing USB disk image (GPT, GRUB for UEFI and BIOS, config partition)")
	err = usbimg.Build(ctx, usbimg.Spec{Kernel: res.Kernel, Initramfs: res.Initramfs, Config: o.ConfigPath,
		Cmdline: cmdline, Out: res.USBImage, CacheDir: filepath.Join(o.CacheDir, "boot"), Log: func(format string, a ...any) { logf("      "+format, a...) }})
	if err != nil {
		return nil, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

// absPaths makes o's paths absolute and creates the cache directory.
func absPaths(o *Options) error {
	for _, p := range []*string{&o.ConfigPath, &o.OutDir, &o.CacheDir, &o.SourceDir} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return fmt.Errorf("path %s: %w", *p, err)
		}
		*p = abs
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return fmt.Errorf("cache dir: %w", err)
	}
	return nil
}

// fetchKernel unpacks o.KernelDeb, or fetches o.KernelPackage with apt.
func fetchKernel(ctx context.Context, o Options, logf func(string, ...any)) (*kernel.Tree, error) {
	f := &kernel.Fetcher{CacheDir: filepath.Join(o.CacheDir, "kernel"), Log: func(format string, a ...any) { logf("      "+format, a...) }}
	var tree *kernel.Tree
	var err error
	if o.KernelDeb != "" {
		tree, err = f.Unpack(ctx, o.KernelDeb)
	} else {
		tree, err = f.Fetch(ctx, o.KernelPackage)
	}
	if err != nil {
		return nil, err
	}
	logf("      kernel %s", tree.Release)
	return tree, nil
}

// initramfsFiles selects the kernel modules and lists every file the
// initramfs carries besides the commands: modules, config, module list,
// build info and o.ExtraFiles.
func initramfsFiles(o Options, cfg *config.Config, tree *kernel.Tree, logf func(string, ...any)) (*modsel.Selection, []cpio.Record, error) {
	idx, err := modsel.Scan(tree.ModulesDir())
	if err != nil {
		return nil, nil, err
	}
	required := append(append([]string{}, modsel.Required...), cfg.Kernel.Modules...)
	sel, err := idx.Select(required, modsel.Optional)
	if err != nil {
		return nil, nil, fmt.Errorf("kernel modules: %w", err)
	}
	if len(sel.Missing) > 0 {
		logf("      optional modules not in this kernel: %s", strings.Join(sel.Missing, " "))
	}
	if err := engine.CheckSchedulers(cfg, imageSchedulers(sel), filepath.Base(tree.ModulesDir())); err != nil {
		return nil, nil, err
	}
	logf("      %d modules (%d asked for, rest dependencies), %.1f MiB", len(sel.Modules), len(sel.Wanted), mib(sel.Size()))
	files, err := moduleRecords(tree, sel)
	if err != nil {
		return nil, nil, err
	}
	cfgRec, err := ramfs.FileRecord(o.ConfigPath, ramfs.ConfigPath)
	if err != nil {
		return nil, nil, err
	}
	// Only root reads the config on the appliance (token, password hash).
	cfgRec.Mode = cpio.S_IFREG | 0o600
	files = append(files, cfgRec,
		cpio.StaticFile(ramfs.ModuleListPath, strings.Join(sel.Wanted, "\n")+"\n", 0o644),
		cpio.StaticFile(ramfs.BuildInfoPath, fmt.Sprintf("kernel=%s\nbuilt=%s\n", tree.Release, time.Now().UTC().Format(time.RFC3339)), 0o644),
	)
	for _, ef := range o.ExtraFiles {
		src, dst, ok := strings.Cut(ef, ":")
		if !ok {
			return nil, nil, fmt.Errorf("extra file %q: want host-path:archive-path", ef)
		}
		r, err := ramfs.FileRecord(src, strings.TrimPrefix(dst, "/"))
		if err != nil {
			return nil, nil, err
		}
		files = append(files, r)
	}
	return sel, files, nil
}

// buildInitramfs compiles res.Commands with u-root into res.Initramfs.
func buildInitramfs(o Options, res *Result, files []cpio.Record, logf func(string, ...any)) error {
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return fmt.Errorf("out dir: %w", err)
	}
	tmp, err := os.MkdirTemp(o.CacheDir, "build-")
	if err != nil {
		return fmt.Errorf("build temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	return ramfs.Build(ramfs.Spec{
		Commands:  res.Commands,
		Shell:     "gosh",
		Files:     files,
		TempDir:   tmp,
		ModuleDir: o.SourceDir,
		Log:       logf,
	}, res.Initramfs)
}

// writePXE writes the PXE tree (kernel, initramfs, chainloaders) and
// returns the kernel command line.
func writePXE(ctx context.Context, o Options, cfg *config.Config, res *Result) (string, error) {
	t := pxe.Tree{Dir: res.PXEDir, Kernel: "vmlinuz", Initramfs: "initramfs.cpio.gz", Cmdline: strings.TrimSpace(pxe.DefaultCmdline + " " + cfg.Kernel.Cmdline)}
	if err := t.Write(); err != nil {
		return "", err
	}
	for _, f := range []string{res.Kernel, res.Initramfs} {
		if err := copyFile(f, filepath.Join(res.PXEDir, filepath.Base(f))); err != nil {
			return "", err
		}
	}
	if err := usbimg.AddChainloaders(ctx, filepath.Join(o.CacheDir, "boot"), res.PXEDir); err != nil {
		return "", err
	}
	return t.Cmdline, nil
}

// Commands lists the Go packages that go into the busybox binary: init,
// the programs of services/manifest, and the console tools.
func Commands() []string {
	cmds := []string{ModulePath + "/init"}
	for _, p := range manifest.Programs() {
		cmds = append(cmds, ModulePath+"/"+manifest.CmdDir+"/"+p)
	}
	return append(cmds, ConsoleCommands...)
}

// moduleRecords puts the selected modules, a generated modules.dep and
// modules.alias, and the package's modules.builtin under
// lib/modules/<release>/.
func moduleRecords(tree *kernel.Tree, sel *modsel.Selection) ([]cpio.Record, error) {
	root := filepath.Join(ramfs.ModulesRootPath, tree.Release)
	var recs []cpio.Record
	for _, m := range sel.Modules {
		r, err := ramfs.FileRecord(filepath.Join(tree.ModulesDir(), m.Path), filepath.Join(root, m.Path))
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	recs = append(recs, cpio.StaticFile(filepath.Join(root, "modules.dep"), sel.ModulesDep(), 0o644),
		cpio.StaticFile(filepath.Join(root, "modules.alias"), sel.ModulesAlias(), 0o644))
	for _, name := range []string{"modules.builtin", "modules.order"} {
		if _, err := os.Stat(filepath.Join(tree.ModulesDir(), name)); err == nil {
			r, err := ramfs.FileRecord(filepath.Join(tree.ModulesDir(), name), filepath.Join(root, name))
			if err != nil {
				return nil, err
			}
			recs = append(recs, r)
		}
	}
	return recs, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.Create(dst + ".tmp")
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}

// checkSize measures the initramfs by contributor into res.Sizes and fails
// when kernel plus initramfs exceed MaxBootImageBytes.
func checkSize(res *Result) error {
	k, err := os.Stat(res.Kernel)
	if err != nil {
		return fmt.Errorf("size budget: %w", err)
	}
	i, err := os.Stat(res.Initramfs)
	if err != nil {
		return fmt.Errorf("size budget: %w", err)
	}
	if res.Sizes, err = MeasureInitramfs(res.Initramfs, 8); err != nil {
		return err
	}
	return CheckBudget(k.Size(), i.Size(), MaxBootImageBytes, res.Sizes)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// Summary is the size report printed after a build.
func (r *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "built in %.1fs for kernel %s\n", r.Duration.Seconds(), r.KernelRelease)
	for _, f := range []string{r.Kernel, r.Initramfs, r.USBImage} {
		if fi, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "  %-28s %7.2f MiB\n", f, mib(fi.Size()))
		}
	}
	fmt.Fprintf(&b, "  %-28s %7.2f MiB in %d modules (uncompressed)\n", "  of which kernel modules", mib(r.ModulesBytes), r.Modules)
	fmt.Fprintf(&b, "  %-28s %s/{boot.ipxe,pxelinux.cfg/default}\n", "PXE tree", r.PXEDir)
	fmt.Fprintf(&b, "  commands: %d (init, %d appliance programs, %d console tools)\n", len(r.Commands), len(r.Commands)-1-len(ConsoleCommands), len(ConsoleCommands))
	if r.Sizes != nil {
		var kb, ib int64
		if fi, err := os.Stat(r.Kernel); err == nil {
			kb = fi.Size()
		}
		if fi, err := os.Stat(r.Initramfs); err == nil {
			ib = fi.Size()
		}
		fmt.Fprintf(&b, "  boot image %.2f MB (kernel + initramfs gzip), budget %.1f MB\n", float64(kb+ib)/1e6, float64(MaxBootImageBytes)/1e6)
		b.WriteString("  initramfs by contributor (each file gzipped alone):\n")
		for _, g := range r.Sizes.Groups {
			fmt.Fprintf(&b, "    %-58s %4d files %7.2f MB, gzip %6.2f MB\n", g.Name, g.Files, float64(g.Bytes)/1e6, float64(g.Gzip)/1e6)
		}
		b.WriteString("  biggest files:\n")
		for _, f := range r.Sizes.Files {
			fmt.Fprintf(&b, "    %-58s %7.2f MB, gzip %6.2f MB\n", strings.TrimPrefix(f.Name, "lib/modules/"+r.KernelRelease+"/kernel/"), float64(f.Bytes)/1e6, float64(f.Gzip)/1e6)
		}
	}
	return b.String()
}

// imageSchedulers are the IPVS schedulers the image's kernel can load: the
// selected ip_vs_* modules and the built-in ones.
func imageSchedulers(sel *modsel.Selection) map[string]bool {
	out := map[string]bool{}
	for _, m := range sel.Modules {
		if s, ok := ipvs.SchedulerOfModule(m.Name); ok {
			out[s] = true
		}
	}
	for name := range sel.Index.Builtin {
		if s, ok := ipvs.SchedulerOfModule(name); ok {
			out[s] = true
		}
	}
	return out
}
