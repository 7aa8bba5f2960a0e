// Package power is the appliance's clean shutdown path. Anyone asks PID 1 to
// power off or reboot by signal (Request); PID 1 stops its services, syncs and
// then calls reboot(2) (Finish).
package power

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Action is what to do with the machine.
type Action int

// Actions.
const (
	None Action = iota
	PowerOff
	Reboot
)

func (a Action) String() string {
	switch a {
	case PowerOff:
		return "power off"
	case Reboot:
		return "reboot"
	}
	return "none"
}

// Signals that PID 1 understands, as busybox init does: SIGUSR2 powers off,
// SIGTERM reboots.
const (
	PowerOffSignal = unix.SIGUSR2
	RebootSignal   = unix.SIGTERM
)

// ForSignal maps a signal received by PID 1 to an action.
func ForSignal(s os.Signal) Action {
	switch s {
	case PowerOffSignal:
		return PowerOff
	case RebootSignal:
		return Reboot
	}
	return None
}

// Parse reads an action name.
func Parse(s string) (Action, error) {
	switch s {
	case "off", "poweroff", "power-off":
		return PowerOff, nil
	case "reboot", "restart":
		return Reboot, nil
	}
	return None, fmt.Errorf("unknown power action %q (want poweroff or reboot)", s)
}

// Request asks init (PID 1) to carry out a.
func Request(a Action) error {
	sig := map[Action]syscall.Signal{PowerOff: PowerOffSignal, Reboot: RebootSignal}[a]
	if sig == 0 {
		return fmt.Errorf("power: no action requested")
	}
	if err := unix.Kill(1, sig); err != nil {
		return fmt.Errorf("power: signalling init: %w", err)
	}
	return nil
}

// Finish syncs filesystems and powers off or reboots. Only PID 1 calls it,
// after its services have stopped.
func Finish(a Action) error {
	unix.Sync()
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if a == Reboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	if err := unix.Reboot(cmd); err != nil {
		return fmt.Errorf("power: reboot(2): %w", err)
	}
	return nil
}
