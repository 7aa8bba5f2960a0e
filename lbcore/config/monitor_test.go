package config

import (
	"strings"
	"testing"
	"time"
)

const baseConfig = `version: 1
network:
  failover: {members: [eth0], addresses: [192.0.2.1/25]}
  internal: {members: [eth1], addresses: [198.51.100.2/24]}
  external: {members: [eth2], addresses: [203.0.113.2/24]}
`

func decodeMonitors(doc string) (Monitors, error) {
	var m Monitors
	if _, err := decode([]byte(doc), &m); err != nil {
		return nil, err
	}
	m.ApplyDefaults()
	return m, nil
}

func TestMonitorDefaults(t *testing.T) {
	m, err := decodeMonitors(`
web: {type: http}
fast: {type: tcp, interval: 1s}
secs: {type: ssl, interval: 10s, timeout: 500ms}
`)
	if err != nil {
		t.Fatal(err)
	}
	web := m["web"]
	if web.Interval.D() != 5*time.Second || web.Timeout.D() != 2*time.Second || web.Rise != 2 || web.Fall != 3 {
		t.Errorf("web timing defaults = %s/%s rise %d fall %d", web.Interval, web.Timeout, web.Rise, web.Fall)
	}
	if web.Method != "GET" || web.Path != "/" || web.ExpectStatus.String() != "200-399" || web.InitialState != "unknown" {
		t.Errorf("web http defaults = %q %q %q %q", web.Method, web.Path, web.ExpectStatus, web.InitialState)
	}
	if fast := m["fast"]; fast.Timeout.D() != 500*time.Millisecond || fast.Method != "" {
		t.Errorf("fast: timeout %s method %q; want 500ms and no http defaults", fast.Timeout, fast.Method)
	}
	if secs := m["secs"]; secs.Interval.D() != 10*time.Second || secs.Timeout.D() != 500*time.Millisecond {
		t.Errorf("secs: %s/%s", secs.Interval, secs.Timeout)
	}
	if err := m.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestMonitorValidation(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"timeout >= interval", "m: {type: tcp, interval: 1s, timeout: 1s}", "m.timeout: 1s must be shorter than the interval (1s)"},
		{"rise 0", "m: {type: tcp, rise: -1}", "m.rise: must be at least 1, got -1"},
		{"fall 0", "m: {type: tcp, fall: -2}", "m.fall: must be at least 1, got -2"},
		{"bad regex", "m: {type: http, expect_body: 'ok(('}", "m.expect_body: bad regular expression"},
		{"CA without verify", "m: {type: ssl, ca_bundle: /nonexistent/ca.pem}", "m.ca_bundle: has no effect unless verify is true"},
		{"bad status", "m: {type: http, expect_status: '200-1xx'}", `m.expect_status (line 1): "200-1xx": "1xx" is not a 3-digit status code`},
		{"reversed range", "m: {type: http, expect_status: '299-200'}", "range ends before it starts"},
		{"status out of range", "m: {type: http, expect_status: '700'}", "700 is not an HTTP status code"},
		{"unknown type", "m: {type: smtp}", `m.type (line 1): unknown monitor type "smtp"`},
		{"missing type", "m: {interval: 2s}", "m.type: missing"},
		{"bad source", "m: {type: tcp, source: 198.51.100.300}", `m.source (line 1): "198.51.100.300" is not an IP address`},
		{"unspecified source", "m: {type: tcp, source: 0.0.0.0}", "m.source: 0.0.0.0 cannot be a source address"},
		{"bad port", "m: {type: tcp, port: 70000}", `m.port (line 1): "70000" is not a port`},
		{"http field on tcp", "m: {type: tcp, path: /x}", "m.path: only http and https monitors use path"},
		{"http field on tcp_half_open", "m: {type: tcp_half_open, expect_status: '200'}", "m.expect_status: only http and https monitors use expect_status"},
		{"half-open timeout", "m: {type: tcp_half_open, interval: 100ms, timeout: 200ms}", "m.timeout: 200ms must be shorter than the interval (100ms)"},
		{"tls field on http", "m: {type: http, sni: a.example}", "m.sni: only https and ssl monitors use sni"},
		{"bad path", "m: {type: http, path: 'health'}", `m.path: "health" must start with '/'`},
		{"bad method", "m: {type: http, method: 'G T'}", `m.method: "G T" is not an HTTP method`},
		{"host header in headers", "m: {type: http, headers: {Host: x}}", "m.headers.Host: set the Host header with the host field"},
		{"bad digest", "m: {type: http, expect_body_sha256: abc}", "m.expect_body_sha256: must be 64 hex digits"},
		{"HEAD with body", "m: {type: http, method: HEAD, expect_body: ok}", "m.method: HEAD responses have no body"},
		{"bad initial", "m: {type: tcp, initial_state: maybe}", `m.initial_state (line 1): unknown initial state "maybe"`},
		{"bad name", "'a.b': {type: tcp}", `a.b: "a.b" is not a valid monitor name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decodeMonitors(tc.doc)
			if err == nil {
				err = m.Validate()
			}
			if err == nil {
				t.Fatalf("accepted %s", tc.doc)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\n does not contain %q", err, tc.want)
			}
		})
	}
}

// TestDurationSyntax: one duration syntax everywhere, a unit required
// (a bare 5 was seconds in monitors and nanoseconds elsewhere); 0 alone is
// zero.
func TestDurationSyntax(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"m: {type: tcp, interval: soon}", `m.interval (line 1): "soon" is not a duration with a unit`},
		{"m: {type: tcp, interval: 10}", `m.interval (line 1): "10" is not a duration with a unit (write 5s, 500ms or 1m30s)`},
		{"m: {type: tcp, interval: 2s,\n  timeout: 0.5}", `m.timeout (line 2): "0.5" is not a duration`},
	} {
		_, err := decodeMonitors(tc.doc)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.doc, err, tc.want)
		}
	}
	var v VRRP
	if _, err := decode([]byte("preempt_delay: 30\n"), &v); err == nil || !strings.Contains(err.Error(), "preempt_delay (line 1)") {
		t.Errorf("vrrp preempt_delay: 30 gave %v, want the same duration rule", err)
	}
	if _, err := decode([]byte("garp: {refresh: 0}\n"), &v); err != nil || v.GARP.Refresh == nil || *v.GARP.Refresh != 0 {
		t.Errorf("garp refresh 0: %v %v", err, v.GARP.Refresh)
	}
}

// TestThroughAppConfig checks the section inside the appliance config: the
// loader prefixes "monitors." and finds the line.
func TestThroughAppConfig(t *testing.T) {
	good := baseConfig + `monitors:
  web:
    type: https
    interval: 1s
    timeout: 400ms
    source: 198.51.100.2
    port: 8443
    path: /healthz
    host: www.example.test
    headers: {X-Check: fulcrum}
    expect_status: "200-299,301"
    expect_body: "^ok"
    sni: www.example.test
  port: {type: tcp}
`
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	web := c.Monitors["web"]
	if web.Port != 8443 || web.Headers["X-Check"] != "fulcrum" || web.Timeout.D() != 400*time.Millisecond || web.Rise != 2 {
		t.Errorf("decoded %+v", web)
	}
	if err := web.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	bad := baseConfig + `monitors:
  web:
    type: http
    interval: 2s
    timeout: 3s
    expect_body: "(("
`
	_, err = Parse([]byte(bad))
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		"monitors.web.timeout (line 10): 3s must be shorter than the interval (2s)",
		"monitors.web.expect_body (line 11): bad regular expression",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\n does not contain %q", err, want)
		}
	}
}

func TestStatusSpec(t *testing.T) {
	s, err := ParseStatusSpec("200, 301-302 ,404")
	if err != nil {
		t.Fatal(err)
	}
	for code, want := range map[int]bool{200: true, 201: false, 301: true, 302: true, 303: false, 404: true, 500: false} {
		if s.Match(code) != want {
			t.Errorf("Match(%d) = %v", code, !want)
		}
	}
	if s.String() != "200,301-302,404" {
		t.Errorf("String = %q", s)
	}
	for _, bad := range []string{"", "2000", "abc", "200-", "200,,300"} {
		if _, err := ParseStatusSpec(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
