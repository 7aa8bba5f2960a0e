// Package lab is the interactive QEMU lab behind `make lab`: the two-node HA
// lab of qemu/scenario (lb1 master, lb2 backup, clients, members, an
// "internet" host and a management host) in namespaces named fulcrum-*, with
// the appliance guests detached and their serial consoles on unix sockets,
// and member servers as processes inside the member namespaces. Everything
// it makes (namespaces, which hold the bridges, taps and veths; QEMU and
// member-server PIDs) is recorded in a state file, and Down removes exactly
// that.
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/qemu/scenario"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
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
	Config  string  `json:"config"`
	ReadyS  float64 `json:"ready_seconds"`
}

// Host is a namespace host of the lab.
type Host struct {
	Namespace string `json:"namespace"`
	Segment   string `json:"segment"`
	Address   string `json:"address"`
	// ServerPID is the member server process (0: none).
	ServerPID int    `json:"server_pid,omitempty"`
	ServerLog string `json:"server_log,omitempty"`
}

// Options for Up.
type Options struct {
	StateDir  string
	Image     appliance.Image
	ConfigDir string // holds ha-lb1.yaml and ha-lb2.yaml
	// ServeCommand starts a member server: the lab appends the host's name
	// and runs it inside the host's namespace, e.g.
	// [/path/fulcrum-lab serve-member].
	ServeCommand []string
	Log          func(format string, args ...any)
}

// NodeConfigs are the guests of the lab and their config files.
var nodeConfigs = []struct {
	node int
	file string
}{{1, "ha-lb1.yaml"}, {2, "ha-lb2.yaml"}}

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

// running reports whether pid runs a program whose command line contains
// want (so a recycled PID is never mistaken for ours).
func running(pid int, want string) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.Contains(string(b), want)
}

const serverMark = "serve-member"

// Running describes a lab that is already up, or "".
func Running(dir string) string {
	s, err := Load(dir)
	if err == nil {
		for name, g := range s.Guests {
			if running(g.PID, "qemu-system") {
				return fmt.Sprintf("%s (pid %d) since %s", name, g.PID, s.Started.Format(time.RFC3339))
			}
		}
	}
	if _, err := os.Stat("/run/netns/" + Prefix + "sw"); err == nil {
		return "namespace " + Prefix + "sw exists"
	}
	if err == nil {
		return "state file " + statePath(dir) + " exists"
	}
	return ""
}

// Up builds the lab, starts the member servers and boots lb1 and lb2,
// leaving them running. On error the partial lab stays recorded for Down.
func Up(ctx context.Context, o Options) (*State, error) {
	logf := o.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if r := Running(o.StateDir); r != "" {
		return nil, fmt.Errorf("a lab is already running: %s; run `make lab-down` first", r)
	}
	if len(o.ServeCommand) == 0 {
		return nil, errors.New("lab: no member server command")
	}
	if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
		return nil, err
	}
	st := &State{Started: time.Now(), Guests: map[string]Guest{}, Hosts: map[string]Host{}}
	var mu sync.Mutex
	save := func() error {
		mu.Lock()
		defer mu.Unlock()
		b, _ := json.MarshalIndent(st, "", "  ")
		return os.WriteFile(statePath(o.StateDir), b, 0o644)
	}
	configs := map[int][]byte{}
	for _, nc := range nodeConfigs {
		b, err := os.ReadFile(filepath.Join(o.ConfigDir, nc.file))
		if err != nil {
			return nil, fmt.Errorf("lab config: %w", err)
		}
		configs[nc.node] = b
	}
	nl, err := netlab.New(Prefix)
	if err != nil {
		return nil, err
	}
	st.Namespaces = append(st.Namespaces, nl.Switch.Name)
	if err := save(); err != nil {
		return st, err
	}
	for _, h := range scenario.HostPlan() {
		ns, err := nl.Host(h.Name, h.Segment, []string{h.CIDR}, h.Gateway)
		if ns != nil || err == nil {
			st.Namespaces = append(st.Namespaces, Prefix+h.Name)
		}
		if err != nil {
			save()
			return st, err
		}
		host := Host{Namespace: Prefix + h.Name, Segment: h.Segment, Address: h.CIDR}
		if h.Serve {
			host.ServerLog = filepath.Join(o.StateDir, h.Name+"-server.log")
			pid, err := startServer(ns, append(append([]string{}, o.ServeCommand...), h.Name), host.ServerLog)
			if err != nil {
				save()
				return st, err
			}
			host.ServerPID = pid
		}
		st.Hosts[h.Name] = host
		if err := save(); err != nil {
			return st, err
		}
	}
	vms := map[int]*vm.VM{}
	for _, nc := range nodeConfigs {
		name := scenario.NodeName(nc.node)
		logf("booting %s under QEMU (TCG)", name)
		g := Guest{Console: filepath.Join(o.StateDir, name+".console"), Log: filepath.Join(o.StateDir, name+"-console.log"),
			QMP: filepath.Join(o.StateDir, name+".qmp"), Config: filepath.Join(o.ConfigDir, nc.file)}
		v, err := scenario.StartGuest(ctx, nl, o.Image, scenario.GuestOptions{
			Node: nc.node, Config: configs[nc.node], Dir: o.StateDir, MemMB: 640,
			ConsoleSocket: g.Console, Detach: true, ManualLogin: true,
		})
		if err != nil {
			save()
			return st, err
		}
		g.PID = v.PID()
		vms[nc.node] = v
		mu.Lock()
		st.Guests[name] = g
		mu.Unlock()
		if err := save(); err != nil {
			return st, err
		}
	}
	errs := make(chan error, len(vms))
	for n, v := range vms {
		go func() {
			ready, err := v.WaitReady(scenario.BootTimeout)
			if err == nil {
				mu.Lock()
				g := st.Guests[scenario.NodeName(n)]
				g.ReadyS = ready.Seconds()
				st.Guests[scenario.NodeName(n)] = g
				mu.Unlock()
				logf("%s ready after %.1fs", scenario.NodeName(n), ready.Seconds())
			}
			errs <- err
		}()
	}
	var first error
	for range vms {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if err := save(); err != nil && first == nil {
		first = err
	}
	if first != nil {
		return st, first
	}
	c := &scenario.Client{NS: scenario.NamedNS(Prefix + "client1"), Name: "client1"}
	if r, err := c.Wait(scenario.VIPNAT, 60*time.Second); err != nil {
		logf("warning: the NAT VIP does not answer yet: %v", err)
	} else {
		logf("client1 → %s answered: %s", scenario.VIPNAT, r)
	}
	return st, nil
}

// startServer starts a member server process inside ns, in its own session
// so it outlives the lab command, with its output in logPath.
func startServer(ns *netlab.Namespace, argv []string, logPath string) (int, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return 0, err
	}
	defer logFile.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := ns.Do(cmd.Start); err != nil {
		return 0, fmt.Errorf("member server in %s: %w", ns.Name, err)
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	return pid, nil
}

// kill ends pid if it still runs want, and waits up to 5 s for it to go.
func kill(pid int, want string) error {
	if !running(pid, want) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	for i := 0; i < 50 && running(pid, want); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if running(pid, want) {
		return fmt.Errorf("pid %d still running", pid)
	}
	return nil
}

// Down stops the guests and member servers and removes the namespaces (with
// their bridges, taps and veths) recorded in the state.
func Down(dir string) error {
	st, err := Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat("/run/netns/" + Prefix + "sw"); serr == nil {
			return errors.New("no lab state in " + dir + ", but namespace " + Prefix + "sw exists: remove the lab's namespaces by hand (ip netns list | grep " + Prefix + ")")
		}
		return errors.New("no lab is running (no state file in " + dir + ")")
	}
	if err != nil {
		return err
	}
	var errs []string
	for name, g := range st.Guests {
		if err := kill(g.PID, "qemu-system"); err != nil {
			errs = append(errs, fmt.Sprintf("%s pid %d: %v", name, g.PID, err))
		}
	}
	for name, h := range st.Hosts {
		if err := kill(h.ServerPID, serverMark); err != nil {
			errs = append(errs, fmt.Sprintf("%s server pid %d: %v", name, h.ServerPID, err))
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
	fmt.Fprintf(&b, "Fulcrum HA lab is up: lb1 (VRRP master) and lb2 (backup).\n")
	names := make([]string, 0, len(s.Guests))
	for name := range s.Guests {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		g := s.Guests[name]
		fmt.Fprintf(&b, "  %s: ready %.1fs after QEMU start (pid %d), config %s\n", name, g.ReadyS, g.PID, g.Config)
		fmt.Fprintf(&b, "      serial console: go run ./qemu/cmd/fulcrum-lab console %s   (or: socat -,raw,echo=0 UNIX-CONNECT:%s)\n", name, g.Console)
		fmt.Fprintf(&b, "      console log:    %s\n", g.Log)
	}
	fmt.Fprintf(&b, "  console login: %s / %s (then `help`; `shell` for the maintenance shell)\n", appliance.LabUser, appliance.LabPassword)
	fmt.Fprintf(&b, "  hosts (run commands in them with: ip netns exec <namespace> <cmd>):\n")
	for _, h := range scenario.HostPlan() {
		x := s.Hosts[h.Name]
		extra := ""
		if x.ServerPID != 0 {
			extra = fmt.Sprintf("  server pid %d on :%d", x.ServerPID, scenario.ServicePort)
		}
		fmt.Fprintf(&b, "      %-8s %-17s on %-4s  %-16s%s\n", h.Name, x.Address, h.Segment, x.Namespace, extra)
	}
	fmt.Fprintf(&b, "  VIPs (members answer \"<name> <source they see>\"):\n")
	fmt.Fprintf(&b, "      %-15s NAT, round robin           %-15s FullNAT (members see local addresses)\n", scenario.VIPNAT, scenario.VIPFullNAT)
	fmt.Fprintf(&b, "      %-15s NAT, persistence 600 s     %-15s internal FullNAT (from iclient)\n", scenario.VIPSticky, scenario.VIPInternal)
	fmt.Fprintf(&b, "  try: go run ./qemu/cmd/fulcrum-lab get client1 %s     (or: ip netns exec %sclient1 curl -s http://%s/)\n", scenario.VIPNAT, Prefix, scenario.VIPNAT)
	fmt.Fprintf(&b, "       go run ./qemu/cmd/fulcrum-lab get member1 %s      (SNAT: the internet host sees %s)\n", scenario.Internet, scenario.SNATAddress)
	fmt.Fprintf(&b, "  stop everything: make lab-down\n")
	return b.String()
}
