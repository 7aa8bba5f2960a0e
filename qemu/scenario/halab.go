package scenario

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
	"github.com/u-root/mkuimage/cpio"
	"github.com/vishvananda/netlink"
)

// BootTimeout bounds QEMU start → ready line under TCG.
const BootTimeout = 3 * time.Minute

// ConfigDir is qemu/configs in the source tree.
func ConfigDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "configs")
}

// ReadConfig reads a config from qemu/configs.
func ReadConfig(name string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(ConfigDir(), name))
	if err != nil {
		return nil, fmt.Errorf("lab config: %w", err)
	}
	return b, nil
}

// Options for Up.
type Options struct {
	// Configs per node (1, 2); default qemu/configs/ha-lb<n>.yaml.
	Configs map[int][]byte
	// Files per node, added to the guest's initramfs overlay.
	Files map[int][]cpio.Record
	// Report receives the boot-to-ready times (may be nil).
	Report *Report
}

// HA is a running two-node HA lab inside a test.
type HA struct {
	Lab    *netlab.Lab
	Img    appliance.Image
	Hosts  map[string]*netlab.Namespace
	Report *Report

	t       testing.TB
	ctx     context.Context
	servers map[string]context.CancelFunc
	mu      sync.Mutex
	nodes   map[int]*vm.VM
	readyIn map[int]time.Duration // QEMU start → ready line of the last boot
	configs map[int][]byte
	files   map[int][]cpio.Record
}

// Up builds the HA lab in namespaces named ha<hex>-*, starts the member
// servers, boots lb1 and lb2 side by side and waits until both are ready and
// lb1 serves the NAT VIP. Everything is removed when t ends.
func Up(t testing.TB, o Options) *HA {
	t.Helper()
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	lab, err := netlab.New(fmt.Sprintf("ha%04x-", time.Now().UnixNano()&0xffff))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	ctx, stopServers := context.WithCancel(context.Background())
	t.Cleanup(stopServers)
	h := &HA{Lab: lab, Img: img, Hosts: map[string]*netlab.Namespace{}, Report: o.Report, t: t, ctx: ctx,
		servers: map[string]context.CancelFunc{}, nodes: map[int]*vm.VM{}, readyIn: map[int]time.Duration{}, configs: map[int][]byte{}, files: o.Files}
	if h.files == nil {
		h.files = map[int][]cpio.Record{}
	}
	for _, n := range []int{1, 2} {
		h.configs[n] = o.Configs[n]
		if h.configs[n] == nil {
			if h.configs[n], err = ReadConfig(fmt.Sprintf("ha-lb%d.yaml", n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, hs := range HostPlan() {
		ns, err := lab.Host(hs.Name, hs.Segment, []string{hs.CIDR}, hs.Gateway)
		if err != nil {
			t.Fatal(err)
		}
		h.Hosts[hs.Name] = ns
		if hs.Serve {
			if err := h.StartServer(hs.Name); err != nil {
				t.Fatal(err)
			}
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for _, n := range []int{1, 2} {
		if err := h.start(n, h.configs[n]); err != nil {
			t.Fatal(err)
		}
	}
	var watch1 <-chan hostMarks
	if h.Report != nil {
		watch1 = h.watchBoot(1, BootTimeout+time.Minute)
	}
	for _, n := range []int{1, 2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[n] = h.waitReady(n, "first boot")
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := h.WaitServing(VIPNAT, 1, 60*time.Second); err != nil {
		t.Fatalf("after boot: %v", err)
	}
	if err := h.WaitAllMembers(VIPNAT, 60*time.Second); err != nil {
		t.Fatalf("after boot: %v", err)
	}
	// The serial consoles lag the guests: wait until both nodes' VRRP state
	// lines are in, so later checks compare against a settled history.
	for n, want := range map[int]string{1: "MASTER", 2: "BACKUP"} {
		if err := h.WaitVRRPState(n, want, 30*time.Second); err != nil {
			t.Fatalf("after boot: %v", err)
		}
	}
	if h.Report != nil {
		if err := h.reportBootTimes(1, h.readyAfter(1), watch1); err != nil {
			t.Fatalf("after boot: %v", err)
		}
	}
	return h
}

func (h *HA) readyAfter(n int) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.readyIn[n]
}

// WaitVRRPState waits until node n's last logged VRRP state is state.
func (h *HA) WaitVRRPState(n int, state string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		st := h.VRRPStates(n)
		if len(st) > 0 && st[len(st)-1] == state {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s VRRP states %v, want it to end %s within %v", NodeName(n), st, state, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// WaitAllMembers waits until every pool member has answered through vip
// (health checks bring members into the pool one by one after boot).
func (h *HA) WaitAllMembers(vip string, timeout time.Duration) error {
	c := h.Client(vipClient(vip))
	seen := map[string]bool{}
	deadline := time.Now().Add(timeout)
	for len(seen) < len(Members()) {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %v answered through %s within %v", seen, vip, timeout)
		}
		if r, err := c.Get(vip); err == nil {
			seen[r.Member] = true
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// ServeFiles serves files (by name) over HTTP on port 8080 of a lab host,
// for example configs for `lbctl config apply URL` from the admin host on
// the management network. It returns the base URL.
func (h *HA) ServeFiles(host string, files map[string][]byte) (string, error) {
	ln, err := ListenIn(h.Hosts[host], ":8080")
	if err != nil {
		return "", err
	}
	mux := http.NewServeMux()
	for name, b := range files {
		mux.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) { w.Write(b) })
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-h.ctx.Done()
		srv.Close()
	}()
	go srv.Serve(ln)
	var addr string
	for _, hs := range HostPlan() {
		if hs.Name == host {
			addr = hs.Addr()
		}
	}
	return "http://" + addr + ":8080", nil
}

func (h *HA) start(n int, cfg []byte) error {
	v, err := StartGuest(context.Background(), h.Lab, h.Img, GuestOptions{Node: n, Config: cfg, Files: h.files[n], Dir: h.t.TempDir()})
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.nodes[n] = v
	h.mu.Unlock()
	t := h.t
	t.Cleanup(func() {
		v.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(v.LogPath); err == nil {
				if len(b) > 6000 {
					b = b[len(b)-6000:]
				}
				t.Logf("%s console log (last 6000 bytes):\n%s", v.Config.Name, b)
			}
		}
	})
	return nil
}

// readyRE matches init's ready line, or its maintenance notice (a config
// the appliance refused), so a broken boot fails at once.
var readyRE = regexp.MustCompile(`fulcrum: ready|fulcrum: MAINTENANCE[^\n]*\n[^\n]*\n[^\n]*\n[^\n]*`)

func (h *HA) waitReady(n int, what string) error {
	v := h.Node(n)
	m, err := v.Console.Expect(readyRE, BootTimeout)
	if err != nil {
		return fmt.Errorf("%s not ready: %w", NodeName(n), err)
	}
	if m[0] != "fulcrum: ready" {
		return fmt.Errorf("%s booted into maintenance: %s", NodeName(n), m[0])
	}
	d := time.Since(v.Started)
	h.mu.Lock()
	h.readyIn[n] = d
	h.mu.Unlock()
	if h.Report != nil {
		h.Report.Add("boot ("+what+")", NodeName(n)+" QEMU start → ready", "%.1f s", d.Seconds())
	}
	h.t.Logf("%s: QEMU start → ready %.1fs (%s)", NodeName(n), d.Seconds(), what)
	return nil
}

// StartServer starts the member server of a lab host (port 80).
func (h *HA) StartServer(host string) error {
	ln, err := ListenIn(h.Hosts[host], fmt.Sprintf(":%d", ServicePort))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(h.ctx)
	h.mu.Lock()
	h.servers[host] = cancel
	h.mu.Unlock()
	go Serve(ctx, ln, host)
	return nil
}

// StopServer stops a lab host's member server (its port 80 then refuses
// connections).
func (h *HA) StopServer(host string) {
	h.mu.Lock()
	cancel := h.servers[host]
	delete(h.servers, host)
	h.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Node is node n's running guest.
func (h *HA) Node(n int) *vm.VM {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nodes[n]
}

// Config is the config node n booted with.
func (h *HA) Config(n int) []byte { return h.configs[n] }

// Kill ends node n's QEMU at once (power loss).
func (h *HA) Kill(n int) { h.Node(n).Kill() }

// Boot starts node n again (after Kill) with cfg (nil: its last config) and
// waits for its ready line; it returns QEMU start → ready.
func (h *HA) Boot(n int, cfg []byte, what string) error {
	if cfg == nil {
		cfg = h.configs[n]
	}
	h.configs[n] = cfg
	if err := h.start(n, cfg); err != nil {
		return err
	}
	return h.waitReady(n, what)
}

// Run runs a shell command on node n's console.
func (h *HA) Run(n int, cmd string) (string, error) {
	return h.Node(n).Run(cmd, 90*time.Second)
}

// Client is a client in the named lab host.
func (h *HA) Client(host string) *Client {
	ns, ok := h.Hosts[host]
	if !ok {
		h.t.Fatalf("no lab host %q", host)
	}
	return &Client{NS: ns, Name: host}
}

// vipClient is the host that reaches vip on its own segment.
func vipClient(vip string) string {
	if vip == VIPInternal {
		return "iclient"
	}
	return "client1"
}

// ServingNode makes a request to vip and tells which node answered it, from
// the MAC the client's neighbour table holds for vip.
func (h *HA) ServingNode(vip string) (int, error) {
	host := vipClient(vip)
	if _, err := h.Client(host).Get(vip); err != nil {
		return 0, err
	}
	return h.NeighbourNode(host, vip)
}

// NeighbourNode is the node whose MAC host's neighbour table holds for ip.
func (h *HA) NeighbourNode(host, ip string) (int, error) {
	ns := h.Hosts[host]
	link, err := ns.Netlink().LinkByName("eth0")
	if err != nil {
		return 0, err
	}
	neighs, err := ns.Netlink().NeighList(link.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return 0, fmt.Errorf("neighbours of %s: %w", host, err)
	}
	want := net.ParseIP(ip)
	for _, n := range neighs {
		if n.IP.Equal(want) && len(n.HardwareAddr) == 6 {
			return NodeOfMAC(n.HardwareAddr), nil
		}
	}
	return 0, fmt.Errorf("%s has no neighbour entry for %s", host, ip)
}

// WaitServing waits until node serves vip.
func (h *HA) WaitServing(vip string, node int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		got, err := h.ServingNode(vip)
		if err == nil && got == node {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("%s not served by %s within %v: %w", vip, NodeName(node), timeout, err)
			}
			return fmt.Errorf("%s served by %s, not %s, after %v", vip, NodeName(got), NodeName(node), timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

var vrrpStateRE = regexp.MustCompile(`vrrpd\| [^\n]*msg="state: [^"]*"[^\n]*\bto=([A-Za-z]+)`)

// VRRPStates lists the VRRP states node n's vrrpd has logged on its console
// so far (its current guest only), e.g. [BACKUP MASTER].
func (h *HA) VRRPStates(n int) []string {
	var out []string
	for _, m := range vrrpStateRE.FindAllStringSubmatch(h.Node(n).Console.Output(), -1) {
		out = append(out, m[1])
	}
	return out
}

// Holds reports whether node n has addr on one of its interfaces (asked on
// its console).
func (h *HA) Holds(n int, addr string) (bool, error) {
	out, err := h.Run(n, "ip addr")
	if err != nil {
		return false, err
	}
	return regexp.MustCompile(`inet ` + regexp.QuoteMeta(addr) + `/`).MatchString(out), nil
}
