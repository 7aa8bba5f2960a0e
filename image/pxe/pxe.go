// Package pxe writes the netboot tree for the appliance: an iPXE script and a
// pxelinux config next to the kernel and initramfs.
package pxe

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultCmdline is the kernel command line for serial-console appliances:
// kernel messages on both the VGA console and ttyS0, with ttyS0 (the last
// console=) as /dev/console, so init's log and prompt are on the serial line.
const DefaultCmdline = "console=tty0 console=ttyS0,115200n8 panic=10 quiet"

// Tree describes a netboot tree to write.
type Tree struct {
	Dir       string // output folder, e.g. out/pxe
	Kernel    string // file name of the kernel inside Dir
	Initramfs string // file name of the initramfs inside Dir
	Cmdline   string
}

// IPXEScript is the iPXE script: paths are relative to the script's own URL,
// so the tree works from any HTTP or TFTP root.
func (t Tree) IPXEScript() string {
	return strings.Join([]string{
		"#!ipxe",
		"echo Booting Fulcrum load-balancer appliance",
		fmt.Sprintf("kernel %s initrd=%s %s", t.Kernel, t.Initramfs, t.Cmdline),
		fmt.Sprintf("initrd %s", t.Initramfs),
		"boot",
		"",
	}, "\n")
}

// PXELinuxConfig is pxelinux.cfg/default for syslinux-based PXE ROMs.
func (t Tree) PXELinuxConfig() string {
	return strings.Join([]string{
		"SERIAL 0 115200",
		"DEFAULT fulcrum",
		"PROMPT 0",
		"TIMEOUT 30",
		"LABEL fulcrum",
		"  KERNEL " + t.Kernel,
		"  INITRD " + t.Initramfs,
		"  APPEND " + t.Cmdline,
		"",
	}, "\n")
}

// Write writes boot.ipxe and pxelinux.cfg/default into t.Dir. The kernel and
// initramfs files must be placed there by the caller.
func (t Tree) Write() error {
	if err := os.MkdirAll(filepath.Join(t.Dir, "pxelinux.cfg"), 0o755); err != nil {
		return fmt.Errorf("pxe tree %s: %w", t.Dir, err)
	}
	if err := os.WriteFile(filepath.Join(t.Dir, "boot.ipxe"), []byte(t.IPXEScript()), 0o644); err != nil {
		return fmt.Errorf("pxe tree: %w", err)
	}
	if err := os.WriteFile(filepath.Join(t.Dir, "pxelinux.cfg", "default"), []byte(t.PXELinuxConfig()), 0o644); err != nil {
		return fmt.Errorf("pxe tree: %w", err)
	}
	return nil
}
