// Command mgmtd is the management daemon: the HTTP API (package services/mgmtd)
// with bearer-token auth, optional TLS and /metrics, listening only on the
// management NIC or the Internal self IPs (never External), and the syslog
// forwarder (services/logring) for the console log.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nldump"
	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/logring"
	"github.com/fulcrum-lb/fulcrum/services/mgmtd"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func main() {
	path := flag.String("config", "/etc/fulcrum/config.yaml", "appliance config file")
	flag.Parse()
	logger := logrus.New()
	log := logger.WithField("daemon", "mgmtd")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *path, logger, log); err != nil {
		log.WithError(err).Error("mgmtd failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, path string, logger *logrus.Logger, log *logrus.Entry) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	daemon.SetLogFormat(logger, cfg.Access.Log.Format)
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
	hash, err := mgmtd.TokenHash(cfg.Access.API)
	if err != nil {
		log.Warn(err.Error())
		<-ctx.Done()
		return nil
	}
	srv := &http.Server{Handler: (&mgmtd.Server{API: api, TokenHash: hash, Log: log}).Handler(), ReadHeaderTimeout: 10 * time.Second}
	if t := cfg.Access.API.TLS; t != nil {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return fmt.Errorf("api tls: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
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
			ip, _, _ := strings.Cut(a, "/")
			l, err := listenRetry(ctx, net.JoinHostPort(ip, port), "")
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
