// Package daemon is what every appliance daemon's main shares: the logger
// (logrus at the requested level, text by default, JSON when the config's
// management.log.format says so), the -config and -log-level flags, and a
// context cancelled on SIGTERM/SIGINT.
package daemon

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/sirupsen/logrus"
)

// Main is a whole daemon main: it parses -config and -log-level (plus any
// flags the caller defined before), builds the logger and calls run with a
// context that ends on SIGTERM or SIGINT. A run error is logged and exits 1.
func Main(name string, run func(ctx context.Context, configPath string, log *logrus.Entry) error) {
	path := flag.String("config", "/etc/fulcrum/config.yaml", "appliance config file")
	level := flag.String("log-level", "info", "log level (debug, info, warn, error)")
	flag.Parse()
	log, err := Logger(name, *level, *path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *path, log); err != nil {
		log.WithError(err).Error(name + " failed")
		stop()
		os.Exit(1)
	}
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
