package mgmtd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nldump"
	"github.com/fulcrum-lb/fulcrum/services/console"
	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/fulcrum-lb/fulcrum/services/dashboard"
	"github.com/fulcrum-lb/fulcrum/services/guard"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/logring"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Limits are the HTTP API's timeouts and caps: a slow or idle client is
// cut off, and at the connection cap the longest-idle connection makes
// room, so an admin gets in while thousands of idle sockets are open. A
// config apply may take a while (the LB daemon reloads), hence the write
// timeout.
func Limits() guard.HTTP {
	return guard.HTTP{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		MaxBodyBytes:      1 << 20,
		MaxConns:          256,
	}
}

// Run is the management daemon: the syslog forwarder and the HTTP API on
// the configured side, until ctx ends.
func Run(ctx context.Context, path string, log *logrus.Entry) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	api := localapi.NewAppliance("")
	host, _ := os.Hostname()
	if t := cfg.Access.Syslog.Target; t != "" {
		fwd, err := logring.NewForwarder(t, host, 4096)
		if err != nil {
			return err
		}
		go fwd.Run(ctx)
		go logring.Follow(ctx, api, fwd, 500*time.Millisecond)
		log.WithField("target", t).Info("forwarding the console log to syslog (RFC 5424)")
	}
	hash, err := TokenHash(cfg.Access.API)
	if err != nil {
		log.Warn(err.Error())
		if cfg.Access.Syslog.Target == "" {
			return fmt.Errorf("no API token and no syslog target: %w", daemon.ErrNothingToDo)
		}
		daemon.Ready(ctx)
		<-ctx.Done()
		return nil
	}
	lim := Limits()
	lim.ErrorLog = &guard.LimitedWriter{W: log.WithField("from", "http").WriterLevel(logrus.WarnLevel), Max: maxLoggedText, Every: &guard.Every{Burst: authLogBurst, Per: time.Second}}
	tlsCfg, err := TLSConfig(cfg)
	if err != nil {
		return fmt.Errorf("api tls: %w", err)
	}
	dash := &dashboard.Server{API: api, TLS: tlsCfg != nil, Log: log, Check: console.CheckNiced,
		Hash: func() (string, error) {
			h, _, err := console.ConsoleHash(path)
			return h, err
		}}
	srv := lim.Server((&Server{API: api, TokenHash: hash, Log: log, Dashboard: dash.Handler()}).Handler())
	srv.TLSConfig = tlsCfg
	listeners, err := listen(ctx, cfg, log)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	daemon.Ready(ctx)
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		log.WithFields(logrus.Fields{"listen": l.Addr().String(), "tls": srv.TLSConfig != nil, "side": cfg.Access.API.Listen}).Info("HTTP API listening")
		go func(l net.Listener) {
			if srv.TLSConfig != nil {
				errc <- srv.ServeTLS(l, "", "")
			} else {
				errc <- srv.Serve(l)
			}
		}(l)
	}
	for range listeners {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	return nil
}

// listen opens the API's sockets: the Internal self IPs, or the management
// NIC (bound to the device, whatever address DHCP gives it). It never
// listens on a wildcard address without a device binding.
func listen(ctx context.Context, cfg *config.Config, log *logrus.Entry) ([]net.Listener, error) {
	port := fmt.Sprint(cfg.Access.API.Port)
	var out []net.Listener
	if cfg.Access.API.Listen == config.ListenInternal {
		for _, a := range cfg.Network.Internal.Addresses {
			l, err := listenRetry(ctx, net.JoinHostPort(a.Addr().String(), port), "")
			if err != nil {
				return nil, err
			}
			out = append(out, l)
		}
		if len(out) == 0 {
			return nil, errors.New("api: listen internal, but the internal group has no addresses")
		}
		return out, nil
	}
	dev, err := mgmtDevice(cfg.Network.Management.Interface)
	if err != nil {
		return nil, err
	}
	l, err := listenRetry(ctx, ":"+port, dev)
	if err != nil {
		return nil, err
	}
	return []net.Listener{l}, nil
}

// listenRetry retries for a while: the address may still be coming up.
func listenRetry(ctx context.Context, addr, device string) (net.Listener, error) {
	lc := net.ListenConfig{}
	if device != "" {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), device) })
			if err != nil {
				return err
			}
			return serr
		}
	}
	var err error
	for i := 0; i < 30; i++ {
		var l net.Listener
		if l, err = lc.Listen(ctx, "tcp", addr); err == nil {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return nil, fmt.Errorf("api: listen %s: %w", addr, err)
}

// mgmtDevice resolves the management NIC (name or MAC) to its name.
func mgmtDevice(nameOrMAC string) (string, error) {
	if !config.IsMAC(nameOrMAC) {
		return nameOrMAC, nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return "", fmt.Errorf("api: netlink: %w", err)
	}
	defer h.Close()
	links, err := nldump.Retry(h.LinkList)
	if err != nil {
		return "", fmt.Errorf("api: listing links: %w", err)
	}
	for _, l := range links {
		if strings.EqualFold(l.Attrs().HardwareAddr.String(), nameOrMAC) {
			return l.Attrs().Name, nil
		}
	}
	return "", fmt.Errorf("api: no NIC with MAC %s for the management side", nameOrMAC)
}
