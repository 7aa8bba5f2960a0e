package logring

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

// Syslog facility and severities (RFC 5424 section 6.2.1).
const (
	FacilityDaemon = 3
	SevError       = 3
	SevWarning     = 4
	SevInfo        = 6
	SevDebug       = 7
)

// Severity guesses a line's severity from logrus' text or JSON level.
func Severity(text string) int {
	switch {
	case strings.Contains(text, "level=error"), strings.Contains(text, `"level":"error"`),
		strings.Contains(text, "level=fatal"), strings.Contains(text, `"level":"fatal"`), strings.Contains(text, "level=panic"):
		return SevError
	case strings.Contains(text, "level=warn"), strings.Contains(text, `"level":"warn`):
		return SevWarning
	case strings.Contains(text, "level=debug"), strings.Contains(text, `"level":"debug"`), strings.Contains(text, "level=trace"):
		return SevDebug
	}
	return SevInfo
}

// Format renders l as an RFC 5424 message: "<PRI>1 TIMESTAMP HOSTNAME
// APP-NAME PROCID MSGID - MSG".
func Format(l localapi.LogLine, hostname string) string {
	pri := FacilityDaemon*8 + Severity(l.Text)
	app := token(l.Source, 48)
	host := token(hostname, 255)
	return fmt.Sprintf("<%d>1 %s %s %s - - - %s", pri, l.Time.UTC().Format("2006-01-02T15:04:05.000000Z"), host, app, l.Text)
}

// token makes s a valid RFC 5424 header field (printable ASCII, no spaces,
// at most n characters, "-" when empty).
func token(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if r > 32 && r < 127 {
			b.WriteRune(r)
		}
		if b.Len() >= n {
			break
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// ParseTarget checks a syslog target "udp://host:port" or "tcp://host:port"
// (port default 514) and returns network and address.
func ParseTarget(target string) (network, addr string, err error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", "", fmt.Errorf("syslog target %q: %w", target, err)
	}
	if u.Scheme != "udp" && u.Scheme != "tcp" {
		return "", "", fmt.Errorf("syslog target %q: scheme must be udp or tcp", target)
	}
	if u.Path != "" || u.RawQuery != "" || u.User != nil {
		return "", "", fmt.Errorf("syslog target %q: want %s://host:port and nothing else", target, u.Scheme)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return "", "", fmt.Errorf("syslog target %q: no host", target)
	}
	if port == "" {
		port = "514"
	}
	return u.Scheme, net.JoinHostPort(host, port), nil
}

// Forwarder sends lines to a syslog collector. Send never blocks: lines are
// queued (bounded) and dropped, counted, when the queue is full or the
// collector is unreachable. TCP uses octet-counting framing (RFC 6587).
type Forwarder struct {
	Network, Addr string
	Hostname      string

	queue chan localapi.LogLine
	mu    sync.Mutex
	sent  uint64
	lost  uint64
}

// NewForwarder returns a forwarder to target (see ParseTarget).
func NewForwarder(target, hostname string, queue int) (*Forwarder, error) {
	network, addr, err := ParseTarget(target)
	if err != nil {
		return nil, err
	}
	return &Forwarder{Network: network, Addr: addr, Hostname: hostname, queue: make(chan localapi.LogLine, queue)}, nil
}

// Send queues a line.
func (f *Forwarder) Send(l localapi.LogLine) {
	select {
	case f.queue <- l:
	default:
		f.mu.Lock()
		f.lost++
		f.mu.Unlock()
	}
}

// Counts returns lines sent and lines lost.
func (f *Forwarder) Counts() (sent, lost uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent, f.lost
}

// Run sends queued lines until ctx ends, reconnecting with a pause after
// errors.
func (f *Forwarder) Run(ctx context.Context) {
	var conn net.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		var l localapi.LogLine
		select {
		case <-ctx.Done():
			return
		case l = <-f.queue:
		}
		msg := Format(l, f.Hostname)
		if f.Network == "tcp" {
			msg = fmt.Sprintf("%d %s", len(msg), msg)
		}
		for attempt := 0; attempt < 2; attempt++ {
			if conn == nil {
				d := net.Dialer{Timeout: 3 * time.Second}
				c, err := d.DialContext(ctx, f.Network, f.Addr)
				if err != nil {
					break
				}
				conn = c
			}
			conn.SetWriteDeadline(time.Now().Add(3 * time.Second))
			if _, err := conn.Write([]byte(msg)); err != nil {
				conn.Close()
				conn = nil
				continue
			}
			f.mu.Lock()
			f.sent++
			f.mu.Unlock()
			msg = ""
			break
		}
		if msg != "" {
			f.mu.Lock()
			f.lost++
			f.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// LogSource is where Follow reads lines (init's ring through the local API).
type LogSource interface {
	Log(ctx context.Context, since uint64, max int) (localapi.LogPage, error)
}

// Follow sends every new line of src to f, polling every interval, until
// ctx ends. Lines already in the ring when it starts are sent too, so a
// collector sees the boot.
func Follow(ctx context.Context, src LogSource, f *Forwarder, interval time.Duration) {
	var since uint64
	for {
		page, err := src.Log(ctx, since, 500)
		if err == nil {
			for _, l := range page.Lines {
				f.Send(l)
			}
			since = page.Next
		}
		if err == nil && len(page.Lines) == 500 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}
