// Package l7 is the L7 proxy of the appliance (run by services/cmd/l7d):
// it serves the virtual servers of mode http and https on their VIPs,
// balances requests over the same pools and members as L4 (health from the
// LB daemon's one health state), pins clients with an authenticated cookie,
// terminates TLS (certificates by SNI, HTTP/2), and applies a new config
// without cutting requests in flight.
package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/services/guard"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Proxy serves every L7 virtual server of the running config.
type Proxy struct {
	log  *logrus.Entry
	bufs *sync.Pool

	mu        sync.Mutex
	listeners map[netip.AddrPort]*listener
	stats     map[string]*vsStats // by VS name, kept across applies
	health    map[config.MemberRef]bool
	// Listen opens a listener and Dial connects to members (tests replace
	// them before the first Apply to work inside a network namespace).
	Listen func(ctx context.Context, addr netip.AddrPort) (net.Listener, error)
	Dial   DialFunc
}

// DialFunc connects to a member.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// New returns a proxy with nothing to serve yet.
func New(log *logrus.Entry) *Proxy {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &Proxy{log: log, bufs: newBufs(), listeners: map[netip.AddrPort]*listener{}, stats: map[string]*vsStats{}, Listen: Listen, Dial: d.DialContext}
}

// listener is one VIP:port with its server and the VS state it serves.
type listener struct {
	p     *Proxy
	key   serverKey
	ln    net.Listener
	srv   *http.Server
	conns *guard.Conns
	vs    atomicVS
}

// Listen listens on addr with IP_FREEBIND (the VIP need not be on this
// node yet: a VRRP backup listens before it takes the address over) and
// SO_REUSEPORT (a changed server starts next to the old one, which
// finishes its requests).
func Listen(ctx context.Context, addr netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); serr != nil {
				return
			}
			if addr.Addr().Is4() {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(ctx, "tcp", addr.String())
}

// Apply makes cfg (validated) the running L7 config. Everything that can
// fail (certificates, listening) is done before anything changes: an error
// leaves the running state exactly as it was. Requests in flight finish
// with the config they started with; new ones use cfg.
func (p *Proxy) Apply(ctx context.Context, cfg *config.Config) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := map[netip.AddrPort]*vsState{}
	stats := map[string]*vsStats{}
	for i := range cfg.VirtualServers {
		v := &cfg.VirtualServers[i]
		if !v.Mode.L7() {
			continue
		}
		s := p.stats[v.Name]
		if s == nil {
			s = newVSStats()
		}
		stats[v.Name] = s
		st, err := newVS(p, cfg, i, s)
		if err != nil {
			closeAll(next)
			return err
		}
		for _, m := range st.bal.Members() {
			if ok, known := p.health[m.Ref]; known {
				st.bal.SetUsable(m.Ref, ok)
			}
		}
		next[st.addr] = st
	}
	// New servers for new addresses and changed server settings.
	fresh := map[netip.AddrPort]*listener{}
	for a, st := range next {
		if old := p.listeners[a]; old != nil && old.key == st.serverKey() {
			continue
		}
		l, err := p.open(ctx, st)
		if err != nil {
			for _, l := range fresh {
				l.ln.Close()
			}
			closeAll(next)
			return fmt.Errorf("virtual server %s: listen on %s: %w", st.name, a, err)
		}
		fresh[a] = l
	}
	// Nothing can fail from here on.
	for a, old := range p.listeners {
		if _, kept := next[a]; !kept || fresh[a] != nil {
			go p.retire(old)
			delete(p.listeners, a)
		}
	}
	for a, st := range next {
		if l := fresh[a]; l != nil {
			p.listeners[a] = l
			go p.serve(l)
			continue
		}
		l := p.listeners[a]
		prev := l.vs.swap(st)
		go prev.retireTransport()
	}
	p.stats = stats
	p.log.WithField("virtual_servers", len(next)).Info("L7 config applied")
	return nil
}

func closeAll(states map[netip.AddrPort]*vsState) {
	for _, st := range states {
		st.tr.CloseIdleConnections()
	}
}

// retireTransport closes the member connections of a replaced state once
// its requests had time to finish (idle ones close now, busy ones when
// their request ends and they go idle).
func (st *vsState) retireTransport() {
	st.tr.CloseIdleConnections()
	time.Sleep(st.opts.Timeouts.Backend.D() + st.opts.Timeouts.Read.D())
	st.tr.CloseIdleConnections()
}

func (p *Proxy) open(ctx context.Context, st *vsState) (*listener, error) {
	ln, err := p.Listen(ctx, st.addr)
	if err != nil {
		return nil, err
	}
	o := st.opts
	l := &listener{p: p, key: st.serverKey(), conns: guard.NewConns(o.MaxConnections)}
	l.vs.swap(st)
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: o.Timeouts.Header.D(),
		ReadTimeout:       o.Timeouts.Read.D(),
		WriteTimeout:      o.Timeouts.Read.D() + o.Timeouts.Backend.D(),
		IdleTimeout:       o.Timeouts.Idle.D(),
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ConnState:         l.conns.ConnState,
		ErrorLog:          httpErrorLog(p.log.WithField("vs", st.name)),
	}
	l.ln = l.conns.Listener(ln)
	if st.tls != nil {
		base := st.tls.Clone()
		// The certificates come from the state at handshake time, so an
		// apply that changes only them needs no new server.
		base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return l.vs.load().tls, nil }
		l.srv.TLSConfig = base
	}
	return l, nil
}

func (p *Proxy) serve(l *listener) {
	st := l.vs.load()
	var err error
	if l.srv.TLSConfig != nil {
		err = l.srv.ServeTLS(l.ln, "", "")
	} else {
		err = l.srv.Serve(l.ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		p.log.WithError(err).WithField("vs", st.name).Error("L7 listener failed")
	}
}

// retire stops a listener: no new connections, requests in flight finish
// (up to the read and backend timeouts), then the rest is closed.
func (p *Proxy) retire(l *listener) {
	st := l.vs.load()
	ctx, cancel := context.WithTimeout(context.Background(), st.opts.Timeouts.Read.D()+st.opts.Timeouts.Backend.D())
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		l.srv.Close()
	}
	st.tr.CloseIdleConnections()
}

// SetHealth marks members usable or not (health from the LB daemon: up or
// unmonitored, and not disabled). Members it does not name keep their state.
func (p *Proxy) SetHealth(h map[config.MemberRef]bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.health = h
	for _, l := range p.listeners {
		bal := l.vs.load().bal
		for _, m := range bal.Members() {
			if ok, known := h[m.Ref]; known {
				bal.SetUsable(m.Ref, ok)
			}
		}
	}
}

// Shutdown stops every listener, letting requests in flight finish until
// ctx ends.
func (p *Proxy) Shutdown(ctx context.Context) {
	p.mu.Lock()
	ls := p.listeners
	p.listeners = map[netip.AddrPort]*listener{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.srv.Shutdown(ctx); err != nil {
				l.srv.Close()
			}
			l.vs.load().tr.CloseIdleConnections()
		}()
	}
	wg.Wait()
}

// Addrs lists the addresses listened on, sorted.
func (p *Proxy) Addrs() []netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []netip.AddrPort
	for a := range p.listeners {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Compare(out[j]) < 0 })
	return out
}
