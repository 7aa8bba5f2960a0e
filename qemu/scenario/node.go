package scenario

import (
	"context"
	"fmt"

	"github.com/fulcrum-lb/fulcrum/image/ramfs"
	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
	"github.com/u-root/mkuimage/cpio"
)

// GuestOptions describe one appliance guest of the HA lab.
type GuestOptions struct {
	Node   int
	Config []byte        // YAML at the baked-in config path
	Files  []cpio.Record // more files for the overlay
	Dir    string        // console log, QMP socket, combined initrd
	MemMB  int           // default 640
	// ConsoleSocket and Detach: see vm.Config (the interactive lab).
	ConsoleSocket string
	Detach        bool
	Cmdline       string // extra kernel arguments
	// ManualLogin leaves the console at its login prompt; otherwise the
	// harness logs in (appliance.LabUser) and enters the maintenance shell,
	// so VM.Run works.
	ManualLogin bool
}

// EnsureTaps creates the node's taps in the lab's switch namespace unless
// they exist (a node booted again after a kill reuses its taps).
func EnsureTaps(lab *netlab.Lab, node int) ([]vm.NIC, error) {
	nics := NICs(node)
	for _, n := range nics {
		if _, err := lab.Switch.Netlink().LinkByName(n.Tap); err == nil {
			continue
		}
		if err := lab.Tap(n.Tap, NICSegment(n)); err != nil {
			return nil, fmt.Errorf("%s: %w", NodeName(node), err)
		}
	}
	return nics, nil
}

// StartGuest boots an appliance guest on the node's taps. It does not wait
// for the ready line.
func StartGuest(ctx context.Context, lab *netlab.Lab, img appliance.Image, o GuestOptions) (*vm.VM, error) {
	nics, err := EnsureTaps(lab, o.Node)
	if err != nil {
		return nil, err
	}
	overlay := append([]cpio.Record{}, o.Files...)
	if o.Config != nil {
		overlay = append(overlay, cpio.StaticFile(ramfs.ConfigPath, string(o.Config), 0o644))
	}
	mem := o.MemMB
	if mem == 0 {
		mem = 640
	}
	cmdline := vm.DefaultCmdline
	if o.Cmdline != "" {
		cmdline += " " + o.Cmdline
	}
	v, err := vm.Start(ctx, vm.Config{
		Name: NodeName(o.Node), Kernel: img.Kernel, Initramfs: img.Initramfs,
		Overlay: overlay, Cmdline: cmdline, MemMB: mem, NICs: nics, Switch: lab.Switch,
		Dir: o.Dir, ConsoleSocket: o.ConsoleSocket, Detach: o.Detach,
	})
	if err != nil {
		return nil, fmt.Errorf("booting %s: %w", NodeName(o.Node), err)
	}
	if !o.ManualLogin {
		v.Console.AutoLogin(appliance.LabUser, appliance.LabPassword)
	}
	return v, nil
}
