// Package guard holds the limits every socket server of the appliance
// shares: HTTP timeouts and a connection cap that evicts idle connections
// (so an admin still gets in while thousands of idle sockets are open),
// a counter of concurrent sessions (TFTP), and the helpers for logging
// client-controlled text (cut and escaped, rate-limited). It depends on the
// standard library only, so image/ and services/ can both use it.
package guard

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HTTP is the set of limits of one HTTP server.
type HTTP struct {
	ReadHeaderTimeout time.Duration // request line and headers
	ReadTimeout       time.Duration // whole request, body included
	WriteTimeout      time.Duration // from the end of the headers to the end of the response
	IdleTimeout       time.Duration // keep-alive between requests
	MaxHeaderBytes    int
	MaxBodyBytes      int64 // bodies beyond this fail to read (413 from MaxBytesReader users)
	MaxConns          int   // open connections; at the cap the oldest idle one is closed
	// ErrorLog receives the server's own messages (TLS handshake errors,
	// accept errors), which clients can cause at will: give it a
	// LimitedWriter. Nil: the standard logger.
	ErrorLog io.Writer
}

// Server is an http.Server with a connection cap. Serve through its Serve
// and ServeTLS methods (they wrap the listener with the cap).
type Server struct {
	*http.Server
	Conns *Conns
}

// Server returns a server for h with these limits. Zero fields are errors
// of the caller: every limit must be chosen.
func (l HTTP) Server(h http.Handler) *Server {
	if l.ReadHeaderTimeout <= 0 || l.ReadTimeout <= 0 || l.WriteTimeout <= 0 || l.IdleTimeout <= 0 || l.MaxHeaderBytes <= 0 || l.MaxBodyBytes <= 0 || l.MaxConns <= 0 {
		panic("guard: every HTTP limit must be set")
	}
	c := NewConns(l.MaxConns)
	return &Server{
		Server: &http.Server{
			Handler:           http.MaxBytesHandler(h, l.MaxBodyBytes),
			ReadHeaderTimeout: l.ReadHeaderTimeout,
			ReadTimeout:       l.ReadTimeout,
			WriteTimeout:      l.WriteTimeout,
			IdleTimeout:       l.IdleTimeout,
			MaxHeaderBytes:    l.MaxHeaderBytes,
			ConnState:         c.ConnState,
			ErrorLog:          errorLog(l.ErrorLog),
		},
		Conns: c,
	}
}

func errorLog(w io.Writer) *log.Logger {
	if w == nil {
		return nil
	}
	return log.New(w, "", 0)
}

// LimitedWriter passes on at most Every's rate of writes (log lines), each
// cut to Max bytes and escaped (Clip); the rest are counted and the count
// is reported with the next line let through.
type LimitedWriter struct {
	W     io.Writer
	Max   int
	Every *Every
}

func (w *LimitedWriter) Write(b []byte) (int, error) {
	ok, suppressed := w.Every.Allow(time.Now())
	if !ok {
		return len(b), nil
	}
	line := Clip(strings.TrimRight(string(b), "\n"), w.Max)
	if suppressed > 0 {
		line += " (" + strconv.Itoa(suppressed) + " similar lines suppressed)"
	}
	if _, err := io.WriteString(w.W, line+"\n"); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Serve serves on l under the connection cap.
func (s *Server) Serve(l net.Listener) error { return s.Server.Serve(s.Conns.Listener(l)) }

// ServeTLS serves TLS on l under the connection cap.
func (s *Server) ServeTLS(l net.Listener, cert, key string) error {
	return s.Server.ServeTLS(s.Conns.Listener(l), cert, key)
}

// Conns caps the open connections of an http.Server. Its ConnState hook
// follows each connection's state; its Listener makes room before handing
// out a new connection: at the cap it closes the connection that has been
// idle (no request yet, or between requests) the longest, and if none is
// idle it turns the newcomer away. Connections busy with a request are
// never cut; slow ones are bounded by the server's timeouts.
type Conns struct {
	max int

	mu      sync.Mutex
	conns   map[net.Conn]connInfo
	evicted uint64
	refused uint64
}

type connInfo struct {
	state http.ConnState
	since time.Time
}

// NewConns returns a cap of max connections.
func NewConns(max int) *Conns {
	return &Conns{max: max, conns: map[net.Conn]connInfo{}}
}

// ConnState is the http.Server.ConnState hook.
func (c *Conns) ConnState(conn net.Conn, st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(c.conns, conn)
	default:
		c.conns[conn] = connInfo{state: st, since: time.Now()}
	}
}

// Stats returns the open connections and how many were evicted (idle) or
// refused (cap reached with none idle) so far.
func (c *Conns) Stats() (open int, evicted, refused uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns), c.evicted, c.refused
}

// makeRoom reports whether a new connection may be served, closing the
// longest-idle one if the cap is reached.
func (c *Conns) makeRoom() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.conns) < c.max {
		return true
	}
	var victim net.Conn
	var oldest time.Time
	for conn, info := range c.conns {
		if info.state != http.StateNew && info.state != http.StateIdle {
			continue
		}
		if victim == nil || info.since.Before(oldest) {
			victim, oldest = conn, info.since
		}
	}
	if victim == nil {
		c.refused++
		return false
	}
	delete(c.conns, victim)
	c.evicted++
	abort(victim)
	return true
}

// abort closes conn with a reset rather than a FIN: an evicted idle client
// gets no graceful close, and the server keeps no FIN_WAIT state for it
// (under a flood of idle connections, every packet and timer counts).
func abort(conn net.Conn) {
	raw := conn
	if t, ok := conn.(interface{ NetConn() net.Conn }); ok {
		raw = t.NetConn()
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// Listener wraps l: Accept makes room under the cap first.
func (c *Conns) Listener(l net.Listener) net.Listener { return &capListener{Listener: l, c: c} }

type capListener struct {
	net.Listener
	c *Conns
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.c.makeRoom() {
			return conn, nil
		}
		conn.Close()
	}
}

// Slots counts concurrent sessions up to a maximum (TFTP transfers).
type Slots struct{ ch chan struct{} }

// NewSlots returns n slots.
func NewSlots(n int) *Slots { return &Slots{ch: make(chan struct{}, n)} }

// ErrBusy is returned when every slot is taken.
var ErrBusy = errors.New("server busy, try again later")

// Take takes a slot, or returns ErrBusy when all are taken. Give it back
// with Release.
func (s *Slots) Take() error {
	select {
	case s.ch <- struct{}{}:
		return nil
	default:
		return ErrBusy
	}
}

// Release gives a slot back.
func (s *Slots) Release() { <-s.ch }

// Clip makes client-controlled text safe to log: at most max bytes of it,
// with control characters, quotes and non-ASCII escaped (Go quoting, without
// the outer quotes), and a note of how much was cut.
func Clip(s string, max int) string {
	cut := 0
	if len(s) > max {
		cut = len(s) - max
		s = s[:max]
	}
	q := strconv.QuoteToASCII(s)
	q = q[1 : len(q)-1]
	if cut > 0 {
		q += "...(" + strconv.Itoa(cut) + " more bytes)"
	}
	return q
}

// Every rate-limits a log line: at most Burst lines per Per; the rest are
// counted and reported with the next line let through.
type Every struct {
	Burst int
	Per   time.Duration

	mu         sync.Mutex
	start      time.Time
	n          int
	suppressed int
}

// Allow reports whether a line may be logged now, and how many were
// suppressed since the last one let through.
func (e *Every) Allow(now time.Time) (ok bool, suppressed int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if now.Sub(e.start) >= e.Per {
		e.start, e.n = now, 0
	}
	if e.n >= e.Burst {
		e.suppressed++
		return false, 0
	}
	e.n++
	s := e.suppressed
	e.suppressed = 0
	return true, s
}
