package l7

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/l7/balance"
	"github.com/fulcrum-lb/fulcrum/services/guard"
	"github.com/sirupsen/logrus"
)

// atomicVS holds the state a listener serves.
type atomicVS struct{ p atomic.Pointer[vsState] }

func (a *atomicVS) load() *vsState           { return a.p.Load() }
func (a *atomicVS) swap(s *vsState) *vsState { return a.p.Swap(s) }

// ServeHTTP serves one request with the state current when it starts.
func (l *listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := l.vs.load()
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	m := st.serve(rec, r, start)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	st.stats.count(rec.status, rec.bytes)
	if m != nil {
		ms := st.memStI[m]
		ms.requests.Add(1)
		ms.bytes.Add(rec.bytes)
	}
	if l.p.log.Logger.IsLevelEnabled(logrus.InfoLevel) {
		accessLog(l.p.log, st.name, r, rec, m, start)
	}
}

func (st *vsState) serve(w http.ResponseWriter, r *http.Request, now time.Time) *balance.Member {
	if !st.opts.HostAllowed(r.Host) {
		http.Error(w, "no such host here", http.StatusMisdirectedRequest)
		return nil
	}
	if r.ContentLength > st.opts.MaxBodyBytes {
		w.Header().Set("Connection", "close")
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return nil
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, st.opts.MaxBodyBytes)
	}
	var key [8]byte
	pinned := false
	if st.codec != nil {
		if c, err := r.Cookie(st.opts.Cookie.Name); err == nil {
			if id, err := st.codec.Decode(c.Value, now); err == nil {
				key, pinned = id, true
			} else {
				st.stats.badCookies.Add(1)
			}
		}
	}
	m, fresh, err := st.bal.Pick(key, pinned)
	if err != nil {
		http.Error(w, "no member available", http.StatusServiceUnavailable)
		return nil
	}
	defer m.Done()
	if st.codec != nil && fresh {
		life := st.opts.Cookie.Lifetime.D()
		http.SetCookie(w, &http.Cookie{
			Name: st.opts.Cookie.Name, Value: st.codec.Encode(m.Key, now.Add(life)),
			Path: "/", MaxAge: int(life.Seconds()), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
		})
	}
	ctx := context.WithValue(r.Context(), memberKey, m)
	if st.opts.ProxyProtocol {
		ctx = context.WithValue(ctx, clientKey, endpoints(r))
	}
	st.rp.ServeHTTP(w, r.WithContext(ctx))
	return m
}

// endpoints are the client's and the VIP's address of the request's
// connection, for the PROXY header.
func endpoints(r *http.Request) [2]netip.AddrPort {
	var out [2]netip.AddrPort
	out[0], _ = netip.ParseAddrPort(r.RemoteAddr)
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		out[1], _ = netip.ParseAddrPort(la.String())
	}
	return out
}

// recorder notes the status and body bytes of a response.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (flush,
// deadlines, upgrades).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// accessLog writes one line per request in the common log format (client,
// identity, user, time, request line, status, bytes) with the virtual
// server, member and duration as fields.
func accessLog(log *logrus.Entry, vs string, r *http.Request, rec *recorder, m *balance.Member, start time.Time) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	member := "-"
	if m != nil {
		member = m.Addr
	}
	line := fmt.Sprintf("%s - - [%s] %q %d %d", host, start.Format("02/Jan/2006:15:04:05 -0700"),
		r.Method+" "+guard.Clip(r.RequestURI, 2048)+" "+r.Proto, rec.status, rec.bytes)
	log.WithFields(logrus.Fields{"vs": vs, "member": member, "ms": strconv.FormatInt(time.Since(start).Milliseconds(), 10)}).Info(line)
}

// httpErrorLog passes net/http's server errors (TLS handshake failures,
// bad requests it answers itself) to the logger at debug level, with
// bursts limited: clients control them.
func httpErrorLog(e *logrus.Entry) *log.Logger {
	w := &guard.LimitedWriter{W: debugWriter{e}, Max: 512, Every: &guard.Every{Burst: 10, Per: time.Second}}
	return log.New(w, "", 0)
}

type debugWriter struct{ e *logrus.Entry }

func (d debugWriter) Write(b []byte) (int, error) {
	d.e.Debug(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
