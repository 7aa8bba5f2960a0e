// Package boot is what the appliance's PID 1 does: mount, load modules, read
// the config, set up the network, start and supervise the daemons, and power
// off or reboot on request. A broken or missing config never panics the
// kernel: init announces a maintenance state on the console, brings up no
// VIPs, and keeps the console shell running so an operator can look.
package boot

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/init/supervisor"
	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/netsetup"
	"github.com/fulcrum-lb/fulcrum/services/cfgstore"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/logring"
	"github.com/fulcrum-lb/fulcrum/services/manifest"
	"github.com/fulcrum-lb/fulcrum/services/power"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Files baked into the initramfs by the image builder.
const (
	DefaultConfigPath = "/etc/fulcrum/config.yaml"
	ModuleListPath    = "/etc/fulcrum/modules"
	ConsoleTTY        = "/dev/ttyS0"
	BinDir            = "/bbin"
)

// ReadyLine is printed on the console once the appliance is up; the QEMU lab
// waits for it.
const ReadyLine = "fulcrum: ready"

// MaintenanceLine starts the console announcement of maintenance state.
const MaintenanceLine = "fulcrum: MAINTENANCE"

// ConsoleCLI is the program on the serial console: login, then the lbctl
// CLI (its `shell` command gives the maintenance shell, ConsoleShell).
const (
	ConsoleCLI   = BinDir + "/lbctl"
	ConsoleShell = "/bin/sh"
)

// Init is PID 1's state.
type Init struct {
	Log     *logrus.Logger
	Console *os.File
	Cmdline Cmdline

	ring  *logring.Ring // the console log, for `show log` and syslog
	times *timeline     // this boot's phases (`show boot`, timesPath)
	// timesPath is where the boot record is written (BootTimesPath).
	timesPath string
	reaper    *supervisor.Reaper
	sup       *supervisor.Supervisor
	cancel    context.CancelFunc
}

// Run is PID 1's main. It never returns.
func Run() {
	console, err := os.OpenFile("/dev/console", os.O_WRONLY, 0)
	if err != nil {
		console = os.Stderr
	}
	ring := logring.New(2000)
	log := logrus.New()
	log.SetOutput(io.MultiWriter(console, ring))
	log.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	in := &Init{Log: log, Console: console, ring: ring, times: newTimeline(bootClock), timesPath: BootTimesPath}
	in.times.mark(localapi.PhaseInit)
	in.say("%s (%.3fs after kernel start)", localapi.InitStartedLine, in.times.times().KernelShare().Seconds())
	defer func() {
		if r := recover(); r != nil {
			in.maintenanceForever(fmt.Sprintf("init crashed: %v", r))
		}
	}()
	in.boot()
}

func (in *Init) say(format string, args ...any) {
	fmt.Fprintf(in.Console, format+"\n", args...)
}

func (in *Init) boot() {
	start := time.Now()
	log := in.Log.WithField("component", "init")
	if err := mountAll(log); err != nil {
		log.WithError(err).Error("some filesystems did not mount")
	}
	b, _ := os.ReadFile("/proc/cmdline")
	in.Cmdline = ParseCmdline(string(b))

	in.reaper = supervisor.NewReaper()
	go in.reaper.Run(make(chan struct{}))
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	in.sup = supervisor.New(in.Log, in.reaper)
	in.sup.Output = io.MultiWriter(in.Console, in.ring)
	go in.serveStatus(ctx)
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, power.PowerOffSignal, power.RebootSignal, unix.SIGINT)

	if err := unix.Sethostname([]byte("fulcrum")); err != nil {
		log.WithError(err).Warn("setting host name")
	}
	modules, err := readList(ModuleListPath)
	if err != nil {
		log.WithError(err).Error("no module list; loading none")
	}

	// Disk and filesystem modules first: the config may be on a partition.
	// PCI drivers for hardware this machine lacks are left out: they were
	// most of the module loading time under TCG (issue 19).
	modules = presentHardwareOnly(log, modules)
	if err := loadModules(log, modules); err != nil {
		log.WithError(err).Error("continuing without them")
	}
	in.times.mark(localapi.PhaseModules)
	choice, byURL := in.chooseConfigWithURL(ctx, log) // fulcrum.config_url, see configurl.go
	if byURL.Fetched {
		choice.Store = cfgstore.Descriptor{Why: "config fetched from " + byURL.URL + " (PXE)"}
	}
	keepStoreState(log, choice)
	in.say("fulcrum: config: %s", choice.Source)
	cfgPath := choice.Path
	cfg, cfgErr := config.Load(cfgPath)
	if cfgErr == nil && len(cfg.Kernel.Modules) > 0 {
		if err := loadModules(log, cfg.Kernel.Modules); err != nil {
			log.WithError(err).Error("continuing without them")
		}
	}
	if cfgErr != nil && (choice.Partition != "" || byURL.Fetched) {
		cfgErr = fmt.Errorf("%s: %w", choice.Source, cfgErr)
	}
	byURL.keepOrRelease(cfg, cfgErr, log)
	in.times.mark(localapi.PhaseConfig)

	var trouble string
	if cfgErr != nil {
		trouble = cfgErr.Error()
	} else {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			log.WithError(err).Warn("setting host name")
		}
		ns := &netsetup.Setup{Log: in.Log.WithField("component", "netsetup"), LinkWait: 5 * time.Second}
		if _, err := ns.Apply(ctx, &cfg.Network); err != nil {
			trouble = "network setup failed: " + err.Error()
		} else {
			in.times.mark(localapi.PhaseNetwork)
		}
	}

	banner := "\nFulcrum load-balancer appliance console (log in, then 'help'; 'shell' for the maintenance shell)\n"
	if trouble != "" {
		banner = in.announceMaintenance(trouble) + banner
	} else {
		in.startDaemons(ctx, cfgPath)
		in.times.mark(localapi.PhaseDaemons)
	}
	if svc, ok := in.consoleService(cfgPath, trouble, banner); ok {
		in.sup.Start(ctx, svc)
	}
	if trouble == "" {
		in.times.mark(localapi.PhaseReady)
		in.say("%s (host %s, %.1fs after init start)", ReadyLine, cfg.Hostname, time.Since(start).Seconds())
		go in.recordDaemonsReady(ctx, bootTimesWait)
	} else {
		in.times.finish()
		in.writeBootTimes()
	}
	in.waitForPower(signals)
}

// The daemons whose readiness ends the boot: lbd once its first config is
// applied, then vrrpd once VRRP runs (services/manifest).
const (
	firstApplyDaemon = "lbd"
	vrrpDaemon       = "vrrpd"
)

// bootTimesWait bounds the wait for the daemons' readiness in the boot
// record (a daemon that never gets ready leaves its phase out).
const bootTimesWait = 2 * time.Minute

// recordDaemonsReady completes the boot record once lbd and vrrpd have
// reported ready (or wait has passed), prints it on the console and writes
// BootTimesPath.
func (in *Init) recordDaemonsReady(ctx context.Context, wait time.Duration) {
	in.writeBootTimes()
	timeout := time.NewTimer(wait)
	defer timeout.Stop()
	for _, step := range []struct {
		daemon string
		phase  localapi.BootPhase
	}{{firstApplyDaemon, localapi.PhaseFirstApply}, {vrrpDaemon, localapi.PhaseVRRP}} {
		ready := in.sup.ReadyC(step.daemon)
		if ready == nil {
			continue // not run on this boot
		}
		select {
		case <-ready:
			in.times.mark(step.phase)
		case <-timeout.C:
			in.Log.WithFields(logrus.Fields{"component": "init", "service": step.daemon, "waited": wait.String()}).Warn("boot times: not ready; recording the boot without it")
		case <-ctx.Done():
			return
		}
	}
	in.times.finish()
	in.say("%s", in.times.times().ConsoleLine())
	in.writeBootTimes()
}

func (in *Init) writeBootTimes() {
	if err := in.times.writeJSON(in.timesPath); err != nil {
		in.Log.WithError(err).Warn("boot times not written")
	}
}

// consoleService is the login + CLI on the serial console. In maintenance
// the login notice repeats the reason; the CLI's `shell` still gives the
// shell for inspection. The login fails closed (no usable password hash:
// nobody logs in) except in recovery mode (kernel argument
// fulcrum.recovery=1), announced here. Without lbctl in the image there is
// no login at all: the bare shell is started only in recovery mode.
func (in *Init) consoleService(cfgPath, trouble, banner string) (supervisor.Service, bool) {
	env := []string{"PATH=/bbin:/bin:/ubin", "HOME=/tmp"}
	recovery := in.Cmdline[ParamRecovery] == "1"
	if recovery {
		in.say("\n*** RECOVERY MODE (%s=1 on the kernel command line): admin logs in at the serial console %s WITHOUT a password. Reboot without it when done. ***\n", ParamRecovery, ConsoleTTY)
		in.Log.WithField("tty", ConsoleTTY).Warn("recovery mode: passwordless console login")
	}
	if _, err := os.Stat(ConsoleCLI); err != nil {
		if !recovery {
			in.say("fulcrum: no %s in the image: no console login (boot with %s=1 for a recovery shell)", ConsoleCLI, ParamRecovery)
			return supervisor.Service{}, false
		}
		return supervisor.Service{Name: "console", Path: ConsoleShell, TTY: ConsoleTTY, Banner: banner, Env: env}, true
	}
	args := []string{"-console", "-config", cfgPath}
	if trouble != "" {
		args = append(args, "-notice", MaintenanceLine+": the appliance is NOT load balancing (see above); 'shell' to inspect")
	}
	if recovery {
		args = append(args, "-recovery")
	}
	return supervisor.Service{Name: "console", Path: ConsoleCLI, Args: args, TTY: ConsoleTTY, Banner: banner, Env: env}, true
}

// announceMaintenance logs the reason loudly and returns the console banner.
func (in *Init) announceMaintenance(reason string) string {
	lines := []string{
		"",
		"****************************************************************",
		MaintenanceLine + ": the appliance is NOT load balancing.",
		"No VIPs are announced and no daemons run. Reason:",
	}
	for _, l := range strings.Split(reason, "\n") {
		lines = append(lines, "  "+l)
	}
	lines = append(lines, "Fix the config (kernel argument "+ParamConfig+"=PATH to use another) and reboot.",
		"****************************************************************", "")
	msg := strings.Join(lines, "\n")
	in.say("%s", msg)
	in.Log.WithField("reason", reason).Error("maintenance state")
	return msg
}

// startDaemons starts the daemons of services/manifest that are in the
// image (and, with fulcrum.services=, asked for) under the supervisor.
func (in *Init) startDaemons(ctx context.Context, cfgPath string) {
	var svcs []supervisor.Service
	for _, d := range in.daemons() {
		p := filepath.Join(BinDir, d.Name)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		svcs = append(svcs, supervisor.Service{Name: d.Name, Path: p, Args: append([]string{"-config", cfgPath}, d.Args...), After: d.After, Watchdog: d.Watchdog})
	}
	in.sup.StartAll(ctx, svcs...)
}

// daemons are the manifest's daemons the kernel command line asks for
// (fulcrum.services=a,b; all when absent).
func (in *Init) daemons() []manifest.Daemon {
	all := manifest.Daemons()
	v, ok := in.Cmdline[ParamServices]
	if !ok {
		return all
	}
	want := strings.Split(v, ",")
	return slices.DeleteFunc(all, func(d manifest.Daemon) bool { return !slices.Contains(want, d.Name) })
}

// waitForPower blocks until a power signal arrives, then stops services and
// powers off or reboots.
func (in *Init) waitForPower(signals <-chan os.Signal) {
	for s := range signals {
		a := power.ForSignal(s)
		if s == unix.SIGINT { // ctrl-alt-del
			a = power.Reboot
		}
		if a == power.None {
			continue
		}
		in.say("fulcrum: %s requested; stopping services", a)
		in.cancel()
		done := make(chan struct{})
		go func() { in.sup.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			in.Log.Warn("services did not stop within 15s")
		}
		in.say("fulcrum: services stopped; %s now", a)
		if err := power.Finish(a); err != nil {
			in.Log.WithError(err).Error("power action failed")
		}
	}
}

// maintenanceForever is the last resort after a crash in init itself: say so
// and keep PID 1 alive (its exit would panic the kernel).
func (in *Init) maintenanceForever(reason string) {
	in.announceMaintenance(reason)
	for {
		time.Sleep(time.Hour)
	}
}
