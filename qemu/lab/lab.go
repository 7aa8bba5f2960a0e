// Package lab is the interactive QEMU lab behind `make lab`: it builds the
// lab network in namespaces, boots the appliance guests detached with their
// serial consoles on unix sockets, records everything it made in a state
// file, and tears exactly that down again.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/image/ramfs"
	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
	"github.com/u-root/mkuimage/cpio"
	"github.com/vishvananda/netns"
)

// Prefix names every namespace of the interactive lab.
const Prefix = "fulcrum-"

// DefaultStateDir holds the state file, console sockets and logs.
const DefaultStateDir = "/run/fulcrum-lab"

// State is what a running lab consists of.
type State struct {
	Started    time.Time        `json:"started"`
	Namespaces []string         `json:"namespaces"`
	Guests     map[string]Guest `json:"guests"`
	Hosts      map[string]Host  `json:"hosts"`
}

// Guest is one appliance VM.
type Guest struct {
	PID     int     `json:"pid"`
	Console string  `json:"console"` // unix socket
	Log     string  `json:"log"`
	QMP     string  `json:"qmp"`
	ReadyS  float64 `json:"ready_seconds"`
}

// Host is a namespace host of the lab.
type Host struct {
	Namespace string `json:"namespace"`
	Segment   string `json:"segment"`
	Address   string `json:"address"`
}

// Options for Up.
type Options struct {
	StateDir  string
	Image     appliance.Image
	ConfigDir string // holds lb1.yaml
	Log       func(format string, args ...any)
}

// hosts of the single-appliance lab (address plan in shared/DESIGN.md).
var labHosts = []struct{ name, seg, cidr, gw string }{
	{"client1", netlab.External, "203.0.113.10/24", "203.0.113.2"},
	{"client2", netlab.External, "203.0.113.11/24", "203.0.113.2"},
	{"inet", netlab.External, "203.0.113.50/24", ""},
	{"member1", netlab.Internal, "198.51.100.11/24", "198.51.100.2"},
	{"member2", netlab.Internal, "198.51.100.12/24", "198.51.100.2"},
	{"peer", netlab.Failover, "192.0.2.2/25", ""},
}

func statePath(dir string) string { return filepath.Join(dir, "state.json") }

// Load reads the state of a running lab (os.ErrNotExist if none).
func Load(dir string) (*State, error) {
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("lab state %s: %w", statePath(dir), err)
	}
	return &s, nil
}

// alive reports whether pid is a QEMU process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.Contains(string(b), "qemu-system")
}

// Running describes a lab that is already up, or "".
func Running(dir string) string {
	s, err := Load(dir)
	if err == nil {
		for name, g := range s.Guests {
			if alive(g.PID) {
				return fmt.Sprintf("%s (pid %d) since %s", name, g.PID, s.Started.Format(time.RFC3339))
			}
		}
	}
	if _, err := os.Stat("/run/netns/" + Prefix + "sw"); err == nil {
		return "namespace " + Prefix + "sw exists"
	}
	return ""
}

// Up builds the lab and boots lb1, leaving them running.
func Up(ctx context.Context, o Options) (*State, error) {
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if r := Running(o.StateDir); r != "" {
		return nil, fmt.Errorf("a lab is already running: %s; run `make lab-down` first", r)
	}
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, err
	}
	st := &State{Started: time.Now(), Guests: map[string]Guest{}, Hosts: map[string]Host{}}
	save := func() error {
		b, _ := json.MarshalIndent(st, "", "  ")
		return os.WriteFile(statePath(o.StateDir), b, 0o644)
	}
	nl, err := netlab.New(Prefix)
	if err != nil {
		return nil, err
	}
	st.Namespaces = append(st.Namespaces, nl.Switch.Name)
	if err := save(); err != nil {
		return nil, err
	}
	for _, h := range labHosts {
		ns, err := nl.Host(h.name, h.seg, []string{h.cidr}, h.gw)
		if ns != nil || err == nil {
			st.Namespaces = append(st.Namespaces, Prefix+h.name)
		}
		if err != nil {
			save()
			return st, err
		}
		st.Hosts[h.name] = Host{Namespace: Prefix + h.name, Segment: h.seg, Address: h.cidr}
	}
	cfg, err := os.ReadFile(filepath.Join(o.ConfigDir, "lb1.yaml"))
	if err != nil {
		return st, err
	}
	var nics []vm.NIC
	for _, seg := range []string{netlab.Failover, netlab.Internal, netlab.External} {
		for m := 1; m <= 2; m++ {
			n := vm.NIC{ID: appliance.NICID(seg, m), MAC: appliance.MAC(1, seg, m), Tap: fmt.Sprintf("t1-%s%d", seg, m)}
			if err := nl.Tap(n.Tap, seg); err != nil {
				return st, err
			}
			nics = append(nics, n)
		}
	}
	logf("booting lb1 under QEMU (TCG)")
	g := Guest{Console: filepath.Join(o.StateDir, "lb1.console"), Log: filepath.Join(o.StateDir, "lb1-console.log"), QMP: filepath.Join(o.StateDir, "lb1.qmp")}
	v, err := vm.Start(ctx, vm.Config{
		Name: "lb1", Kernel: o.Image.Kernel, Initramfs: o.Image.Initramfs,
		Overlay: []cpio.Record{cpio.StaticFile(ramfs.ConfigPath, string(cfg), 0o644)},
		NICs:    nics, Switch: nl.Switch, Dir: o.StateDir, MemMB: 768,
		ConsoleSocket: g.Console, Detach: true,
	})
	if err != nil {
		save()
		return st, err
	}
	g.PID = v.PID()
	st.Guests["lb1"] = g
	if err := save(); err != nil {
		return st, err
	}
	ready, err := v.WaitReady(3 * time.Minute)
	if err != nil {
		return st, err
	}
	g.ReadyS = ready.Seconds()
	st.Guests["lb1"] = g
	return st, save()
}

// Down stops the guests and removes the namespaces recorded in the state.
func Down(dir string) error {
	st, err := Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return errors.New("no lab is running (no state file in " + dir + ")")
	}
	if err != nil {
		return err
	}
	var errs []string
	for name, g := range st.Guests {
		if !alive(g.PID) {
			continue
		}
		if err := syscall.Kill(g.PID, syscall.SIGKILL); err != nil {
			errs = append(errs, fmt.Sprintf("%s pid %d: %v", name, g.PID, err))
		}
		for i := 0; i < 50 && alive(g.PID); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, ns := range st.Namespaces {
		if err := netns.DeleteNamed(ns); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Sprintf("netns %s: %v", ns, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("lab down: %s", strings.Join(errs, "; "))
	}
	return os.RemoveAll(dir)
}

// Attach connects the terminal to a guest's serial console until stdin ends.
func Attach(dir, guest string, stdin io.Reader, stdout io.Writer) error {
	st, err := Load(dir)
	if err != nil {
		return fmt.Errorf("no lab state: %w", err)
	}
	g, ok := st.Guests[guest]
	if !ok {
		return fmt.Errorf("no guest %q in the lab", guest)
	}
	return vm.AttachSocket(g.Console, stdin, stdout)
}

// Describe tells a person how to use the running lab.
func (s *State) Describe(dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Fulcrum lab is up.\n")
	for name, g := range s.Guests {
		fmt.Fprintf(&b, "  %s: ready %.1fs after QEMU start (pid %d)\n", name, g.ReadyS, g.PID)
		fmt.Fprintf(&b, "      serial console: go run ./qemu/cmd/fulcrum-lab console %s   (or: socat -,raw,echo=0 UNIX-CONNECT:%s)\n", name, g.Console)
		fmt.Fprintf(&b, "      console log:    %s\n", g.Log)
	}
	fmt.Fprintf(&b, "  hosts (run commands in them with: ip netns exec <namespace> <cmd>):\n")
	for _, h := range labHosts {
		x := s.Hosts[h.name]
		fmt.Fprintf(&b, "      %-8s %-16s on %-4s  %s\n", h.name, x.Address, x.Segment, x.Namespace)
	}
	fmt.Fprintf(&b, "  try: ip netns exec %sclient1 ping -c 3 203.0.113.2   (lb1's External self IP)\n", Prefix)
	fmt.Fprintf(&b, "  VIPs (203.0.113.100-149) answer once virtual servers are configured.\n")
	fmt.Fprintf(&b, "  stop everything: make lab-down\n")
	return b.String()
}
