// Package appliance boots Fulcrum appliance guests into a netlab: each node
// gets two NICs per group (Failover, Internal, External) and optionally a
// management NIC, with MACs the lab configs select members by.
package appliance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/image/ramfs"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
	"github.com/u-root/mkuimage/cpio"
)

// Segment numbers used in MACs: 52:54:00:<node>:<segment>:<member>.
var segmentNumber = map[string]int{netlab.Failover: 1, netlab.Internal: 2, netlab.External: 3, netlab.Management: 4}

// The lab's console account: qemu/configs/lb1.yaml holds the bcrypt hash of
// LabPassword in management.console.password_hash (made with
// `echo fulcrum-lab | go run ./services/cmd/lbctl -hash-password`).
const (
	LabUser     = "admin"
	LabPassword = "fulcrum-lab"
)

// MAC is the lab MAC of a node's member NIC on a segment (member counts from 1).
func MAC(node int, segment string, member int) string {
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", node, segmentNumber[segment], member)
}

// NICID is the QEMU netdev id of a member NIC, e.g. "int1".
func NICID(segment string, member int) string { return fmt.Sprintf("%s%d", segment, member) }

// Image locates the built appliance: $FULCRUM_OUT, else out/ at the module root.
type Image struct {
	Kernel    string
	Initramfs string
}

// FindImage returns the built image or an error telling how to build it.
func FindImage() (Image, error) {
	dir := os.Getenv("FULCRUM_OUT")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		dir = filepath.Join(filepath.Dir(file), "..", "..", "out")
	}
	img := Image{Kernel: filepath.Join(dir, "vmlinuz"), Initramfs: filepath.Join(dir, "initramfs.cpio.gz")}
	for _, f := range []string{img.Kernel, img.Initramfs} {
		if _, err := os.Stat(f); err != nil {
			return img, fmt.Errorf("appliance image missing (%v): run `make image` first", err)
		}
	}
	return img, nil
}

// Options for one appliance guest.
type Options struct {
	Node       int    // 1 for lb1, 2 for lb2; selects MACs and tap names
	Config     []byte // YAML placed at the baked-in config path (nil: keep the image's)
	Files      []cpio.Record
	Management bool
	Cmdline    string // extra kernel arguments
	MemMB      int
	// ManualLogin leaves the console at its login prompt. By default the
	// harness logs in (LabUser/LabPassword) and enters the maintenance
	// shell, so VM.Run and Console.Run drive a shell as they always did.
	ManualLogin bool
	// ExtraArgs are added to QEMU's command line of a direct kernel boot
	// (a disk holding the config partition).
	ExtraArgs []string
	// Firmware, when set, boots through the guest firmware (disk or PXE)
	// instead of loading out/ with -kernel; Config, Files and Cmdline must
	// then be empty (the boot medium carries them).
	Firmware *Firmware
}

// Firmware describes a boot through the guest's firmware.
type Firmware struct {
	// Args are added to QEMU's command line: drives, pflash for OVMF, a
	// USB controller.
	Args []string
	// PXE boots from the management NIC (Options.Management must be set)
	// with QEMU's iPXE option ROM; the group NICs get no ROM.
	PXE bool
}

// Boot starts an appliance guest in lab and stops it when t ends. It does not
// wait for the ready line.
func Boot(t testing.TB, lab *netlab.Lab, img Image, o Options) *vm.VM {
	t.Helper()
	var nics []vm.NIC
	segs := []string{netlab.Failover, netlab.Internal, netlab.External}
	for _, seg := range segs {
		for m := 1; m <= 2; m++ {
			nics = append(nics, vm.NIC{ID: NICID(seg, m), MAC: MAC(o.Node, seg, m), Tap: fmt.Sprintf("t%d-%s%d", o.Node, seg, m)})
		}
	}
	if o.Management {
		nics = append(nics, vm.NIC{ID: "mgmt", MAC: MAC(o.Node, netlab.Management, 1), Tap: fmt.Sprintf("t%d-mgmt", o.Node)})
	}
	for _, n := range nics {
		seg := n.ID[:len(n.ID)-1]
		if n.ID == "mgmt" {
			seg = netlab.Management
		}
		if err := lab.Tap(n.Tap, seg); err != nil {
			t.Fatalf("lab: %v", err)
		}
	}
	if o.Firmware != nil {
		if o.Config != nil || o.Files != nil || o.Cmdline != "" {
			t.Fatalf("lb%d: a firmware boot takes no config overlay or kernel arguments", o.Node)
		}
		if o.Firmware.PXE && !o.Management {
			t.Fatalf("lb%d: PXE boot needs the management NIC", o.Node)
		}
		for i := range nics {
			nics[i].DeviceOpts = "romfile="
			if nics[i].ID == "mgmt" && o.Firmware.PXE {
				nics[i].DeviceOpts = "bootindex=1"
			}
		}
		return start(t, o, vm.Config{Name: fmt.Sprintf("lb%d", o.Node), MemMB: o.MemMB, NICs: nics,
			Switch: lab.Switch, Dir: t.TempDir(), ExtraArgs: o.Firmware.Args})
	}
	overlay := append([]cpio.Record{}, o.Files...)
	if o.Config != nil {
		overlay = append(overlay, cpio.StaticFile(ramfs.ConfigPath, string(o.Config), 0o600))
	}
	cmdline := vm.DefaultCmdline
	if o.Cmdline != "" {
		cmdline += " " + o.Cmdline
	}
	return start(t, o, vm.Config{
		Name:      fmt.Sprintf("lb%d", o.Node),
		Kernel:    img.Kernel,
		Initramfs: img.Initramfs,
		Overlay:   overlay,
		Cmdline:   cmdline,
		MemMB:     o.MemMB,
		NICs:      nics,
		Switch:    lab.Switch,
		Dir:       t.TempDir(),
		ExtraArgs: o.ExtraArgs,
	})
}

func start(t testing.TB, o Options, c vm.Config) *vm.VM {
	t.Helper()
	v, err := vm.Start(context.Background(), c)
	if err != nil {
		t.Fatalf("booting lb%d: %v", o.Node, err)
	}
	if !o.ManualLogin {
		v.Console.AutoLogin(LabUser, LabPassword)
	}
	t.Cleanup(func() {
		v.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(v.LogPath); err == nil {
				t.Logf("lb%d console log (last 4 KiB):\n%s", o.Node, lastBytes(b, 4096))
			}
		}
	})
	return v
}

// NewLab creates a lab with a unique prefix and removes it when t ends.
func NewLab(t testing.TB) *netlab.Lab {
	t.Helper()
	prefix := fmt.Sprintf("fl%04x-", time.Now().UnixNano()&0xffff)
	lab, err := netlab.New(prefix)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	return lab
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
