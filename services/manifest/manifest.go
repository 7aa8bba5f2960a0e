// Package manifest is the one list of the appliance's programs. The image
// builder (image/build) compiles exactly these into the initramfs, and init
// (init/boot) starts and supervises the daemons from it, in this order.
//
// Every daemon runs as /bbin/NAME -config PATH [Args...] under init's
// supervisor (init/supervisor), which restarts it when it exits, except with
// the documented do-not-restart status 125 (package
// services/daemon/notify): a daemon with nothing to do on this appliance
// exits 125 and stays stopped.
package manifest

import "time"

// CmdDir is where, relative to the module root, each program's main
// package lives: CmdDir/NAME.
const CmdDir = "services/cmd"

// Daemon is one supervised daemon.
type Daemon struct {
	// Name is the program (CmdDir/Name, /bbin/Name) and the service name.
	Name string
	// Args follow -config PATH.
	Args []string
	// After names daemons that must report ready (daemon.Ready) before this
	// one starts.
	After []string
	// Watchdog, when set, is the longest the daemon may go without a
	// heartbeat (daemon.Heartbeat) once it has sent one; then it is killed
	// and restarted.
	Watchdog time.Duration
}

// Daemons are the appliance's daemons in start order.
func Daemons() []Daemon {
	return []Daemon{
		// The LB daemon: IPVS, nftables, addresses, health checks. Ready once
		// its first config is applied.
		{Name: "lbd"},
		// VRRP: takes the virtual addresses only once lbd can serve them;
		// heartbeats from its main loop, so a hung vrrpd (still holding the
		// VIPs while the backup takes them too) is killed within 3s.
		{Name: "vrrpd", After: []string{"lbd"}, Watchdog: 3 * time.Second},
		// The L7 proxy (mode http/https virtual servers): follows lbd's
		// member health; listens with IP_FREEBIND, so it serves the VIPs as
		// soon as vrrpd moves them here.
		{Name: "l7d", After: []string{"lbd"}},
		// The management API and syslog forwarding.
		{Name: "mgmtd"},
		// DHCP on the management NIC (exits 125 when not configured).
		{Name: "dhcpc"},
	}
}

// Tools are the appliance's other programs: the console CLI and power.
func Tools() []string { return []string{"lbctl", "power"} }

// Programs is every program name: the daemons, then the tools.
func Programs() []string {
	var out []string
	for _, d := range Daemons() {
		out = append(out, d.Name)
	}
	return append(out, Tools()...)
}
