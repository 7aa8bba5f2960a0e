package config

import (
	"strings"
	"testing"
	"time"
)

const l7Good = lbNetwork + `
virtual_servers:
  - name: web
    vip: 203.0.113.100
    port: 80
    mode: http
    pool: web
    scheduler: rr
    http: {cookie: {secret: "0123456789abcdef"}}
  - name: tls
    vip: 203.0.113.100
    port: 443
    mode: https
    pool: web
    scheduler: wlc
    http:
      cookie: {name: SRV, lifetime: 600s, secret: "0123456789abcdef"}
      certificates:
        - {cert: /etc/fulcrum/a.pem, key: /etc/fulcrum/a.key}
        - {cert: /etc/fulcrum/b.pem, key: /etc/fulcrum/b.key}
      hosts: [a.example, "*.b.example"]
      timeouts: {header: 5s, read: 30s, idle: 90s, backend: 20s}
      max_connections: 500
      max_header_bytes: 8192
      max_body_bytes: 1048576
      proxy_protocol: true
      forwarded_headers: false
pools:
  web:
    members:
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080, weight: 3}
`

func TestL7GoodConfigAndDefaults(t *testing.T) {
	if errs := lbErrors(t, l7Good); len(errs) != 0 {
		t.Fatalf("good config rejected: %v", errs)
	}
	c, err := Parse([]byte(l7Good))
	if err != nil {
		t.Fatal(err)
	}
	web, tls := c.VirtualServers[0], c.VirtualServers[1]
	if web.Persistence != nil {
		t.Errorf("an L7 VS got L4 persistence defaults: %+v", web.Persistence)
	}
	h := web.HTTP
	if !h.CookieOn() || h.Cookie.Name != DefaultCookieName || h.Cookie.Lifetime.D() != time.Hour {
		t.Errorf("cookie defaults: %+v (want on, %s, 1h)", h.Cookie, DefaultCookieName)
	}
	if h.Timeouts.Header.D() != 10*time.Second || h.Timeouts.Idle.D() != time.Minute || h.MaxConnections != DefaultMaxConnections || !h.ForwardedOn() || h.ProxyProtocol {
		t.Errorf("http defaults: %+v", h)
	}
	if tls.HTTP.Cookie.Name != "SRV" || tls.HTTP.Cookie.Lifetime.D() != 10*time.Minute || tls.HTTP.ForwardedOn() || !tls.HTTP.ProxyProtocol || len(tls.HTTP.Certificates) != 2 {
		t.Errorf("https settings not read: %+v", tls.HTTP)
	}
	if got := len(c.L7VirtualServers()); got != 2 {
		t.Errorf("L7VirtualServers: %d, want 2", got)
	}
}

func TestL7Rejects(t *testing.T) {
	for _, tc := range []struct{ name, from, to, want string }{
		{"udp", "mode: http\n", "mode: http\n    protocol: udp\n", "virtual_servers[0].protocol (line 15): mode http runs over tcp"},
		{"range", "port: 80\n", "port: 80-81\n", "virtual_servers[0].port (line 13): mode http listens on one port"},
		{"scheduler", "scheduler: rr\n", "scheduler: sh\n", "virtual_servers[0].scheduler (line 16): mode http takes scheduler rr"},
		{"l4 persistence", "scheduler: rr\n", "scheduler: rr\n    persistence: {timeout: 60s}\n", "virtual_servers[0].persistence (line 17): mode http persists by cookie"},
		{"no certs", "      certificates:\n        - {cert: /etc/fulcrum/a.pem, key: /etc/fulcrum/a.key}\n        - {cert: /etc/fulcrum/b.pem, key: /etc/fulcrum/b.key}\n", "", "virtual_servers[1].http.certificates (line 24): missing: mode https needs at least one certificate"},
		{"relative cert", "cert: /etc/fulcrum/b.pem", "cert: b.pem", "virtual_servers[1].http.certificates[1].cert (line 28): missing or relative"},
		{"cookie name", "name: SRV", "name: \"a b\"", "virtual_servers[1].http.cookie.name (line 25): \"a b\" is not a cookie name"},
		{"lifetime", "lifetime: 600s", "lifetime: 1500ms", "virtual_servers[1].http.cookie.lifetime (line 25): 1.5s is out of range"},
		{"short secret", `http: {cookie: {secret: "0123456789abcdef"}}`, `http: {cookie: {secret: "short"}}`, "virtual_servers[0].http.cookie.secret (line 17): too short"},
		{"no secret", `http: {cookie: {secret: "0123456789abcdef"}}`, `http: {}`, "virtual_servers[0].http.cookie.secret (line 17): missing: cookie persistence needs a secret"},
		{"redacted secret", `http: {cookie: {secret: "0123456789abcdef"}}`, `http: {cookie: {secret: "<redacted>"}}`, "virtual_servers[0].http.cookie.secret (line 17): is the redaction marker"},
		{"host", `hosts: [a.example, "*.b.example"]`, `hosts: ["a b"]`, `virtual_servers[1].http.hosts[0] (line 29): "a b" is not a host name`},
		{"timeout", "header: 5s", "header: 1ms", "virtual_servers[1].http.timeouts.header (line 30): 1ms is out of range"},
		{"header > read", "header: 5s", "header: 50s", "virtual_servers[1].http.timeouts.header (line 30): 50s is longer than the read timeout"},
		{"max header", "max_header_bytes: 8192", "max_header_bytes: 10", "virtual_servers[1].http.max_header_bytes (line 32): 10 is out of range"},
		{"max conns", "max_connections: 500", "max_connections: -1", "virtual_servers[1].http.max_connections (line 31): -1 is out of range"},
		{"http on l4", "mode: http\n", "mode: nat\n", "virtual_servers[0].http (line 17): only applies to mode http or https, not nat"},
		{"overlap", "port: 443\n", "port: 80\n", "virtual_servers[1].port (line 20): tcp 203.0.113.100 port 80 overlaps virtual_servers[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(l7Good, tc.from, tc.to, 1)
			if doc == l7Good {
				t.Fatalf("replacement %q not found", tc.from)
			}
			_, err := Parse([]byte(doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %q", err, tc.want)
			}
		})
	}
}

func TestCookieSecretFromSyncKey(t *testing.T) {
	c := &Config{}
	v := &VirtualServer{HTTP: &HTTPOptions{}}
	if s := c.CookieSecret(v); s != "" {
		t.Fatalf("secret with nothing set: %q", s)
	}
	c.VRRP.SyncKey = "a-sync-key-of-16+"
	a := c.CookieSecret(v)
	if a == "" || a == c.VRRP.SyncKey {
		t.Fatalf("secret from sync key: %q (must be derived, not the key itself)", a)
	}
	v.HTTP.Cookie.Secret = "0123456789abcdef"
	if c.CookieSecret(v) != "0123456789abcdef" {
		t.Fatal("http.cookie.secret does not take precedence")
	}
}

func TestHostAllowed(t *testing.T) {
	h := &HTTPOptions{Hosts: []string{"a.example", "*.b.example"}}
	for host, want := range map[string]bool{
		"a.example": true, "A.EXAMPLE:8443": true, "a.example.": true, "x.b.example": true,
		"b.example": false, "x.y.b.example": false, "c.example": false, "": false, "[::1]:80": false,
	} {
		if got := h.HostAllowed(host); got != want {
			t.Errorf("HostAllowed(%q) = %v, want %v", host, got, want)
		}
	}
	if !(&HTTPOptions{}).HostAllowed("anything") {
		t.Error("no hosts configured must allow any host")
	}
}
