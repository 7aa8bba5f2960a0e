package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
	"github.com/fulcrum-lb/fulcrum/lbcore/l7/balance"
	"github.com/fulcrum-lb/fulcrum/lbcore/l7/cookie"
	"github.com/fulcrum-lb/fulcrum/lbcore/l7/proxyproto"
)

// vsState is one L7 virtual server as one config apply built it. A
// listener serves requests with the state it holds when each request
// starts, so an apply swaps it without disturbing requests in flight.
type vsState struct {
	name   string
	mode   config.Mode
	addr   netip.AddrPort
	opts   config.HTTPOptions
	bal    *balance.Balancer
	codec  *cookie.Codec // nil: no cookie persistence
	tls    *tls.Config   // https only
	tr     *http.Transport
	rp     *httputil.ReverseProxy
	stats  *vsStats
	memStI map[*balance.Member]*memberStats
}

type ctxKey int

const (
	memberKey ctxKey = iota // *balance.Member of the request
	clientKey               // netip.AddrPort pair for PROXY headers: [2]netip.AddrPort{client, vip}
)

// newVS builds the state of cfg.VirtualServers[i] (mode http or https).
// Certificate files are read here; a problem names its field.
func newVS(p *Proxy, cfg *config.Config, i int, stats *vsStats) (*vsState, error) {
	v := &cfg.VirtualServers[i]
	vp := cfgerr.Index("virtual_servers", i)
	pool := cfg.Pools[v.Pool]
	if pool == nil {
		return nil, cfg.FieldError(cfgerr.Join(vp, "pool"), "unknown pool %q", v.Pool)
	}
	st := &vsState{name: v.Name, mode: v.Mode, addr: netip.AddrPortFrom(v.VIP.Unmap(), v.Port.From), opts: *v.HTTP, stats: stats, memStI: map[*balance.Member]*memberStats{}}
	if v.HTTP.CookieOn() {
		c, err := cookie.New(cfg.CookieSecret(v))
		if err != nil {
			return nil, cfg.FieldError(cfgerr.Join(vp, "http.cookie.secret"), "%v", err)
		}
		st.codec = c
	}
	var members []*balance.Member
	for _, m := range pool.Members {
		ref := m.Ref(v.Pool)
		port := ref.Port
		if port == 0 {
			port = v.Port.From
		}
		bm := &balance.Member{Ref: ref, Addr: netip.AddrPortFrom(ref.Addr, port).String(), Weight: m.MemberWeight()}
		if st.codec != nil {
			bm.Key = st.codec.MemberID(v.Name, ref.String())
		}
		members = append(members, bm)
		st.memStI[bm] = stats.member(ref)
	}
	st.bal = balance.New(v.Scheduler, members)
	if v.Mode == config.ModeHTTPS {
		t, err := loadTLS(cfg, vp, v.HTTP.Certificates)
		if err != nil {
			return nil, err
		}
		st.tls = t
	}
	st.tr = newTransport(v.HTTP, p.Dial)
	st.rp = &httputil.ReverseProxy{
		Rewrite:      st.rewrite,
		Transport:    st.tr,
		ErrorHandler: st.proxyError,
		BufferPool:   bufPool{p.bufs},
	}
	return st, nil
}

// loadTLS reads the certificates; the client's SNI chooses among them (the
// first one when none matches).
func loadTLS(cfg *config.Config, vp string, certs []config.Certificate) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	for j, c := range certs {
		cp := cfgerr.Index(cfgerr.Join(vp, "http.certificates"), j)
		for _, f := range []struct{ field, file string }{{"cert", c.Cert}, {"key", c.Key}} {
			if _, err := os.Stat(f.file); err != nil {
				return nil, cfg.FieldError(cfgerr.Join(cp, f.field), "%v", err)
			}
		}
		kp, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, cfg.FieldError(cp, "%v", err)
		}
		if kp.Leaf != nil && time.Now().After(kp.Leaf.NotAfter) {
			return nil, cfg.FieldError(cfgerr.Join(cp, "cert"), "certificate %s expired on %s", c.Cert, kp.Leaf.NotAfter.UTC().Format(time.DateOnly))
		}
		t.Certificates = append(t.Certificates, kp)
	}
	return t, nil
}

// newTransport pools connections to members (HTTP/1.1 keep-alive). With
// PROXY protocol every member connection belongs to one client, so it is
// not pooled.
func newTransport(o *config.HTTPOptions, base DialFunc) *http.Transport {
	dial := base
	if o.ProxyProtocol {
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			ends, ok := ctx.Value(clientKey).([2]netip.AddrPort)
			if !ok {
				return nil, errors.New("proxy protocol: no client address for this request")
			}
			h, err := proxyproto.Header(ends[0], ends[1])
			if err != nil {
				return nil, err
			}
			c, err := base(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if _, err := c.Write(h); err != nil {
				c.Close()
				return nil, fmt.Errorf("proxy protocol header to %s: %w", addr, err)
			}
			return c, nil
		}
	}
	return &http.Transport{
		DialContext:            dial,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    1024,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  o.Timeouts.Backend.D(),
		ExpectContinueTimeout:  time.Second,
		DisableCompression:     true,
		DisableKeepAlives:      o.ProxyProtocol,
		MaxResponseHeaderBytes: int64(o.MaxHeaderBytes) * 4,
		WriteBufferSize:        32 << 10,
		ReadBufferSize:         32 << 10,
	}
}

// rewrite sends the request to the member the handler picked, with the
// client's Host and (on) X-Forwarded-For/-Host/-Proto appended.
func (st *vsState) rewrite(pr *httputil.ProxyRequest) {
	m := pr.In.Context().Value(memberKey).(*balance.Member)
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = m.Addr
	pr.Out.Host = pr.In.Host
	if st.opts.ForwardedOn() {
		if xff := pr.In.Header["X-Forwarded-For"]; len(xff) > 0 {
			pr.Out.Header["X-Forwarded-For"] = xff
		}
		pr.SetXForwarded()
	}
}

// proxyError answers a request the member did not: 413 for a body over the
// limit, 504 for a member that did not answer in time, 502 otherwise.
func (st *vsState) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var mb *http.MaxBytesError
	code := http.StatusBadGateway
	switch {
	case errors.As(err, &mb):
		code = http.StatusRequestEntityTooLarge
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		code = http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		code = 499 // the client went away (nginx's code); it sees nothing
	}
	if m, ok := r.Context().Value(memberKey).(*balance.Member); ok && code != http.StatusRequestEntityTooLarge && code != 499 {
		st.memStI[m].errors.Add(1)
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(http.StatusText(code))+1))
	w.WriteHeader(code)
	fmt.Fprintln(w, http.StatusText(code))
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// bufPool recycles the proxy's copy buffers (one pool per Proxy).
type bufPool struct{ p *sync.Pool }

func newBufs() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
}

func (b bufPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b bufPool) Put(x []byte) { b.p.Put(&x) }

// serverKey is what a listener's http.Server fixes: a change needs a new
// server (the old one finishes its requests).
type serverKey struct {
	mode                        config.Mode
	header, read, idle, backend time.Duration
	maxHeader, maxConns         int
}

func (st *vsState) serverKey() serverKey {
	t := st.opts.Timeouts
	return serverKey{st.mode, t.Header.D(), t.Read.D(), t.Idle.D(), t.Backend.D(), st.opts.MaxHeaderBytes, st.opts.MaxConnections}
}

// CheckFiles reads the certificates and keys every https virtual server of
// cfg names, as the proxy will: the LB daemon refuses a config apply (and
// validate) with a missing or bad one, as "field.path (line N): reason",
// before anything changes.
func CheckFiles(cfg *config.Config) error {
	for i := range cfg.VirtualServers {
		v := &cfg.VirtualServers[i]
		if v.Mode != config.ModeHTTPS || v.HTTP == nil {
			continue
		}
		if _, err := loadTLS(cfg, cfgerr.Index("virtual_servers", i), v.HTTP.Certificates); err != nil {
			return err
		}
	}
	return nil
}
