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

	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/u-root/mkuimage/cpio"
)

// EnvInGuest is set to 1 for test binaries running inside a guest.
const EnvInGuest = "FULCRUM_GUEST"

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
}

// Compile builds pkg's test binary (static, no cgo) into dir.
func Compile(pkg, dir string) (string, error) {
	out := filepath.Join(dir, strings.ReplaceAll(filepath.Base(pkg), "-", "_")+".test")
	cmd := exec.Command("go", "test", "-c", "-trimpath", "-o", out, pkg)
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
	bin, err := Compile(pkg, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
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
	guestPath := "test/" + filepath.Base(bin)
	v := appliance.Boot(t, lab, img, appliance.Options{
		Node:    1,
		Config:  o.Config,
		MemMB:   o.MemMB,
		Cmdline: "fulcrum.services=none",
		Files:   []cpio.Record{cpio.StaticRecord(data, cpio.Info{Name: guestPath, Mode: cpio.S_IFREG | 0o755})},
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
	cmd := fmt.Sprintf("cd /tmp && %s=1 /%s %s 2>&1", EnvInGuest, guestPath, strings.Join(args, " "))
	out, status, err := v.Console.Run(cmd, o.Timeout+time.Minute)
	t.Logf("guest output of %s:\n%s", pkg, out)
	if err != nil {
		t.Fatalf("guest run of %s: %v", pkg, err)
	}
	if status != 0 {
		t.Fatalf("tests of %s failed in the guest (exit %d)", pkg, status)
	}
	if !regexp.MustCompile(`(?m)^(PASS|ok)\b`).MatchString(out) {
		t.Fatalf("guest run of %s printed no PASS line", pkg)
	}
	if n := strings.Count(out, "--- PASS"); n == 0 && o.Bench == "" {
		t.Fatalf("guest run of %s passed no test at all (pattern %q)", pkg, o.Run)
	}
	return out
}
