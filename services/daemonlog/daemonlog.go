// Package daemonlog gives every appliance daemon the same logger: logrus at
// the requested level, text by default, JSON when the config's
// management.log.format says so.
package daemonlog

import (
	"fmt"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/sirupsen/logrus"
)

// New returns the logger for daemon, formatted as the config at
// configPath asks. An unreadable or invalid config falls back to text: the
// daemon reports the config error itself when it loads it.
func New(daemon, level, configPath string) (*logrus.Entry, error) {
	logger := logrus.New()
	lvl, err := logrus.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("%s: log level: %w", daemon, err)
	}
	logger.SetLevel(lvl)
	if cfg, err := config.Load(configPath); err == nil {
		SetFormat(logger, cfg.Access.Log.Format)
	}
	return logger.WithField("daemon", daemon), nil
}

// SetFormat switches logger to "json" or "text".
func SetFormat(logger *logrus.Logger, format string) {
	if format == "json" {
		logger.SetFormatter(&logrus.JSONFormatter{})
		return
	}
	logger.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true})
}
