// Package guesttest runs a Go package's tests inside an appliance guest, on
// the Debian kernel with IPVS, bonding and nftables, so kernel behaviour is
// tested against the real kernel rather than a fake. The test binary is
// compiled on the host, added to the guest's initramfs, and run from the
// serial console; its output becomes the host test's log.
package guesttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/u-root/mkuimage/cpio"
)

// EnvInGuest is set to 1 for test binaries running inside a guest.
const EnvInGuest = "FULCRUM_GUEST"

// BuildTag is the build tag Compile sets: tests that only make sense on
// the guest's kernel (ip_vs, bonding) carry "//go:build guest", so a host
// run of their package does not even compile them (no skips to count).
const BuildTag = "guest"

// Options for one guest run.
type Options struct {
	Run     string        // -test.run pattern ("" = all)
	Bench   string        // -test.bench pattern (benchmarks only when set)
	Args    []string      // more test binary flags
	Timeout time.Duration // for the whole test binary
	MemMB   int
	// Config is the appliance config the guest boots with (default: the
	// lab's lb1.yaml, daemons off).
	Config []byte
	// HostBinaries are host programs (e.g. /usr/sbin/ipvsadm) put into the
	// guest at the same paths, with the shared libraries ldd lists for
	// them, for tests that compare with a reference tool. Scripts are
	// copied as they are (their interpreter must be listed too).
	HostBinaries []string
	// Also are more packages whose tests run in the same guest after
	// pkg's, with the same flags (one boot for several packages); each
	// must pass too.
	Also []string
}

// Compile builds pkg's test binary (static, no cgo, with BuildTag) into dir.
func Compile(pkg, dir string) (string, error) {
	out := filepath.Join(dir, strings.ReplaceAll(filepath.Base(pkg), "-", "_")+".test")
	cmd := exec.Command("go", "test", "-c", "-trimpath", "-tags", BuildTag, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = moduleRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("compiling tests of %s: %w\n%s", pkg, err, b)
	}
	return out, nil
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Run compiles pkg's tests, boots a guest with them and runs them there. It
// fails t if the guest's tests fail, and returns their output.
func Run(t *testing.T, pkg string, o Options) string {
	t.Helper()
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	pkgs := append([]string{pkg}, o.Also...)
	dir := t.TempDir()
	var files []cpio.Record
	var guestPaths []string
	for _, p := range pkgs {
		bin, err := Compile(p, dir)
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		gp := "test/" + filepath.Base(bin)
		files = append(files, cpio.StaticRecord(data, cpio.Info{Name: gp, Mode: cpio.S_IFREG | 0o755}))
		guestPaths = append(guestPaths, gp)
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.MemMB == 0 {
		o.MemMB = 1024
	}
	if o.Config == nil {
		o.Config, err = os.ReadFile(filepath.Join(moduleRoot(), "qemu", "configs", "lb1.yaml"))
		if err != nil {
			t.Fatal(err)
		}
	}
	lab := appliance.NewLab(t)
	if len(o.HostBinaries) > 0 {
		recs, err := HostBinaryRecords(o.HostBinaries)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, recs...)
	}
	v := appliance.Boot(t, lab, img, appliance.Options{
		Node:    1,
		Config:  o.Config,
		MemMB:   o.MemMB,
		Cmdline: "fulcrum.services=none",
		Files:   files,
	})
	if _, err := v.WaitReady(3 * time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := v.Console.ExpectString("$ ", time.Minute); err != nil {
		t.Fatal(err)
	}
	args := []string{"-test.v", "-test.count=1", fmt.Sprintf("-test.timeout=%s", o.Timeout)}
	if o.Run != "" {
		args = append(args, "-test.run='"+o.Run+"'")
	}
	if o.Bench != "" {
		args = append(args, "-test.bench='"+o.Bench+"'", "-test.benchtime=1x")
	}
	args = append(args, o.Args...)
	// The guest's tests inherit CI from the host run: in CI a missing
	// capability in the guest (testkit.Require) fails instead of skipping.
	ci := ""
	if testkit.InCI() {
		ci = testkit.EnvCI + "=true "
	}
	var all strings.Builder
	for i, gp := range guestPaths {
		cmd := fmt.Sprintf("cd /tmp && %s%s=1 /%s %s 2>&1", ci, EnvInGuest, gp, strings.Join(args, " "))
		out, status, err := v.Console.Run(cmd, o.Timeout+time.Minute)
		p := pkgs[i]
		t.Logf("guest output of %s:\n%s", p, out)
		if err != nil {
			t.Fatalf("guest run of %s: %v", p, err)
		}
		if status != 0 {
			t.Fatalf("tests of %s failed in the guest (exit %d)", p, status)
		}
		if !regexp.MustCompile(`(?m)^(PASS|ok)\b`).MatchString(out) {
			t.Fatalf("guest run of %s printed no PASS line", p)
		}
		if n := strings.Count(out, "--- PASS"); n == 0 && o.Bench == "" {
			t.Fatalf("guest run of %s passed no test at all (pattern %q)", p, o.Run)
		}
		all.WriteString(out)
	}
	return all.String()
}

// HostBinaryRecords returns cpio records that put each host program at its
// own path in the guest, with the shared libraries (and dynamic loader)
// ldd lists for it and the directories they live in. A program ldd calls
// "not a dynamic executable" (a script, a static binary) is copied alone.
func HostBinaryRecords(paths []string) ([]cpio.Record, error) {
	files := map[string]bool{}
	var order []string
	addFile := func(p string) {
		if !files[p] {
			files[p] = true
			order = append(order, p)
		}
	}
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("host binary %q: give an absolute path", p)
		}
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("host binary: %w", err)
		}
		addFile(p)
		out, err := exec.Command("ldd", p).CombinedOutput()
		if err != nil {
			if strings.Contains(string(out), "not a dynamic executable") {
				continue
			}
			return nil, fmt.Errorf("ldd %s: %w\n%s", p, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
			// "/lib64/ld-linux-x86-64.so.2 (0x...)"; vdso has no file.
			f := strings.Fields(line)
			switch {
			case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
				addFile(f[2])
			case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
				addFile(f[0])
			}
		}
	}
	dirs := map[string]bool{}
	var recs []cpio.Record
	for _, p := range order {
		rel := strings.TrimPrefix(p, "/")
		var parents []string
		for d := filepath.Dir(rel); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			recs = append(recs, cpio.Directory(d, 0o755))
		}
		data, err := os.ReadFile(p) // follows symlinks: the guest gets a plain file
		if err != nil {
			return nil, fmt.Errorf("host binary: %w", err)
		}
		recs = append(recs, cpio.StaticRecord(data, cpio.Info{Name: rel, Mode: cpio.S_IFREG | 0o755}))
	}
	return recs, nil
}
