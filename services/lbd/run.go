package lbd

// The LB daemon's wiring: kernel back-ends, applier, controller, health
// checks, local API, SIGHUP reloads and the drainer (services/cmd/lbd is
// only its command line).

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/health"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/addrs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/filter"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nat"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nldump"
	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/fulcrum-lb/fulcrum/services/cfgstore"
	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Options are the LB daemon's settings (its command line).
type Options struct {
	ConfigPath string
	// DrainTimeout is how long a removed member may finish its connections
	// (0: delete at once).
	DrainTimeout time.Duration
	// Socket is the local API's unix socket ("" for none).
	Socket string
}

// Run is the LB daemon until ctx ends (daemon.Main's run function). It
// reports ready (daemon.Ready) once the first config is in the kernel.
func Run(ctx context.Context, o Options, log *logrus.Entry) error {
	path := o.ConfigPath
	h, err := ipvs.Open("")
	if err != nil {
		return fmt.Errorf("cannot reach IPVS: %w", err)
	}
	defer h.Close()
	rec := ipvs.NewReconciler(h, log, ipvs.Options{DrainTimeout: o.DrainTimeout})
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("cannot open rtnetlink: %w", err)
	}
	defer nl.Close()
	a := &lbapply.Applier{Addrs: addrs.NewOwner(nl, log), NAT: nat.NewManager(-1, log), Filter: filter.NewManager(-1, log), IPVS: rec,
		ResolveIface: func(mac string) (string, error) { return nicByMAC(nl, mac) }, Log: log}
	if rel, scheds, err := kernelSchedulers(); err != nil {
		log.WithError(err).Warn("cannot list the kernel's IPVS schedulers: a config naming a missing one fails at apply instead of at check")
	} else {
		a.Schedulers, a.Kernel = scheds, rel
	}
	ctrl := lbapply.NewController(a, nil, log)
	ctrl.Restore = restoreOverrides(path, log)
	sched := health.NewScheduler(health.Options{Log: log, OnTransition: ctrl.OnTransition})
	ctrl.SetHealth(sched)
	go sched.Run(ctx)
	reader, err := ipvs.Open("") // the local API's own handle, for reads
	if err != nil {
		return fmt.Errorf("cannot reach IPVS: %w", err)
	}
	defer reader.Close()
	reload := make(chan struct{}, 1)
	api := New(path, ctrl, reader, log)
	store, err := cfgstore.Open(cfgstore.DescriptorPath, cfgstore.DefaultKeep)
	if err != nil {
		return err
	}
	store.Pause = testPause(log)
	api.Store = store
	log.WithField("store", store.Where()).Info("applied configs are kept in the config store")
	var once sync.Once
	ctrl.Ready = func() {
		daemon.Ready(ctx)
		once.Do(func() { go api.RecordRunning() })
	}
	startSync(ctx, api, path, log)
	go api.RunSampler(ctx, SampleEvery)
	if o.Socket != "" {
		go serveSocket(ctx, log, o.Socket, api.Handler())
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default: // a reload is already pending
			}
		}
	}()
	go rec.RunDrainer(ctx, 2*time.Second)
	go rec.RunVerifier(ctx) // the full-table check, off the apply path
	go newPanicWatch(log, time.Minute).run(ctx, ctrl.Status, time.Second)

	if err := ctrl.Run(ctx, path, config.Load, reload); err != nil {
		return fmt.Errorf("initial config not applied: %w", err)
	}
	log.Info("stopping; IPVS and nftables state left in place")
	return nil
}

// startSync starts config sync with the HA peer as the boot config sets
// it up (vrrp.peers, vrrp.sync_key, the failover address): those sections
// change at the next boot only.
func startSync(ctx context.Context, api *Server, path string, log *logrus.Entry) {
	boot, err := config.Load(path)
	if err != nil {
		log.WithError(err).Error("config sync not started: the config does not load")
		return
	}
	slog := log.WithField("part", "config-sync")
	node, err := api.EnableSync(syncSetup(boot), slog)
	if err != nil || node == nil {
		if err != nil {
			slog.WithError(err).Error("config sync not started")
		}
		return
	}
	l, err := node.Listen(ctx)
	if err != nil {
		slog.WithError(err).Error("config sync cannot listen; this node still offers its applies but cannot take the peer's")
		return
	}
	go func() {
		if err := node.Run(ctx, l); err != nil {
			slog.WithError(err).Error("config sync stopped")
		}
	}()
}

// serveSocket serves lbd's local API on its unix socket (mode 0600).
func serveSocket(ctx context.Context, log logrus.FieldLogger, path string, h http.Handler) {
	if err := daemon.ServeSocket(ctx, path, h, log); err != nil {
		log.WithError(err).Warn("status socket not served")
	}
}

// nicByMAC names the NIC with the given MAC (the management NIC, for the
// input filter).
func nicByMAC(nl *netlink.Handle, mac string) (string, error) {
	links, err := nldump.Retry(nl.LinkList)
	if err != nil {
		return "", fmt.Errorf("listing links: %w", err)
	}
	for _, l := range links {
		if strings.EqualFold(l.Attrs().HardwareAddr.String(), mac) {
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("no NIC with MAC %s", mac)
}

// ParamTestStorePause (kernel argument, milliseconds) slows config store
// writes down: lbd logs each write step and sleeps, so the QEMU power-cut
// test can cut power between steps. Never set on a real appliance.
const ParamTestStorePause = "fulcrum.test_store_pause"

func testPause(log logrus.FieldLogger) func(string) {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, ParamTestStorePause+"="); ok {
			ms, err := strconv.Atoi(v)
			if err != nil || ms <= 0 {
				return nil
			}
			return func(step string) {
				log.Warnf("config store test pause: %s", step)
				time.Sleep(time.Duration(ms) * time.Millisecond)
			}
		}
	}
	return nil
}

// restoreOverrides brings back the operator overrides saved next to the
// config at path (before the first apply).
func restoreOverrides(path string, log logrus.FieldLogger) func(*config.Config) engine.Overrides {
	return func(cfg *config.Config) engine.Overrides {
		ovPath := OverridesPath(path)
		ov, dropped, err := LoadOverrides(ovPath, cfg)
		if err != nil {
			log.WithError(err).Error("operator overrides not restored; every member starts enabled")
		}
		if len(dropped) > 0 {
			log.WithField("members", dropped).Warn("saved overrides name members the config no longer has; dropped")
		}
		if len(ov.Disabled) > 0 {
			log.WithField("disabled", len(ov.Disabled)).Infof("operator overrides restored from %s", ovPath)
		}
		return ov
	}
}

// kernelSchedulers returns the running kernel's release and the IPVS
// schedulers its modules directory offers.
func kernelSchedulers() (string, map[string]bool, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", nil, fmt.Errorf("uname: %w", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	s, err := ipvs.Schedulers(filepath.Join("/lib/modules", rel))
	return rel, s, err
}
