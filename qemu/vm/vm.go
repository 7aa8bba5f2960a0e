// Package vm runs an appliance guest in QEMU (TCG, no KVM needed) with
// virtio NICs on taps in the lab's switch namespace, a serial console the
// test can drive, and a QMP socket for link faults.
package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/image/ramfs"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/u-root/mkuimage/cpio"
)

// NIC is one virtio NIC of the guest.
type NIC struct {
	ID  string // QEMU netdev id, used by SetLink
	MAC string
	Tap string // tap name in the switch namespace
	// DeviceOpts are extra virtio-net-pci properties, e.g. "bootindex=1"
	// or "romfile=" (no option ROM). Optional.
	DeviceOpts string
}

// Config describes a guest.
type Config struct {
	Name string
	// Kernel and Initramfs are booted directly (-kernel/-initrd). Leave
	// Kernel empty to boot through the firmware instead (disk or PXE, set
	// up with ExtraArgs and NIC.DeviceOpts); Overlay and Cmdline are then
	// unused.
	Kernel    string
	Initramfs string
	// Overlay records are packed into a second cpio appended to the
	// initramfs, replacing files of the same name (a test's config).
	Overlay []cpio.Record
	Cmdline string
	MemMB   int
	CPUs    int
	NICs    []NIC
	// Switch is the namespace holding the taps; QEMU runs inside it.
	Switch *netlab.Namespace
	// Dir holds the console log, QMP socket and combined initrd.
	Dir string
	// ExtraArgs are appended to QEMU's command line.
	ExtraArgs []string
	// ConsoleSocket, when set, puts the serial console on a unix socket
	// (with everything it prints also logged to the console log) instead of
	// QEMU's stdio, so the guest can outlive the process that started it.
	ConsoleSocket string
	// Detach starts QEMU in its own session, not killed when the starter
	// exits (the interactive lab).
	Detach bool
}

// VM is a running guest.
type VM struct {
	Config  Config
	Console *Console
	QMP     *QMP
	LogPath string
	Started time.Time

	cmd    *exec.Cmd
	exited chan struct{}
	mu     sync.Mutex
	err    error
}

// DefaultCmdline keeps kernel chatter low on the serial console and makes a
// kernel panic end QEMU (with -no-reboot) instead of hanging.
const DefaultCmdline = "console=ttyS0,115200 panic=-1 loglevel=4"

// Args returns QEMU's command line for c.
func (c Config) Args(initrd, qmpPath, logPath string) []string {
	mem, cpus := c.MemMB, c.CPUs
	if mem == 0 {
		mem = 512
	}
	if cpus == 0 {
		cpus = 1
	}
	cmdline := c.Cmdline
	if cmdline == "" {
		cmdline = DefaultCmdline
	}
	args := []string{
		"-name", c.Name,
		"-machine", "q35", "-accel", "tcg", "-cpu", "max",
		"-m", fmt.Sprint(mem), "-smp", fmt.Sprint(cpus),
		"-display", "none", "-vga", "none", "-monitor", "none",
		"-qmp", "unix:" + qmpPath + ",server=on,wait=off",
		"-no-reboot", "-nodefaults",
	}
	if c.Kernel != "" {
		args = append(args, "-kernel", c.Kernel, "-initrd", initrd, "-append", cmdline)
	}
	if c.ConsoleSocket != "" {
		args = append(args, "-chardev", fmt.Sprintf("socket,id=ser0,path=%s,server=on,wait=off,logfile=%s", c.ConsoleSocket, logPath), "-serial", "chardev:ser0")
	} else {
		args = append(args, "-serial", "stdio")
	}
	for _, n := range c.NICs {
		args = append(args,
			"-netdev", fmt.Sprintf("tap,id=%s,ifname=%s,script=no,downscript=no", n.ID, n.Tap),
			// Speed and duplex: 802.3ad (and tlb/alb) bonds re-admit a member
			// after a link flap only if it reports them; real NICs do.
			"-device", fmt.Sprintf("virtio-net-pci,netdev=%s,mac=%s,speed=10000,duplex=full", n.ID, n.MAC)+opts(n.DeviceOpts))
	}
	return append(args, c.ExtraArgs...)
}

func opts(o string) string {
	if o == "" {
		return ""
	}
	return "," + o
}

// Start boots the guest. The caller must Stop it.
func Start(ctx context.Context, c Config) (*VM, error) {
	if c.Dir == "" {
		return nil, errors.New("vm: Config.Dir is required")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return nil, fmt.Errorf("vm: qemu-system-x86_64 not installed: %w", err)
	}
	if c.Kernel == "" && (len(c.Overlay) > 0 || c.Initramfs != "") {
		return nil, errors.New("vm: an initramfs or overlay needs a kernel (firmware boots take neither)")
	}
	initrd := c.Initramfs
	if len(c.Overlay) > 0 {
		initrd = filepath.Join(c.Dir, c.Name+"-initrd.img")
		if err := concatInitrd(c.Initramfs, c.Overlay, initrd); err != nil {
			return nil, err
		}
	}
	qmpPath := filepath.Join(c.Dir, c.Name+".qmp")
	logPath := filepath.Join(c.Dir, c.Name+"-console.log")
	var logFile *os.File
	if c.ConsoleSocket == "" {
		var err error
		if logFile, err = os.Create(logPath); err != nil {
			return nil, fmt.Errorf("vm %s: %w", c.Name, err)
		}
	}
	cmd := exec.Command("qemu-system-x86_64", c.Args(initrd, qmpPath, logPath)...)
	var stdin io.WriteCloser
	var stdout io.ReadCloser
	var err error
	if c.ConsoleSocket == "" {
		if stdin, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
		if stdout, err = cmd.StdoutPipe(); err != nil {
			return nil, err
		}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if c.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	start := func() error { return cmd.Start() }
	if c.Switch != nil {
		err = c.Switch.Do(start)
	} else {
		err = start()
	}
	if err != nil {
		if logFile != nil {
			logFile.Close()
		}
		return nil, fmt.Errorf("vm %s: starting qemu: %w", c.Name, err)
	}
	v := &VM{Config: c, LogPath: logPath, Started: time.Now(), cmd: cmd, exited: make(chan struct{})}
	if c.ConsoleSocket == "" {
		v.Console = newConsole(stdout, stdin, logFile)
	}
	go func() {
		err := cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		v.mu.Lock()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		v.err = err
		v.mu.Unlock()
		close(v.exited)
	}()
	q, err := dialQMP(qmpPath, 10*time.Second)
	if err != nil {
		v.Kill()
		v.mu.Lock()
		defer v.mu.Unlock()
		return nil, fmt.Errorf("vm %s: %w (qemu: %v)", c.Name, err, v.err)
	}
	v.QMP = q
	if c.ConsoleSocket != "" {
		conn, err := net.Dial("unix", c.ConsoleSocket)
		if err != nil {
			v.Kill()
			return nil, fmt.Errorf("vm %s: console socket: %w", c.Name, err)
		}
		v.Console = newConsole(conn, conn, nil)
	}
	return v, nil
}

// PID is QEMU's process ID.
func (v *VM) PID() int { return v.cmd.Process.Pid }

// concatInitrd writes base followed by a gzip cpio of the overlay records.
func concatInitrd(base string, overlay []cpio.Record, dst string) error {
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("initrd %s: %w", dst, err)
	}
	defer out.Close()
	in, err := os.Open(base)
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	defer in.Close()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	if err := ramfs.WriteArchive(out, overlay); err != nil {
		return fmt.Errorf("initrd overlay: %w", err)
	}
	return out.Close()
}

var readyLine = regexp.MustCompile(`fulcrum: ready[^\n]*\n`)

// WaitReady waits for the appliance's ready line and returns the time since
// QEMU started.
func (v *VM) WaitReady(timeout time.Duration) (time.Duration, error) {
	// The whole line: the serial console may deliver it in pieces, and
	// callers read the host name and timing after "ready".
	if _, err := v.Console.Expect(readyLine, timeout); err != nil {
		return 0, fmt.Errorf("vm %s not ready: %w", v.Config.Name, err)
	}
	return time.Since(v.Started), nil
}

// Run runs a shell command on the guest's console.
func (v *VM) Run(cmd string, timeout time.Duration) (string, error) {
	out, status, err := v.Console.Run(cmd, timeout)
	if err != nil {
		return out, fmt.Errorf("vm %s: %w", v.Config.Name, err)
	}
	if status != 0 {
		return out, fmt.Errorf("vm %s: %q exited %d: %s", v.Config.Name, cmd, status, strings.TrimSpace(out))
	}
	return out, nil
}

// SetLink cuts (up=false) or restores a NIC's link, as pulling a cable.
func (v *VM) SetLink(nicID string, up bool) error {
	_, err := v.QMP.Execute("set_link", map[string]any{"name": nicID, "up": up})
	return err
}

// Exited is closed when QEMU has exited.
func (v *VM) Exited() <-chan struct{} { return v.exited }

// Kill ends QEMU at once (a guest "losing power").
func (v *VM) Kill() {
	if v.cmd.Process != nil {
		v.cmd.Process.Kill()
	}
	<-v.exited
	if v.QMP != nil {
		v.QMP.Close()
	}
}

// Stop kills the guest if it still runs; use it in t.Cleanup.
func (v *VM) Stop() {
	select {
	case <-v.exited:
		if v.QMP != nil {
			v.QMP.Close()
		}
	default:
		v.Kill()
	}
}
