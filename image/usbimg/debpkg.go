package usbimg

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Packages unpacks Debian packages that carry boot loader binaries into a
// cache directory with apt-get download and dpkg-deb -x, never installing
// them on the host (the same way the kernel is fetched).
type Packages struct {
	CacheDir string
	Log      func(format string, args ...any)
}

// Unpack returns the root of pkg's unpacked contents, downloading it once.
func (p *Packages) Unpack(ctx context.Context, pkg string) (string, error) {
	debDir := filepath.Join(p.CacheDir, "debs")
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return "", fmt.Errorf("package cache: %w", err)
	}
	debs, _ := filepath.Glob(filepath.Join(debDir, pkg+"_*.deb"))
	if len(debs) == 0 {
		if p.Log != nil {
			p.Log("downloading %s with apt-get", pkg)
		}
		cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
		cmd.Dir = debDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("package %s: apt-get download: %w: %s", pkg, err, strings.TrimSpace(string(out)))
		}
		if debs, _ = filepath.Glob(filepath.Join(debDir, pkg+"_*.deb")); len(debs) == 0 {
			return "", fmt.Errorf("package %s: apt-get download left no .deb in %s", pkg, debDir)
		}
	}
	deb := debs[len(debs)-1]
	root := filepath.Join(p.CacheDir, "unpacked", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	if _, err := os.Stat(filepath.Join(root, ".complete")); err == nil {
		return root, nil
	}
	tmp := root + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("package cache: %w", err)
	}
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("package %s: dpkg-deb -x: %w: %s", pkg, err, strings.TrimSpace(string(out)))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		return "", fmt.Errorf("package cache: %w", err)
	}
	return root, nil
}

// Chainload binaries for the PXE tree, from Debian's ipxe package: firmware
// PXE ROMs load these, and iPXE then fetches boot.ipxe over HTTP.
var chainloaders = map[string]string{
	"undionly.kpxe": "usr/lib/ipxe/undionly.kpxe", // BIOS
	"ipxe.efi":      "boot/ipxe.efi",              // UEFI x86-64
}

// AddChainloaders copies iPXE's BIOS and UEFI binaries into the PXE tree.
func AddChainloaders(ctx context.Context, cacheDir, pxeDir string) error {
	root, err := (&Packages{CacheDir: cacheDir}).Unpack(ctx, "ipxe")
	if err != nil {
		return fmt.Errorf("pxe tree: %w", err)
	}
	for name, src := range chainloaders {
		b, err := os.ReadFile(filepath.Join(root, src))
		if err != nil {
			return fmt.Errorf("pxe tree: ipxe package: %w", err)
		}
		if err := os.WriteFile(filepath.Join(pxeDir, name), b, 0o644); err != nil {
			return fmt.Errorf("pxe tree: %w", err)
		}
	}
	return nil
}
