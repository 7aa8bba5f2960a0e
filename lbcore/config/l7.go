package config

import (
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
)

// HTTPOptions are the settings of an L7 virtual server (mode http or
// https), served by the L7 proxy daemon (l7d) over the same pools, members
// and health state as L4 virtual servers.
type HTTPOptions struct {
	Cookie Cookie `yaml:"cookie"`
	// Certificates are the TLS certificates of an https VS; the one whose
	// names match the client's SNI is used, the first one otherwise. The
	// files are read where they are used (l7d), not by validation.
	Certificates []Certificate `yaml:"certificates"`
	// Hosts, when set, are the Host names the VS answers; any other Host
	// gets 421 Misdirected Request. "*.example.com" matches one label.
	Hosts    []string     `yaml:"hosts"`
	Timeouts HTTPTimeouts `yaml:"timeouts"`
	// MaxConnections caps open client connections (at the cap the
	// longest-idle one is closed to make room).
	MaxConnections int `yaml:"max_connections"`
	// MaxHeaderBytes caps the request line and headers (431 beyond).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxBodyBytes caps a request body (413 beyond).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ProxyProtocol sends a PROXY protocol v2 header on every connection
	// to members (they must expect it).
	ProxyProtocol bool `yaml:"proxy_protocol"`
	// ForwardedHeaders sets X-Forwarded-For and X-Forwarded-Proto toward
	// members (default on).
	ForwardedHeaders *bool `yaml:"forwarded_headers"`
}

// Cookie is cookie-insert persistence: the proxy sets a cookie naming the
// member (opaque, authenticated with Secret) and sends a client that
// returns it to the same member while it is healthy.
type Cookie struct {
	Enabled *bool  `yaml:"enabled"` // default on
	Name    string `yaml:"name"`    // default FULCRUM_PERSIST
	// Lifetime of the cookie (Max-Age, and the longest a cookie is honoured);
	// default 3600s.
	Lifetime Duration `yaml:"lifetime"`
	// Secret authenticates cookies (HMAC-SHA256); both HA nodes must have the
	// same one so each honours the other's cookies. Default: derived from
	// vrrp.sync_key. At least 16 characters.
	Secret string `yaml:"secret"`
}

// Certificate is one PEM certificate chain and its key.
type Certificate struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// HTTPTimeouts bound slow and idle clients and members.
type HTTPTimeouts struct {
	Header  Duration `yaml:"header"`  // request line and headers; default 10s
	Read    Duration `yaml:"read"`    // whole request, body included; default 60s
	Idle    Duration `yaml:"idle"`    // keep-alive between requests; default 60s
	Backend Duration `yaml:"backend"` // member's response headers; default 60s
}

// L7 defaults.
const (
	DefaultCookieName     = "FULCRUM_PERSIST"
	DefaultCookieLifetime = 3600 * time.Second
	DefaultHeaderTimeout  = 10 * time.Second
	DefaultReadTimeout    = 60 * time.Second
	DefaultIdleTimeout    = 60 * time.Second
	DefaultBackendTimeout = 60 * time.Second
	DefaultMaxConnections = 10000
	DefaultMaxHeaderBytes = 16 << 10
	DefaultMaxBodyBytes   = 10 << 20
	MinCookieSecretLen    = 16
)

// L7Schedulers are the schedulers an L7 virtual server takes: rr (round
// robin), wrr (weighted round robin), lc (least connections), wlc
// (weighted least connections).
var L7Schedulers = []Scheduler{"rr", "wrr", "lc", "wlc"}

func applyHTTPDefaults(v *VirtualServer) {
	if v.HTTP == nil {
		v.HTTP = &HTTPOptions{}
	}
	h := v.HTTP
	if h.Cookie.Enabled == nil {
		on := true
		h.Cookie.Enabled = &on
	}
	if h.Cookie.Name == "" {
		h.Cookie.Name = DefaultCookieName
	}
	if h.Cookie.Lifetime == 0 {
		h.Cookie.Lifetime = Duration(DefaultCookieLifetime)
	}
	setDur := func(d *Duration, def time.Duration) {
		if *d == 0 {
			*d = Duration(def)
		}
	}
	setDur(&h.Timeouts.Header, DefaultHeaderTimeout)
	setDur(&h.Timeouts.Read, DefaultReadTimeout)
	setDur(&h.Timeouts.Idle, DefaultIdleTimeout)
	setDur(&h.Timeouts.Backend, DefaultBackendTimeout)
	if h.MaxConnections == 0 {
		h.MaxConnections = DefaultMaxConnections
	}
	if h.MaxHeaderBytes == 0 {
		h.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if h.MaxBodyBytes == 0 {
		h.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if h.ForwardedHeaders == nil {
		on := true
		h.ForwardedHeaders = &on
	}
}

// CookieOn reports whether cookie persistence is on (after defaults).
func (h *HTTPOptions) CookieOn() bool {
	return h != nil && h.Cookie.Enabled != nil && *h.Cookie.Enabled
}

// ForwardedOn reports whether X-Forwarded-* headers are set (after defaults).
func (h *HTTPOptions) ForwardedOn() bool {
	return h != nil && (h.ForwardedHeaders == nil || *h.ForwardedHeaders)
}

// CookieSecret is the key that authenticates the VS's persistence cookies:
// http.cookie.secret, or else one derived from vrrp.sync_key (the same on
// both HA nodes); "" when neither is set.
func (c *Config) CookieSecret(v *VirtualServer) string {
	if v.HTTP != nil && v.HTTP.Cookie.Secret != "" {
		return v.HTTP.Cookie.Secret
	}
	if c.VRRP.SyncKey != "" {
		return "l7-cookie:" + c.VRRP.SyncKey
	}
	return ""
}

// L7VirtualServers lists the virtual servers of mode http and https.
func (c *Config) L7VirtualServers() []*VirtualServer {
	var out []*VirtualServer
	for i := range c.VirtualServers {
		if c.VirtualServers[i].Mode.L7() {
			out = append(out, &c.VirtualServers[i])
		}
	}
	return out
}

var (
	cookieNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	l7HostRE     = regexp.MustCompile(`^(\*\.)?([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
)

// validateL7 checks an L7 virtual server's own fields (after defaults).
func (c *Config) validateL7(errs *cfgerr.List, vp string, v *VirtualServer) {
	hp := cfgerr.Join(vp, "http")
	if !v.Mode.L7() {
		if v.HTTP != nil {
			errs.Add(hp, "only applies to mode http or https, not %s", v.Mode)
		}
		return
	}
	if v.Protocol != TCP {
		errs.Add(cfgerr.Join(vp, "protocol"), "mode %s runs over tcp, not %s", v.Mode, v.Protocol)
	}
	if v.Port.IsRange() {
		errs.Add(cfgerr.Join(vp, "port"), "mode %s listens on one port, not a range", v.Mode)
	}
	if v.Persistence != nil {
		errs.Add(cfgerr.Join(vp, "persistence"), "mode %s persists by cookie: use http.cookie, not persistence", v.Mode)
	}
	if v.Internal {
		errs.Add(cfgerr.Join(vp, "internal"), "mode %s serves external clients only", v.Mode)
	}
	if !slices.Contains(L7Schedulers, v.Scheduler) {
		errs.Add(cfgerr.Join(vp, "scheduler"), "mode %s takes scheduler rr, wrr (weighted), lc (least connections) or wlc, not %s", v.Mode, v.Scheduler)
	}
	h := v.HTTP
	cp := cfgerr.Join(hp, "cookie")
	if !cookieNameRE.MatchString(h.Cookie.Name) {
		errs.Add(cfgerr.Join(cp, "name"), "%q is not a cookie name (letters, digits, '_', '.', '-'; at most 64)", h.Cookie.Name)
	}
	if d := h.Cookie.Lifetime.D(); d < time.Second || d > 30*24*time.Hour || d%time.Second != 0 {
		errs.Add(cfgerr.Join(cp, "lifetime"), "%s is out of range (whole seconds, 1s..720h)", h.Cookie.Lifetime)
	}
	switch s := h.Cookie.Secret; {
	case s == "<redacted>":
		errs.Add(cfgerr.Join(cp, "secret"), "is the redaction marker, not a secret: give the real secret")
	case s != "" && len(s) < MinCookieSecretLen:
		errs.Add(cfgerr.Join(cp, "secret"), "too short: at least %d characters", MinCookieSecretLen)
	case s == "" && h.CookieOn() && c.VRRP.SyncKey == "":
		errs.Add(cfgerr.Join(cp, "secret"), "missing: cookie persistence needs a secret shared by the HA nodes (set http.cookie.secret or vrrp.sync_key, or cookie.enabled: false)")
	}
	certs := cfgerr.Join(hp, "certificates")
	switch {
	case v.Mode == ModeHTTPS && len(h.Certificates) == 0:
		errs.Add(certs, "missing: mode https needs at least one certificate (cert and key files)")
	case v.Mode == ModeHTTP && len(h.Certificates) > 0:
		errs.Add(certs, "only applies to mode https")
	}
	for i, ct := range h.Certificates {
		ip := cfgerr.Index(certs, i)
		if ct.Cert == "" || !strings.HasPrefix(ct.Cert, "/") {
			errs.Add(cfgerr.Join(ip, "cert"), "missing or relative: the absolute path of a PEM certificate chain")
		}
		if ct.Key == "" || !strings.HasPrefix(ct.Key, "/") {
			errs.Add(cfgerr.Join(ip, "key"), "missing or relative: the absolute path of a PEM private key")
		}
	}
	for i, host := range h.Hosts {
		if !l7HostRE.MatchString(host) || len(host) > 253 {
			errs.Add(cfgerr.Index(cfgerr.Join(hp, "hosts"), i), "%q is not a host name (a wildcard is \"*.\" before the rest)", host)
		}
	}
	tp := cfgerr.Join(hp, "timeouts")
	for _, t := range []struct {
		name string
		d    Duration
	}{{"header", h.Timeouts.Header}, {"read", h.Timeouts.Read}, {"idle", h.Timeouts.Idle}, {"backend", h.Timeouts.Backend}} {
		if t.d.D() < 100*time.Millisecond || t.d.D() > time.Hour {
			errs.Add(cfgerr.Join(tp, t.name), "%s is out of range (100ms..1h)", t.d)
		}
	}
	if h.Timeouts.Header > h.Timeouts.Read {
		errs.Add(cfgerr.Join(tp, "header"), "%s is longer than the read timeout %s, which covers it", h.Timeouts.Header, h.Timeouts.Read)
	}
	if n := h.MaxConnections; n < 1 || n > 1<<20 {
		errs.Add(cfgerr.Join(hp, "max_connections"), "%d is out of range (1..1048576)", n)
	}
	if n := h.MaxHeaderBytes; n < 1024 || n > 1<<20 {
		errs.Add(cfgerr.Join(hp, "max_header_bytes"), "%d is out of range (1024..1048576)", n)
	}
	if n := h.MaxBodyBytes; n < 1 || n > 1<<40 {
		errs.Add(cfgerr.Join(hp, "max_body_bytes"), "%d is out of range (1..%d)", n, int64(1)<<40)
	}
}

// HostAllowed reports whether the VS answers requests for host (a Host
// header, with or without port): always when no hosts are configured.
func (h *HTTPOptions) HostAllowed(host string) bool {
	if h == nil || len(h.Hosts) == 0 {
		return true
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, want := range h.Hosts {
		want = strings.ToLower(want)
		if rest, ok := strings.CutPrefix(want, "*."); ok {
			if dot := strings.IndexByte(host, '.'); dot > 0 && host[dot+1:] == rest {
				return true
			}
			continue
		}
		if host == want {
			return true
		}
	}
	return false
}
