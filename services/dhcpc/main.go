// Command dhcpc keeps a DHCP lease on the management NIC when the config's
// network.management section asks for DHCP (dhcp: true, or no static
// address): address, default route (metric 1024, below static routes) and
// DNS servers. On SIGTERM it releases the lease. Without DHCP to do it
// idles, so the supervisor does not restart it. The logic is in
// netsetup/dhcp.
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/fulcrum-lb/fulcrum/services/daemonlog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/netsetup/dhcp"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func main() {
	path := flag.String("config", "/etc/fulcrum/config.yaml", "appliance config file")
	level := flag.String("log-level", "info", "log level (debug, info, warn, error)")
	flag.Parse()

	log, err := daemonlog.New("dhcpc", *level, *path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *path, log); err != nil {
		log.WithError(err).Error("dhcpc failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, path string, log *logrus.Entry) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	m := cfg.Network.Management
	if !dhcp.Enabled(m) {
		log.Info("no DHCP on a management NIC configured: nothing to do")
		<-ctx.Done()
		return nil
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	name, err := dhcp.FindInterface(ctx, h, m.Interface, 10*time.Second)
	if err != nil {
		return err
	}
	c, err := dhcp.Open(dhcp.Options{Interface: name, Handle: h, Log: log.WithField("interface", name)})
	if err != nil {
		return err
	}
	defer c.Close()
	log.WithField("interface", name).Info("requesting a lease")
	return c.Run(ctx, nil)
}
