// Command fulcrum-netboot serves the appliance's PXE tree on one interface:
// DHCP (with PXE and iPXE boot files), TFTP and HTTP.
//
//	fulcrum-netboot -interface eth1 -range 192.0.2.200-192.0.2.250 [-dir out/pxe] [-allow-mac MAC,MAC...]
//
// Anyone on the segment can boot the image (and read the initramfs, config
// included; see the README on keeping secrets out of it) unless -allow-mac
// names the machines that may. Offers expire after 30 s, so a DISCOVER
// flood cannot reserve the pool.
//
// It answers only on the named interface (DHCP is bound to the device, TFTP
// and HTTP to its IPv4 address), so it can run on a machine whose other
// interfaces face networks with their own DHCP servers.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fulcrum-lb/fulcrum/image/netboot"
	"github.com/sirupsen/logrus"
)

func main() {
	iface := flag.String("interface", "", "interface to serve on (required)")
	dir := flag.String("dir", "out/pxe", "PXE tree written by the image builder")
	pool := flag.String("range", "", "addresses to hand out, FIRST-LAST, inside the interface's subnet (required)")
	httpPort := flag.Int("http-port", 80, "HTTP port for iPXE")
	router := flag.String("router", "", "default gateway to hand out (optional)")
	allow := flag.String("allow-mac", "", "comma-separated MACs that may boot (default: any)")
	flag.Parse()
	log := logrus.New()
	if err := run(log, *iface, *dir, *pool, *httpPort, *router, *allow); err != nil {
		log.Error(err)
		os.Exit(1)
	}
}

func run(log *logrus.Logger, iface, dir, pool string, httpPort int, router, allow string) error {
	first, last, ok := strings.Cut(pool, "-")
	cfg := netboot.Config{Interface: iface, Dir: dir, HTTPPort: httpPort, Log: log,
		PoolStart: net.ParseIP(first), PoolEnd: net.ParseIP(last)}
	if !ok || cfg.PoolStart == nil || cfg.PoolEnd == nil {
		return fmt.Errorf("-range %q: want FIRST-LAST, e.g. 192.0.2.200-192.0.2.250", pool)
	}
	if router != "" {
		if cfg.Router = net.ParseIP(router); cfg.Router == nil {
			return fmt.Errorf("-router %q: not an IP address", router)
		}
	}
	if allow != "" {
		for _, m := range strings.Split(allow, ",") {
			mac, err := net.ParseMAC(strings.TrimSpace(m))
			if err != nil {
				return fmt.Errorf("-allow-mac %q: %w", m, err)
			}
			cfg.AllowMACs = append(cfg.AllowMACs, mac)
		}
	}
	s, err := netboot.Listen(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return s.Serve(ctx)
}
