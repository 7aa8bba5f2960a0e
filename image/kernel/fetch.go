// Package kernel fetches Debian's linux-image package into a cache directory
// and unpacks it there (never installing it on the host), so the image builder
// can take vmlinuz and the modules it needs from it.
package kernel

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// DefaultPackage is Debian's meta package that names the current kernel.
const DefaultPackage = "linux-image-amd64"

// Tree is an unpacked kernel package.
type Tree struct {
	Root    string // the unpacked package root
	Release string // e.g. 6.1.0-56-amd64
	Vmlinuz string
	Package string // the .deb it came from
}

// ModulesDir is lib/modules/<release> inside the tree.
func (t *Tree) ModulesDir() string { return filepath.Join(t.Root, "lib", "modules", t.Release) }

// Fetcher downloads and unpacks kernel packages with apt.
type Fetcher struct {
	CacheDir string
	// Log reports progress; may be nil.
	Log func(format string, args ...any)
}

func (f *Fetcher) logf(format string, args ...any) {
	if f.Log != nil {
		f.Log(format, args...)
	}
}

var depRE = regexp.MustCompile(`linux-image-[0-9][^ ,|()]*-amd64(-unsigned)?`)

// Resolve turns a meta package (linux-image-amd64) into the concrete kernel
// package it depends on (linux-image-6.1.0-56-amd64). A concrete name is
// returned as it is.
func Resolve(ctx context.Context, pkg string) (string, error) {
	if regexp.MustCompile(`^linux-image-[0-9]`).MatchString(pkg) {
		return pkg, nil
	}
	out, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("kernel package %s: apt-cache show: %w (run apt-get update first?)", pkg, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Depends:") {
			if m := depRE.FindString(line); m != "" {
				return m, nil
			}
		}
	}
	return "", fmt.Errorf("kernel package %s: no linux-image-<version>-amd64 dependency in apt-cache show", pkg)
}

// Fetch resolves pkg, downloads its .deb into the cache (unless present) and
// unpacks it (unless already unpacked).
func (f *Fetcher) Fetch(ctx context.Context, pkg string) (*Tree, error) {
	if pkg == "" {
		pkg = DefaultPackage
	}
	name, err := Resolve(ctx, pkg)
	if err != nil {
		return nil, err
	}
	debDir := filepath.Join(f.CacheDir, "debs")
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	debs, _ := filepath.Glob(filepath.Join(debDir, name+"_*.deb"))
	if len(debs) == 0 {
		f.logf("downloading %s with apt-get", name)
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", name)
		cmd.Dir = debDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("kernel package %s: apt-get download: %w: %s", name, err, lastLine(out))
		}
		debs, _ = filepath.Glob(filepath.Join(debDir, name+"_*.deb"))
		if len(debs) == 0 {
			return nil, fmt.Errorf("kernel package %s: apt-get download left no .deb in %s", name, debDir)
		}
	} else {
		f.logf("using cached %s", filepath.Base(debs[len(debs)-1]))
	}
	return f.Unpack(ctx, debs[len(debs)-1])
}

// Unpack extracts a kernel .deb into the cache (once) and describes it.
func (f *Fetcher) Unpack(ctx context.Context, deb string) (*Tree, error) {
	base := strings.TrimSuffix(filepath.Base(deb), ".deb")
	root := filepath.Join(f.CacheDir, "unpacked", base)
	if _, err := os.Stat(filepath.Join(root, ".complete")); err != nil {
		f.logf("unpacking %s", filepath.Base(deb))
		tmp := root + ".tmp"
		os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return nil, fmt.Errorf("kernel cache: %w", err)
		}
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("kernel package %s: dpkg-deb -x: %w: %s", deb, err, lastLine(out))
		}
		if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
			return nil, err
		}
		os.RemoveAll(root)
		if err := os.Rename(tmp, root); err != nil {
			return nil, fmt.Errorf("kernel cache: %w", err)
		}
	}
	return Open(root, deb)
}

// Open describes an unpacked kernel package at root.
func Open(root, deb string) (*Tree, error) {
	vmlinuzes, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vmlinuzes) != 1 {
		return nil, fmt.Errorf("kernel tree %s: want exactly one boot/vmlinuz-*, found %d", root, len(vmlinuzes))
	}
	release := strings.TrimPrefix(filepath.Base(vmlinuzes[0]), "vmlinuz-")
	t := &Tree{Root: root, Release: release, Vmlinuz: vmlinuzes[0], Package: deb}
	if _, err := os.Stat(t.ModulesDir()); err != nil {
		return nil, fmt.Errorf("kernel tree %s: %w", root, err)
	}
	return t, nil
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	return s
}
