package l7

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

// Options configure the daemon.
type Options struct {
	ConfigPath string
	Socket     string // local API socket ("" for none)
	// SocketDir holds the other daemons' sockets ("" = localapi.Dir).
	SocketDir string
	// HealthEvery is how often the LB daemon's health state is read.
	HealthEvery time.Duration
	// ConfigEvery is how often the config file is checked for a change
	// (an apply through the API rewrites it); SIGHUP reloads at once.
	ConfigEvery time.Duration
}

// Run is the L7 proxy daemon: it serves the config's http/https virtual
// servers, follows the LB daemon's member health, re-applies when the
// config file changes or on SIGHUP (a config that does not load or apply
// leaves the running one in place), and serves its counters on its local
// API socket until ctx ends. With no L7 virtual server it idles, ready for
// a config that adds one.
func Run(ctx context.Context, o Options, log *logrus.Entry) error {
	src, err := os.ReadFile(o.ConfigPath)
	if err != nil {
		return err
	}
	cfg, err := config.Parse(src)
	if err != nil {
		return err
	}
	p := New(log)
	if err := p.Apply(ctx, cfg); err != nil {
		return err
	}
	api := localapi.NewAppliance(o.SocketDir)
	go FollowHealth(ctx, api, p, o.HealthEvery, log)
	if o.Socket != "" {
		mux := http.NewServeMux()
		localapi.Route(mux, "GET", localapi.PathL7, func(w http.ResponseWriter, r *http.Request) {
			localapi.WriteJSON(w, http.StatusOK, p.Status())
		})
		go func() {
			if err := daemon.ServeSocket(ctx, o.Socket, mux, log); err != nil {
				log.WithError(err).Warn("local api socket not served")
			}
		}()
	}
	daemon.Ready(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(o.ConfigEvery)
	defer tick.Stop()
	for {
		force := false
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			p.Shutdown(sctx)
			cancel()
			return nil
		case <-hup:
			force = true
		case <-tick.C:
		}
		b, err := os.ReadFile(o.ConfigPath)
		if err != nil {
			log.WithError(err).Warn("config not readable; running config unchanged")
			continue
		}
		if !force && bytes.Equal(b, src) {
			continue
		}
		src = b
		next, err := config.Parse(b)
		if err == nil {
			err = p.Apply(ctx, next)
		}
		if err != nil {
			log.WithError(err).Error("config rejected; running L7 config unchanged")
		}
	}
}

// FollowHealth reads the LB daemon's member health every interval and
// passes it to p: a member is usable when it is up or unmonitored and not
// disabled. While lbd does not answer, the last state stays.
func FollowHealth(ctx context.Context, api *localapi.Appliance, p *Proxy, every time.Duration, log *logrus.Entry) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		qctx, cancel := context.WithTimeout(ctx, every+time.Second)
		hs, err := api.Health(qctx)
		cancel()
		switch {
		case err != nil && !failing:
			failing = true
			log.WithError(err).Warn("LB daemon health not readable; keeping the last member states")
		case err == nil:
			if failing {
				log.Info("LB daemon health readable again")
			}
			failing = false
			p.SetHealth(Usable(hs))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Usable maps lbd's health list to usable members.
func Usable(hs []localapi.MemberHealth) map[config.MemberRef]bool {
	out := map[config.MemberRef]bool{}
	for _, h := range hs {
		ref, err := ParseMember(h.Pool, h.Member)
		if err != nil {
			continue
		}
		out[ref] = !h.Disabled && (h.Health == "up" || h.Health == "unmonitored")
	}
	return out
}

// ParseMember reads a member as MemberRef.Label spells it ("addr" for port
// 0, "addr:port", "[v6]:port").
func ParseMember(pool, label string) (config.MemberRef, error) {
	if ap, err := netip.ParseAddrPort(label); err == nil {
		return config.MemberRef{Pool: pool, Addr: ap.Addr(), Port: ap.Port()}, nil
	}
	a, err := netip.ParseAddr(label)
	if err != nil {
		return config.MemberRef{}, fmt.Errorf("member %q: not addr or addr:port", label)
	}
	return config.MemberRef{Pool: pool, Addr: a}, nil
}
