// Package health runs the appliance's health checks (TCP, TCP half-open,
// HTTP, HTTPS, a TLS handshake check, UDP, DNS, ICMP echo and an external
// command) against pool members and keeps a
// rise/fall state per member. The monitor definitions are the config's
// (config.Monitor); the package knows nothing about pools or IPVS: the LB
// daemon hands it members and receives transition events.
package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// MaxBody is how much of a response body is read to match expect_body or
// expect_body_sha256. A body longer than this fails a digest check.
const MaxBody = 1 << 20

// Target is one member endpoint to check.
type Target struct {
	Addr netip.Addr
	Port uint16 // the member's port; the monitor's port, when set, wins
}

func (t Target) String() string { return netip.AddrPortFrom(t.Addr, t.Port).String() }

// Result is the outcome of one check.
type Result struct {
	OK bool
	// Reason says why in a few words: "connected", "HTTP 200",
	// "connection refused", "timeout after 2s (connect)", ...
	Reason  string
	Latency time.Duration
	// Weighted: the check also set the member's weight to Weight (a
	// script monitor with dynamic_weight whose command exited 2..255).
	Weighted bool
	Weight   int
}

// Checker runs one kind of check. Check never panics and always returns by
// the monitor's timeout (or ctx's deadline, whichever is first).
type Checker interface {
	Check(ctx context.Context, t Target) Result
}

// SocketEnv runs fn, which creates (and starts connecting) a check's
// socket, in the environment sockets should be made in. The default just
// calls fn; tests run fn on a thread switched into a network namespace.
type SocketEnv func(fn func() error) error

func directEnv(fn func() error) error { return fn() }

// NewChecker builds the checker for a validated monitor (after
// ApplyDefaults). env may be nil.
//
// A tcp_half_open checker holds a raw socket once it has run: close it with
// its Close method (it implements io.Closer) when done.
func NewChecker(m config.Monitor, env SocketEnv) (Checker, error) {
	return newChecker(m, env, nil)
}

// newChecker is NewChecker with the half-open prober to share (nil: the
// checker gets its own).
func newChecker(m config.Monitor, env SocketEnv, prober *synProber) (Checker, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if env == nil {
		env = directEnv
	}
	// Checks open a fresh connection each time and close it at once: no
	// keep-alive probes (four setsockopt calls per dial saved).
	b := &base{timeout: m.Timeout.D(), port: uint16(m.Port), env: env}
	b.dialer.KeepAlive = -1
	if m.Source.IsValid() {
		b.src = m.Source.Unmap()
		b.dialer.LocalAddr = &net.TCPAddr{IP: b.src.AsSlice()}
	}
	var tlsc *tlsConf
	if m.IsTLS() {
		tlsc = &tlsConf{verify: m.Verify, sni: m.SNI}
		if tlsc.sni == "" && m.Host != "" {
			tlsc.sni = stripPort(m.Host)
		}
		if m.CABundle != "" {
			pool, err := loadCABundle(m.CABundle)
			if err != nil {
				return nil, fmt.Errorf("ca_bundle: %w", err)
			}
			tlsc.roots = pool
		}
	}
	switch m.Type {
	case config.MonitorTCP:
		return &tcpChecker{base: b}, nil
	case config.MonitorTCPHalfOpen:
		if prober == nil {
			return &halfOpenChecker{base: b, prober: newSYNProber(env), own: true}, nil
		}
		return &halfOpenChecker{base: b, prober: prober}, nil
	case config.MonitorSSL:
		return &tlsChecker{base: b, tls: tlsc}, nil
	case config.MonitorUDP:
		return newUDPChecker(b, m)
	case config.MonitorDNS:
		return newDNSChecker(b, m), nil
	case config.MonitorICMP:
		return &icmpChecker{base: b}, nil
	case config.MonitorScript:
		return newScriptChecker(b, m), nil
	case config.MonitorHTTP, config.MonitorHTTPS:
		h := &httpChecker{base: b, tls: tlsc, method: m.Method, path: m.Path, host: m.Host, status: m.ExpectStatus}
		if m.ExpectBody != "" {
			var err error
			if h.bodyRE, err = regexp.Compile(m.ExpectBody); err != nil {
				return nil, fmt.Errorf("expect_body: %w", err)
			}
		}
		if m.ExpectBodySHA256 != "" {
			h.bodySHA, _ = hex.DecodeString(m.ExpectBodySHA256) // validated: 64 hex digits
		}
		names := make([]string, 0, len(m.Headers))
		for k := range m.Headers {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			h.headers = append(h.headers, k+": "+m.Headers[k]+"\r\n")
		}
		return h, nil
	}
	return nil, fmt.Errorf("monitor type %q is not supported", m.Type)
}

type base struct {
	timeout time.Duration
	port    uint16
	src     netip.Addr // zero: the kernel picks
	dialer  net.Dialer
	env     SocketEnv
}

type tlsConf struct {
	verify bool
	sni    string
	roots  *x509.CertPool
}

func (b *base) addr(t Target) (netip.AddrPort, error) {
	port := t.Port
	if b.port != 0 {
		port = b.port
	}
	if !t.Addr.IsValid() {
		return netip.AddrPort{}, errors.New("member has no address")
	}
	if port == 0 {
		return netip.AddrPort{}, errors.New("member has no port and the monitor sets none")
	}
	return netip.AddrPortFrom(t.Addr, port), nil
}

// run bounds fn by the timeout and turns its error into a Result.
func (b *base) run(ctx context.Context, fn func(ctx context.Context) (string, error)) (r Result) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil { // a checker bug must not take the daemon down
			r = Result{Reason: fmt.Sprintf("internal error: %v", p)}
		}
		r.Latency = time.Since(start)
	}()
	ok, err := fn(ctx)
	if err != nil {
		return Result{Reason: b.describe(ctx, err)}
	}
	return Result{OK: true, Reason: ok}
}

type phaseError struct {
	phase string
	err   error
}

func (e *phaseError) Error() string { return e.phase + ": " + e.err.Error() }
func (e *phaseError) Unwrap() error { return e.err }

func inPhase(phase string, err error) error {
	if err == nil {
		return nil
	}
	var pe *phaseError
	if errors.As(err, &pe) {
		return err
	}
	return &phaseError{phase, err}
}

// checkFailure is a check that completed but did not get the expected answer.
type checkFailure struct{ msg string }

func (e *checkFailure) Error() string { return e.msg }

func failf(format string, args ...any) error { return &checkFailure{fmt.Sprintf(format, args...)} }

// describe turns a check error into a short reason.
func (b *base) describe(ctx context.Context, err error) string {
	var cf *checkFailure
	if errors.As(err, &cf) {
		return cf.msg
	}
	phase := "check"
	var pe *phaseError
	if errors.As(err, &pe) {
		phase = pe.phase
	}
	var ne net.Error
	var cve *tls.CertificateVerificationError
	var hn x509.HostnameError
	var ie x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.As(err, &hn):
		return fmt.Sprintf("%s: certificate name mismatch: %v", phase, hn.Error())
	case errors.As(err, &ie):
		return fmt.Sprintf("%s: certificate invalid: %v", phase, ie.Error())
	case errors.As(err, &ua):
		return fmt.Sprintf("%s: certificate signed by unknown authority", phase)
	case errors.As(err, &cve):
		return fmt.Sprintf("%s: certificate verification failed: %v", phase, cve.Err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout(), ctx.Err() == context.DeadlineExceeded:
		return fmt.Sprintf("timeout after %s (%s)", b.timeout, phase)
	case errors.Is(err, context.Canceled):
		return fmt.Sprintf("cancelled (%s)", phase)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("connection refused (%s)", phase)
	case errors.Is(err, syscall.ECONNRESET):
		return fmt.Sprintf("connection reset (%s)", phase)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("unreachable (%s)", phase)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Sprintf("source address not available (%s)", phase)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("connection closed early (%s)", phase)
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return fmt.Sprintf("%s: %s", phase, msg)
}

// connect dials the target, with the connection's deadline tied to ctx.
func (b *base) connect(ctx context.Context, t Target) (net.Conn, error) {
	addr, err := b.addr(t)
	if err != nil {
		return nil, &checkFailure{err.Error()}
	}
	var conn net.Conn
	err = b.env(func() error {
		var err error
		conn, err = b.dialer.DialContext(ctx, "tcp", addr.String())
		return err
	})
	if err != nil {
		return nil, inPhase("connect", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return conn, nil
}

// abort closes a TCP connection with a reset so checks leave no TIME_WAIT
// sockets behind on the appliance.
func abort(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

type tcpChecker struct{ *base }

func (c *tcpChecker) Check(ctx context.Context, t Target) Result {
	return c.run(ctx, func(ctx context.Context) (string, error) {
		addr, err := c.addr(t)
		if err != nil {
			return "", &checkFailure{err.Error()}
		}
		if err := c.connectOnly(ctx, addr); err != nil {
			return "", inPhase("connect", err)
		}
		return "connected", nil
	})
}

func (tc *tlsConf) config(t Target) *tls.Config {
	cfg := &tls.Config{
		ServerName:         tc.sni,
		InsecureSkipVerify: !tc.verify,
		RootCAs:            tc.roots,
	}
	if cfg.ServerName == "" {
		// No name to send: verify against the member's IP (SANs).
		cfg.ServerName = t.Addr.String()
	}
	return cfg
}

// handshake runs a TLS client handshake over conn.
func (tc *tlsConf) handshake(ctx context.Context, conn net.Conn, t Target) (*tls.Conn, error) {
	tconn := tls.Client(conn, tc.config(t))
	if err := tconn.HandshakeContext(ctx); err != nil {
		return nil, inPhase("tls handshake", err)
	}
	return tconn, nil
}

type tlsChecker struct {
	*base
	tls *tlsConf
}

func (c *tlsChecker) Check(ctx context.Context, t Target) Result {
	return c.run(ctx, func(ctx context.Context) (string, error) {
		conn, err := c.connect(ctx, t)
		if err != nil {
			return "", err
		}
		defer abort(conn)
		tconn, err := c.tls.handshake(ctx, conn, t)
		if err != nil {
			return "", err
		}
		st := tconn.ConnectionState()
		return "tls " + tls.VersionName(st.Version), nil
	})
}

type httpChecker struct {
	*base
	tls     *tlsConf
	method  string
	path    string
	host    string
	headers []string
	status  config.StatusSpec
	bodyRE  *regexp.Regexp
	bodySHA []byte
}

func (c *httpChecker) request(t Target, port uint16) []byte {
	host := c.host
	if host == "" {
		ap := netip.AddrPortFrom(t.Addr, port)
		if (c.tls == nil && port == 80) || (c.tls != nil && port == 443) {
			host = t.Addr.String()
			if t.Addr.Is6() {
				host = "[" + host + "]"
			}
		} else {
			host = ap.String()
		}
	}
	var b bytes.Buffer
	b.WriteString(c.method + " " + c.path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUser-Agent: fulcrum-health/1\r\nAccept: */*\r\nConnection: close\r\n")
	for _, h := range c.headers {
		b.WriteString(h)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func (c *httpChecker) Check(ctx context.Context, t Target) Result {
	return c.run(ctx, func(ctx context.Context) (string, error) {
		raw, err := c.connect(ctx, t)
		if err != nil {
			return "", err
		}
		defer abort(raw)
		stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
		defer stop()
		var conn net.Conn = raw
		if c.tls != nil {
			if conn, err = c.tls.handshake(ctx, raw, t); err != nil {
				return "", err
			}
		}
		port := t.Port
		if c.port != 0 {
			port = c.port
		}
		if _, err := conn.Write(c.request(t, port)); err != nil {
			return "", inPhase("send request", err)
		}
		resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 4096), &http.Request{Method: c.method})
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isNetErr(err) {
				return "", inPhase("read response", err)
			}
			return "", failf("bad HTTP response: %v", err)
		}
		defer resp.Body.Close()
		if !c.status.Match(resp.StatusCode) {
			return "", failf("HTTP %d, expected %s", resp.StatusCode, c.status)
		}
		if c.bodyRE == nil && c.bodySHA == nil {
			return "HTTP " + strconv.Itoa(resp.StatusCode), nil
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
		if err != nil {
			return "", inPhase("read body", err)
		}
		if c.bodySHA != nil {
			if len(body) > MaxBody {
				return "", failf("HTTP %d, body longer than %d bytes, cannot check its digest", resp.StatusCode, MaxBody)
			}
			sum := sha256.Sum256(body)
			if !bytes.Equal(sum[:], c.bodySHA) {
				return "", failf("HTTP %d, body digest %x does not match", resp.StatusCode, sum[:6])
			}
		}
		if c.bodyRE != nil {
			if len(body) > MaxBody {
				body = body[:MaxBody]
			}
			if !c.bodyRE.Match(body) {
				return "", failf("HTTP %d, body does not match %q", resp.StatusCode, c.bodyRE.String())
			}
		}
		return "HTTP " + strconv.Itoa(resp.StatusCode) + ", body ok", nil
	})
}

func isNetErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe)
}

func stripPort(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}

// CheckCABundle reports whether a CA bundle file is readable and holds PEM
// certificates.
func CheckCABundle(path string) error {
	_, err := loadCABundle(path)
	return err
}

// loadCABundle reads a monitor's CA bundle; the checker is where the file is
// used, so this is where it is read (config validation reads no files).
func loadCABundle(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificates", path)
	}
	return pool, nil
}
