// Package daemon is what every appliance daemon's main shares: the logger
// (logrus at the requested level, text by default, JSON when the config's
// management.log.format says so), the -config and -log-level flags, a
// context cancelled on SIGTERM/SIGINT, the local API socket (ServeSocket)
// and the supervisor contract of package notify: Ready, Heartbeat and the
// "nothing to do, do not restart me" exit (ErrNothingToDo).
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/services/daemon/notify"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

// ErrNothingToDo, returned by a daemon's run function, ends the daemon with
// exit status notify.DoNotRestart: the supervisor leaves it stopped.
var ErrNothingToDo = errors.New("nothing to do on this appliance")

// Main is a whole daemon main: it parses -config and -log-level (plus any
// flags the caller defined before), builds the logger and calls run with a
// context that ends on SIGTERM or SIGINT and carries the supervisor's
// notifier (see Ready and Heartbeat). A run error is logged and exits 1;
// ErrNothingToDo exits notify.DoNotRestart.
func Main(name string, run func(ctx context.Context, configPath string, log *logrus.Entry) error) {
	path := flag.String("config", "/etc/fulcrum/config.yaml", "appliance config file")
	level := flag.String("log-level", "info", "log level (debug, info, warn, error)")
	flag.Parse()
	log, err := Logger(name, *level, *path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	n, err := notify.FromEnv(os.Getenv)
	if err != nil {
		log.WithError(err).Warn("no supervisor notifications")
	}
	ctx, stop := signal.NotifyContext(WithNotifier(context.Background(), n), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(exitCode(run(ctx, *path, log), name, log))
}

// exitCode logs err and maps it to the process exit status.
func exitCode(err error, name string, log logrus.FieldLogger) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrNothingToDo):
		log.WithError(err).Info(name + " has nothing to do; exiting for good")
		return notify.DoNotRestart
	}
	log.WithError(err).Error(name + " failed")
	return 1
}

type notifierKey struct{}

// WithNotifier returns ctx carrying n (Main does this; tests may too).
func WithNotifier(ctx context.Context, n *notify.Notifier) context.Context {
	return context.WithValue(ctx, notifierKey{}, n)
}

func notifier(ctx context.Context) *notify.Notifier {
	n, _ := ctx.Value(notifierKey{}).(*notify.Notifier)
	return n
}

// Ready tells the supervisor the daemon is serving: services started After
// it may start now. Without a supervisor it does nothing.
func Ready(ctx context.Context) { notifier(ctx).Send(notify.Ready) }

// Heartbeat tells the supervisor the daemon is alive. A daemon with a
// watchdog interval (WatchdogInterval) must call it from its main loop more
// often than that, or it is killed and restarted. It never blocks.
func Heartbeat(ctx context.Context) { notifier(ctx).Send(notify.Heartbeat) }

// WatchdogInterval is how long the supervisor lets the daemon go without a
// heartbeat (0: not watched).
func WatchdogInterval(ctx context.Context) time.Duration { return notifier(ctx).Watchdog() }

// PreviousRunHung reports whether the supervisor killed this daemon's
// previous run for missing heartbeats (it was hung, not merely crashed).
func PreviousRunHung() bool {
	return os.Getenv(notify.EnvPreviousRun) == notify.PreviousRunHung
}

// ServeSocket serves the daemon's local API h on the unix socket at path
// (mode 0600: only root) until ctx ends. Every daemon serves its socket
// through it.
func ServeSocket(ctx context.Context, path string, h http.Handler, log logrus.FieldLogger) error {
	return localapi.Serve(ctx, path, h, log)
}

// Logger returns the logger for daemon, formatted as the config at
// configPath asks. An unreadable or invalid config falls back to text: the
// daemon reports the config error itself when it loads it.
func Logger(daemon, level, configPath string) (*logrus.Entry, error) {
	logger := logrus.New()
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("%s: log level: %w", daemon, err)
	}
	logger.SetLevel(lvl)
	if cfg, err := config.Load(configPath); err == nil {
		SetLogFormat(logger, cfg.Access.Log.Format)
	}
	return logger.WithField("daemon", daemon), nil
}

// SetLogFormat switches logger to "json" or "text".
func SetLogFormat(logger *logrus.Logger, format string) {
	if format == "json" {
		logger.SetFormatter(&logrus.JSONFormatter{})
		return
	}
	logger.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true})
}
