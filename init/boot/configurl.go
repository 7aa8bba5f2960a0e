package boot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/netsetup/dhcp"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Config by URL: with fulcrum.config_url=http://... on the kernel command
// line, init brings up the management NIC, gets one DHCP lease on it,
// fetches the URL and runs that config (copied to /run/fulcrum/config.yaml).
//
//   - The management NIC is fulcrum.mgmt=NAME|MAC when given, else the
//     built-in config's network.management.interface.
//   - A fetched config that fails validation is the config the operator
//     chose: maintenance state naming the bad field, as for any config.
//   - No NIC, no lease, an unreachable URL, a non-200 answer or a body over
//     ConfigURLMaxSize: the console says "could not fetch URL (reason)" and
//     the usual choice follows (config partition, else built-in).
//   - fulcrum.config=PATH wins over the URL (the URL is then not fetched).
//
// The lease is kept when the chosen config runs DHCP on the same NIC (dhcpc
// takes over), otherwise it is released before the network is set up.
const (
	ParamConfigURL = "fulcrum.config_url"
	ParamMgmt      = "fulcrum.mgmt"
	// Bounds: the wait for the NIC, for the lease, for the HTTP fetch.
	ConfigURLNICWait   = 5 * time.Second
	ConfigURLDHCPWait  = 20 * time.Second
	ConfigURLFetchWait = 10 * time.Second
	ConfigURLMaxSize   = 1 << 20
)

// urlBoot is the outcome of fulcrum.config_url.
type urlBoot struct {
	URL     string
	Fetched bool
	NIC     string // selector of the management NIC used
	Lease   *dhcp.Client
}

// chooseConfigWithURL is chooseConfig with fulcrum.config_url first.
func (in *Init) chooseConfigWithURL(ctx context.Context, log logrus.FieldLogger) (ConfigChoice, urlBoot) {
	u := urlBoot{URL: in.Cmdline[ParamConfigURL]}
	if u.URL == "" {
		return chooseConfig(log, in.Cmdline, in.say), u
	}
	if p := in.Cmdline[ParamConfig]; p != "" {
		in.say("fulcrum: config: %s=%s given; not fetching %s", ParamConfig, p, u.URL)
		return chooseConfig(log, in.Cmdline, in.say), u
	}
	start := time.Now()
	choice, err := in.fetchConfigURL(ctx, log, &u)
	if err == nil {
		u.Fetched = true
		log.WithField("took", time.Since(start).Round(time.Millisecond)).Info("config fetched")
		return choice, u
	}
	choice = chooseConfig(log, in.Cmdline, in.say)
	fallback := choice.Source
	if choice.Path == DefaultConfigPath {
		fallback = "built-in config"
	}
	in.say("fulcrum: config: could not fetch %s (%v); using the %s", u.URL, err, fallback)
	return choice, u
}

func (in *Init) fetchConfigURL(ctx context.Context, log logrus.FieldLogger, u *urlBoot) (ConfigChoice, error) {
	if !strings.HasPrefix(u.URL, "http://") && !strings.HasPrefix(u.URL, "https://") {
		return ConfigChoice{}, fmt.Errorf("not an http:// or https:// URL")
	}
	sel, err := MgmtSelector(in.Cmdline, DefaultConfigPath)
	if err != nil {
		return ConfigChoice{}, err
	}
	u.NIC = sel
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return ConfigChoice{}, fmt.Errorf("netlink: %w", err)
	}
	name, err := dhcp.FindInterface(ctx, h, sel, ConfigURLNICWait)
	if err != nil {
		h.Close()
		return ConfigChoice{}, err
	}
	c, err := dhcp.Open(dhcp.Options{Interface: name, Handle: h, Log: log.WithField("interface", name)})
	if err != nil {
		h.Close()
		return ConfigChoice{}, err
	}
	dctx, cancel := context.WithTimeout(ctx, ConfigURLDHCPWait)
	start := time.Now()
	l, err := c.Obtain(dctx)
	cancel()
	if err == nil {
		err = c.Apply(l)
	}
	if err != nil {
		c.Close()
		return ConfigChoice{}, err
	}
	u.Lease = c
	in.say("fulcrum: config: DHCP on %s: %s (%.1fs)", name, l, time.Since(start).Seconds())
	b, err := FetchConfig(ctx, u.URL, ConfigURLFetchWait, ConfigURLMaxSize)
	if err != nil {
		return ConfigChoice{}, err
	}
	if err := os.MkdirAll(filepath.Dir(partConfigCopy), 0o755); err != nil {
		return ConfigChoice{}, err
	}
	if err := os.WriteFile(partConfigCopy, b, 0o600); err != nil {
		return ConfigChoice{}, err
	}
	return ConfigChoice{Path: partConfigCopy, Source: fmt.Sprintf("%s (fetched over %s, %d bytes)", u.URL, name, len(b))}, nil
}

// keepOrRelease ends the boot-time lease unless cfg is valid and runs DHCP
// on that NIC.
func (u urlBoot) keepOrRelease(cfg *config.Config, cfgErr error, log logrus.FieldLogger) {
	if u.Lease == nil {
		return
	}
	defer u.Lease.Close()
	if cfgErr == nil && cfg != nil && dhcp.Enabled(cfg.Network.Management) && strings.EqualFold(cfg.Network.Management.Interface, u.NIC) {
		return
	}
	if err := u.Lease.Release(); err != nil {
		log.WithError(err).Warn("releasing the boot-time DHCP lease")
	}
}

// MgmtSelector names the management NIC for fetching the config:
// fulcrum.mgmt= when given, else the built-in config's
// network.management.interface.
func MgmtSelector(cmdline Cmdline, builtinPath string) (string, error) {
	if v := cmdline[ParamMgmt]; v != "" {
		if !config.IsMAC(v) && (len(v) > 15 || strings.ContainsAny(v, "/ ")) {
			return "", fmt.Errorf("%s=%q is neither an interface name nor a MAC address", ParamMgmt, v)
		}
		return v, nil
	}
	cfg, err := config.Load(builtinPath)
	if err != nil {
		return "", fmt.Errorf("no %s= and the built-in config does not load (%v)", ParamMgmt, firstLine(err.Error()))
	}
	if cfg.Network.Management == nil {
		return "", fmt.Errorf("no management NIC: give %s=NAME|MAC or network.management in the built-in config", ParamMgmt)
	}
	return cfg.Network.Management.Interface, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// FetchConfig GETs url within timeout and returns the body, refusing
// bodies over max bytes and answers other than 200.
func FetchConfig(ctx context.Context, url string, timeout time.Duration, max int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap() // drop `Get "url":`: the message names the URL already
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return b, nil
}
