package config

// The monitors section of the appliance config, by monitor name:
//
//	monitors:
//	  web:
//	    type: https            # tcp | tcp_half_open | http | https | ssl (TLS handshake only)
//	    interval: 1s           # default 5s
//	    timeout: 400ms         # default 2s (interval/2 when interval <= 2s); < interval
//	    rise: 2                # default 2
//	    fall: 3                # default 3
//	    initial_state: unknown # unknown (default) | down | up
//	    source: 198.51.100.2   # the Internal self IP
//	    port: 8443             # default: the member's port
//	    method: GET            # http/https: default GET
//	    path: /healthz         # default /
//	    host: www.example.test # Host header; default the member's address
//	    headers: {X-Check: fulcrum}
//	    expect_status: "200-299,301"   # default 200-399
//	    expect_body: "^ok"             # regexp over the first 1 MiB
//	    expect_body_sha256: "..."      # hex digest of the whole body
//	    sni: www.example.test  # https/ssl: default the host field
//	    verify: true           # default false
//	    ca_bundle: /etc/fulcrum/ca.pem # needs verify; read by the checker
//	  game:
//	    type: udp              # one datagram, one reply
//	    send: "ping\n"         # or send_hex: "fffffffe"
//	    expect: "^pong"        # regexp over the reply; default: any reply
//	  resolver:
//	    type: dns              # a query over UDP, answered NOERROR
//	    query: www.example.test
//	    qtype: A               # A (default), AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT
//	    expect_answers: [192.0.2.80]   # A/AAAA: each must be in the answer
//	  alive:
//	    type: icmp             # echo request/reply, IPv4 or IPv6
//	  custom:
//	    type: script           # keepalived's MISC_CHECK
//	    command: [/etc/fulcrum/checks/db, "{addr}", "{port}"]
//	    dynamic_weight: true   # exit 2..255 sets the weight to code-2
//
// Initial state: a new member is "unknown" and does not serve; its first
// result moves it up or down at once, so a new pool never sends traffic to a
// dead member and waits at most one interval for a live one. After that,
// fall consecutive failures take it down and rise consecutive successes bring
// it back.

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
	"go.yaml.in/yaml/v3"
)

// Monitor types.
const (
	MonitorTCP MonitorType = "tcp" // TCP connect
	// MonitorTCPHalfOpen sends a SYN and waits for the SYN-ACK (the kernel
	// resets it): proves a listener, not an accepting application, at
	// under half the tcp check's CPU.
	MonitorTCPHalfOpen MonitorType = "tcp_half_open"
	MonitorHTTP        MonitorType = "http"  // HTTP request over TCP
	MonitorHTTPS       MonitorType = "https" // HTTP request over TLS
	MonitorSSL         MonitorType = "ssl"   // TLS handshake only
	// MonitorUDP sends one datagram and expects a reply (matching
	// expect); an ICMP port unreachable fails at once.
	MonitorUDP MonitorType = "udp"
	// MonitorDNS sends a DNS query over UDP and expects a NOERROR answer
	// (holding expect_answers).
	MonitorDNS MonitorType = "dns"
	// MonitorICMP sends an ICMP or ICMPv6 echo request and expects the reply.
	MonitorICMP MonitorType = "icmp"
	// MonitorScript runs a command, as keepalived's MISC_CHECK: exit 0 is
	// up, anything else (or the timeout) down; with dynamic_weight, exit
	// 2..255 is up with weight code-2.
	MonitorScript MonitorType = "script"
)

// MonitorType is what a monitor checks.
type MonitorType string

// MonitorTypes lists the monitor types.
var MonitorTypes = []MonitorType{MonitorTCP, MonitorTCPHalfOpen, MonitorHTTP, MonitorHTTPS, MonitorSSL,
	MonitorUDP, MonitorDNS, MonitorICMP, MonitorScript}

// UnmarshalYAML accepts one of MonitorTypes.
func (t *MonitorType) UnmarshalYAML(n *yaml.Node) error {
	return enum(n, t, "monitor type", MonitorTypes)
}

// InitialState is where a newly checked member starts.
type InitialState string

// UnmarshalYAML accepts unknown, down or up.
func (s *InitialState) UnmarshalYAML(n *yaml.Node) error {
	return enum(n, s, "initial state", []InitialState{InitialUnknown, InitialDown, InitialUp})
}

// Initial states a member can start in (Monitor.InitialState).
const (
	InitialUnknown InitialState = "unknown" // not serving; the first result decides
	InitialDown    InitialState = "down"    // not serving; needs rise successes
	InitialUp      InitialState = "up"      // serving; needs fall failures to leave
)

// Defaults for unset monitor fields.
const (
	DefaultInterval = 5 * time.Second
	DefaultTimeout  = 2 * time.Second
	DefaultRise     = 2
	DefaultFall     = 3
	DefaultMethod   = "GET"
	DefaultPath     = "/"
)

// Monitors is the monitors section of the appliance config, by monitor name.
// Pools refer to a monitor by its name.
type Monitors map[string]Monitor

// Monitor is one health monitor definition.
type Monitor struct {
	// Type is tcp, tcp_half_open (SYN, SYN-ACK, reset: a listener, not
	// an accepting application), http, https or ssl (TLS handshake only).
	Type MonitorType `yaml:"type"`
	// Interval between the starts of two checks of one member (default 5s).
	Interval Duration `yaml:"interval"`
	// Timeout bounds one check (default 2s, or half the interval when the
	// interval is 2s or less); it must be shorter than the interval.
	Timeout Duration `yaml:"timeout"`
	// Rise is how many consecutive successes bring a down member up (default 2).
	Rise int `yaml:"rise"`
	// Fall is how many consecutive failures take an up member down (default 3).
	Fall int `yaml:"fall"`
	// InitialState is where a new member starts: unknown (default: not
	// serving, the first check result decides), down (needs rise successes)
	// or up (serving until fall failures).
	InitialState InitialState `yaml:"initial_state"`
	// Source is the local address checks are sent from, usually the
	// appliance's Internal self IP so checks take the real path.
	Source IP `yaml:"source"`
	// Port is the port checked; 0 (default) checks the member's own port.
	Port Port `yaml:"port"`

	// HTTP and HTTPS only.
	Method string `yaml:"method"` // default GET
	Path   string `yaml:"path"`   // default "/"
	// Host is the Host header (default: the member's address).
	Host    string            `yaml:"host"`
	Headers map[string]string `yaml:"headers"`
	// ExpectStatus lists accepted status codes and ranges, e.g. "200-299" or
	// "200,301-302" (default 200-399).
	ExpectStatus StatusSpec `yaml:"expect_status"`
	// ExpectBody is a regular expression the body (its first MaxBody bytes)
	// must match.
	ExpectBody string `yaml:"expect_body"`
	// ExpectBodySHA256 is the hex SHA-256 digest the whole body must have.
	ExpectBodySHA256 string `yaml:"expect_body_sha256"`

	// HTTPS and SSL only.
	// SNI is the TLS server name sent and verified (default: Host, else none
	// and the certificate is verified against the member's IP address).
	SNI string `yaml:"sni"`
	// Verify checks the server's certificate chain, validity and name.
	// Off by default: backends commonly carry internal certificates.
	Verify bool `yaml:"verify"`
	// CABundle is a PEM file of trusted CAs (with verify; default: the
	// system roots). The health checker reads it when it configures the
	// monitor (validation reads no files).
	CABundle string `yaml:"ca_bundle"`

	// UDP only: the datagram sent (text, or hex digits in SendHex; empty:
	// a zero-length datagram) and a regular expression the reply must
	// match (empty: any reply).
	Send    string `yaml:"send"`
	SendHex string `yaml:"send_hex"`
	Expect  string `yaml:"expect"`

	// DNS only: the name asked (required), the query type (default A)
	// and addresses that must all be in the answer (A and AAAA only).
	Query         string  `yaml:"query"`
	QType         DNSType `yaml:"qtype"`
	ExpectAnswers []IP    `yaml:"expect_answers"`

	// Script only: the command, an argv list run without a shell; its
	// first element is the absolute path of an executable in the image.
	// "{addr}" and "{port}" in any argument become the member's address
	// and checked port (also in the environment as FULCRUM_MEMBER_ADDR and
	// FULCRUM_MEMBER_PORT).
	Command []string `yaml:"command"`
	// DynamicWeight: exit codes 2..255 mean up with weight code-2 (0..253)
	// instead of down; exit 0 keeps the weight (keepalived's misc_dynamic).
	DynamicWeight bool `yaml:"dynamic_weight"`
}

// ApplyDefaults fills in every unset field that has a default.
func (m Monitors) ApplyDefaults() {
	for name, mon := range m {
		mon.ApplyDefaults()
		m[name] = mon
	}
}

// ApplyDefaults fills in the unset fields of one monitor.
func (m *Monitor) ApplyDefaults() {
	if m.Interval == 0 {
		m.Interval = Duration(DefaultInterval)
	}
	if m.Timeout == 0 {
		m.Timeout = Duration(DefaultTimeout)
		if m.Interval.D() <= DefaultTimeout {
			m.Timeout = m.Interval / 2
		}
	}
	if m.Rise == 0 {
		m.Rise = DefaultRise
	}
	if m.Fall == 0 {
		m.Fall = DefaultFall
	}
	if m.InitialState == "" {
		m.InitialState = InitialUnknown
	}
	if m.IsHTTP() {
		if m.Method == "" {
			m.Method = DefaultMethod
		}
		if m.Path == "" {
			m.Path = DefaultPath
		}
		if m.ExpectStatus == nil {
			m.ExpectStatus = StatusSpec{{200, 399}}
		}
	}
	if m.Type == MonitorDNS && m.QType == "" {
		m.QType = DNSTypeA
	}
}

// IsHTTP reports whether the monitor sends an HTTP request.
func (m *Monitor) IsHTTP() bool { return m.Type == MonitorHTTP || m.Type == MonitorHTTPS }

// IsTLS reports whether the monitor speaks TLS.
func (m *Monitor) IsTLS() bool { return m.Type == MonitorHTTPS || m.Type == MonitorSSL }

var (
	monitorNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,62}$`)
	tokenRE       = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$") // RFC 9110 token
	sha256RE      = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	hostRE        = regexp.MustCompile(`^[a-zA-Z0-9.:\[\]_-]+$`)
)

// Validate checks the section; paths are relative to "monitors".
func (m Monitors) Validate() error {
	var errs cfgerr.List
	for _, name := range sortedKeys(m) {
		if !monitorNameRE.MatchString(name) {
			errs.Add(name, "%q is not a valid monitor name (letters, digits, '_' and '-', at most 63)", name)
			continue
		}
		mon := m[name]
		errs.Merge(name, mon.Validate())
	}
	return errs.Err()
}

// Validate checks one monitor (after ApplyDefaults); paths are relative to
// the monitor.
func (m *Monitor) Validate() error {
	var errs cfgerr.List
	if m.Type == "" {
		errs.Add("type", "missing; one of tcp, tcp_half_open, http, https, ssl, udp, dns, icmp, script")
	}
	if m.Interval <= 0 {
		errs.Add("interval", "must be positive, got %s", m.Interval)
	} else if m.Interval.D() < 10*time.Millisecond {
		errs.Add("interval", "%s is too short (at least 10ms)", m.Interval)
	}
	if m.Timeout <= 0 {
		errs.Add("timeout", "must be positive, got %s", m.Timeout)
	} else if m.Timeout >= m.Interval {
		errs.Add("timeout", "%s must be shorter than the interval (%s)", m.Timeout, m.Interval)
	}
	if m.Rise < 1 {
		errs.Add("rise", "must be at least 1, got %d", m.Rise)
	}
	if m.Fall < 1 {
		errs.Add("fall", "must be at least 1, got %d", m.Fall)
	}
	if s := m.Source.Addr; s.IsValid() && (s.IsUnspecified() || s.IsMulticast()) {
		errs.Add("source", "%s cannot be a source address", s)
	}
	if m.IsHTTP() {
		m.validateHTTP(&errs)
	} else {
		for field, set := range map[string]bool{
			"method": m.Method != "", "path": m.Path != "", "host": m.Host != "",
			"headers": len(m.Headers) > 0, "expect_status": m.ExpectStatus != nil,
			"expect_body": m.ExpectBody != "", "expect_body_sha256": m.ExpectBodySHA256 != "",
		} {
			if set && m.Type != "" {
				errs.Add(field, "only http and https monitors use %s (type is %s)", field, m.Type)
			}
		}
	}
	m.validateProbes(&errs)
	if m.IsTLS() {
		m.validateTLS(&errs)
	} else {
		for field, set := range map[string]bool{"sni": m.SNI != "", "verify": m.Verify, "ca_bundle": m.CABundle != ""} {
			if set && m.Type != "" {
				errs.Add(field, "only https and ssl monitors use %s (type is %s)", field, m.Type)
			}
		}
	}
	errs.Sort()
	return errs.Err()
}

func (m *Monitor) validateHTTP(errs *cfgerr.List) {
	if !tokenRE.MatchString(m.Method) {
		errs.Add("method", "%q is not an HTTP method", m.Method)
	}
	if !strings.HasPrefix(m.Path, "/") || strings.ContainsAny(m.Path, " \r\n\t") {
		errs.Add("path", "%q must start with '/' and contain no spaces or control characters", m.Path)
	}
	if m.Host != "" && !hostRE.MatchString(m.Host) {
		errs.Add("host", "%q is not a host name", m.Host)
	}
	for name, value := range m.Headers {
		p := cfgerr.Join("headers", name)
		if !tokenRE.MatchString(name) {
			errs.Add(p, "%q is not a header name", name)
		}
		if strings.EqualFold(name, "host") {
			errs.Add(p, "set the Host header with the host field")
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			errs.Add(p, "header value contains a line break or NUL")
		}
	}
	if m.ExpectBody != "" {
		if _, err := regexp.Compile(m.ExpectBody); err != nil {
			errs.Add("expect_body", "bad regular expression: %v", err)
		}
	}
	if m.ExpectBodySHA256 != "" && !sha256RE.MatchString(m.ExpectBodySHA256) {
		errs.Add("expect_body_sha256", "must be 64 hex digits (a SHA-256 digest)")
	}
	if strings.EqualFold(m.Method, "HEAD") && (m.ExpectBody != "" || m.ExpectBodySHA256 != "") {
		errs.Add("method", "HEAD responses have no body to match expect_body or expect_body_sha256")
	}
}

func (m *Monitor) validateTLS(errs *cfgerr.List) {
	if m.SNI != "" && !hostRE.MatchString(m.SNI) {
		errs.Add("sni", "%q is not a host name", m.SNI)
	}
	if m.CABundle == "" {
		return
	}
	if !m.Verify {
		errs.Add("ca_bundle", "has no effect unless verify is true")
	}
}

// StatusSpec is a parsed set of accepted HTTP status codes.
type StatusSpec []StatusRange

// UnmarshalYAML reads "200", "200-299", "301,302" or "200,301-302".
func (s *StatusSpec) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "a status list", s, ParseStatusSpec)
}

// StatusRange is an inclusive range of status codes.
type StatusRange struct{ Lo, Hi int }

// ParseStatusSpec reads "200", "200-299", "301,302" or "200,301-302".
func ParseStatusSpec(s string) (StatusSpec, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty status list")
	}
	var spec StatusSpec
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parseStatus(lo)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", part, err)
		}
		b := a
		if isRange {
			if b, err = parseStatus(hi); err != nil {
				return nil, fmt.Errorf("%q: %w", part, err)
			}
			if b < a {
				return nil, fmt.Errorf("%q: range ends before it starts", part)
			}
		}
		spec = append(spec, StatusRange{a, b})
	}
	return spec, nil
}

func parseStatus(s string) (int, error) {
	s = strings.TrimSpace(s)
	if len(s) != 3 {
		return 0, fmt.Errorf("%q is not a 3-digit status code", s)
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a 3-digit status code", s)
		}
		n = n*10 + int(c-'0')
	}
	if n < 100 || n > 599 {
		return 0, fmt.Errorf("%d is not an HTTP status code (100-599)", n)
	}
	return n, nil
}

// Match reports whether code is accepted.
func (s StatusSpec) Match(code int) bool {
	for _, r := range s {
		if code >= r.Lo && code <= r.Hi {
			return true
		}
	}
	return false
}

func (s StatusSpec) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		if r.Lo == r.Hi {
			parts[i] = fmt.Sprint(r.Lo)
		} else {
			parts[i] = fmt.Sprintf("%d-%d", r.Lo, r.Hi)
		}
	}
	return strings.Join(parts, ",")
}
