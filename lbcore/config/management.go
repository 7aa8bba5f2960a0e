package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
	"golang.org/x/crypto/bcrypt"
)

// Access is the `management` section: who may operate the appliance and how
// its logs leave it. (The management NIC itself is network.management.)
//
//	management:
//	  console:
//	    # bcrypt hash; make one with: go run ./services/cmd/lbctl -hash-password
//	    password_hash: "$2a$10$..."
//	  api:
//	    listen: management      # management (the management NIC) or internal; never external
//	    port: 8080              # default 8443 with TLS, 8080 without
//	    token_sha256: "..."     # hex SHA-256 of the bearer token (or token: "..." in clear)
//	    tls: {cert: /etc/fulcrum/api.crt, key: /etc/fulcrum/api.key}
//	  syslog:
//	    target: udp://192.0.2.200:514   # or tcp://host:port (RFC 5424)
//	  log:
//	    format: text            # text (default) or json
//	    ring_lines: 2000        # lines kept for `show log`
type Access struct {
	Console ConsoleAccess `yaml:"console"`
	API     APIAccess     `yaml:"api"`
	Syslog  SyslogConfig  `yaml:"syslog"`
	Log     LogConfig     `yaml:"log"`
	// ConfigHistory is how many applied configs the appliance keeps for
	// `lbctl config rollback N` (on the config partition when it boots
	// from one); default 5.
	ConfigHistory int `yaml:"config_history"`
}

// ConsoleAccess is the serial console login.
type ConsoleAccess struct {
	// PasswordHash is a bcrypt hash ($2a$, $2b$ or $2y$) of cost
	// MinBcryptCost..MaxBcryptCost. Empty: nobody can log in at the console
	// (except in recovery mode: kernel argument fulcrum.recovery=1).
	PasswordHash string `yaml:"password_hash"`
}

// APIAccess is the HTTP management API.
type APIAccess struct {
	// Listen is the side the API listens on: management or internal.
	Listen string `yaml:"listen"`
	Port   int    `yaml:"port"`
	// Token is the bearer token in clear; TokenSHA256 its hex SHA-256
	// (preferred: the config then does not hold the secret). Neither: the
	// API does not start.
	Token       string `yaml:"token"`
	TokenSHA256 string `yaml:"token_sha256"`
	TLS         *TLS   `yaml:"tls"`
}

// The bcrypt costs a console password hash may have: below, the hash is
// cheap to crack from a leaked config; above, one login takes many seconds
// of CPU on the appliance (cost 31 is days).
const (
	MinBcryptCost = 10
	MaxBcryptCost = 14
)

// CheckPasswordHash tells whether h is a bcrypt hash the console can use:
// $2a$/$2b$/$2y$, 60 characters, a cost within MinBcryptCost..MaxBcryptCost.
func CheckPasswordHash(h string) error {
	if !(strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$")) || len(h) != 60 {
		return errors.New("not a bcrypt hash ($2a$/$2b$/$2y$, 60 characters); make one with `go run ./services/cmd/lbctl -hash-password`")
	}
	cost, err := bcrypt.Cost([]byte(h))
	if err != nil {
		return fmt.Errorf("not a usable bcrypt hash: %v", err)
	}
	if cost < MinBcryptCost || cost > MaxBcryptCost {
		return fmt.Errorf("bcrypt cost %d is outside %d..%d; make a new hash with `go run ./services/cmd/lbctl -hash-password`", cost, MinBcryptCost, MaxBcryptCost)
	}
	return nil
}

// TLS names a certificate and key file (PEM).
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// SyslogConfig is remote log forwarding.
type SyslogConfig struct {
	Target string `yaml:"target"`
}

// LogConfig is the daemons' log format and the in-memory ring size.
type LogConfig struct {
	Format    string `yaml:"format"`
	RingLines int    `yaml:"ring_lines"`
}

// API listen sides.
const (
	ListenManagement = "management"
	ListenInternal   = "internal"
)

// ApplyDefaults fills in defaults; hasMgmtNIC says whether
// network.management is configured.
func (a *Access) ApplyDefaults(hasMgmtNIC bool) {
	if a.API.Listen == "" {
		a.API.Listen = ListenInternal
		if hasMgmtNIC {
			a.API.Listen = ListenManagement
		}
	}
	if a.API.Port == 0 {
		a.API.Port = 8080
		if a.API.TLS != nil {
			a.API.Port = 8443
		}
	}
	if a.Log.Format == "" {
		a.Log.Format = "text"
	}
	if a.Log.RingLines == 0 {
		a.Log.RingLines = 2000
	}
	if a.ConfigHistory == 0 {
		a.ConfigHistory = DefaultConfigHistory
	}
}

// DefaultConfigHistory is management.config_history's default.
const DefaultConfigHistory = 5

// Validate checks the section (paths relative to it); hasMgmtNIC says
// whether network.management is configured.
func (a *Access) Validate(hasMgmtNIC bool) error {
	var errs cfgerr.List
	if h := a.Console.PasswordHash; h != "" {
		if err := CheckPasswordHash(h); err != nil {
			errs.Add("console.password_hash", "%v", err)
		}
	}
	switch a.API.Listen {
	case ListenManagement:
		if !hasMgmtNIC {
			errs.Add("api.listen", "management needs a management NIC (network.management)")
		}
	case ListenInternal:
	case "external":
		errs.Add("api.listen", "the API never listens on the External side; use management or internal")
	default:
		errs.Add("api.listen", "%q is not management or internal", a.API.Listen)
	}
	if a.API.Port < 1 || a.API.Port > 65535 {
		errs.Add("api.port", "%d is not a TCP port", a.API.Port)
	}
	if a.API.Token != "" && a.API.TokenSHA256 != "" {
		errs.Add("api.token", "give token or token_sha256, not both")
	}
	if t := a.API.Token; t != "" && len(t) < 16 {
		errs.Add("api.token", "too short (%d characters; at least 16)", len(t))
	}
	if t := a.API.TokenSHA256; t != "" && !isHex(t, 64) {
		errs.Add("api.token_sha256", "not a hex SHA-256 (64 hex digits)")
	}
	if tls := a.API.TLS; tls != nil {
		if tls.Cert == "" {
			errs.Add("api.tls.cert", "missing: the certificate file (PEM)")
		}
		if tls.Key == "" {
			errs.Add("api.tls.key", "missing: the key file (PEM)")
		}
	}
	if t := a.Syslog.Target; t != "" {
		u, err := url.Parse(t)
		switch {
		case err != nil:
			errs.Add("syslog.target", "%q: %v", t, err)
		case u.Scheme != "udp" && u.Scheme != "tcp":
			errs.Add("syslog.target", "%q: want udp://host:port or tcp://host:port", t)
		case u.Hostname() == "" || u.Path != "":
			errs.Add("syslog.target", "%q: want %s://host:port", t, u.Scheme)
		}
	}
	if a.Log.Format != "text" && a.Log.Format != "json" {
		errs.Add("log.format", "%q is not text or json", a.Log.Format)
	}
	if a.Log.RingLines < 10 || a.Log.RingLines > 100000 {
		errs.Add("log.ring_lines", "%d is outside 10..100000", a.Log.RingLines)
	}
	if a.ConfigHistory < 1 || a.ConfigHistory > 100 {
		errs.Add("config_history", "%d is outside 1..100 (applied configs kept for rollback)", a.ConfigHistory)
	}
	return errs.Err()
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, r := range strings.ToLower(s) {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
