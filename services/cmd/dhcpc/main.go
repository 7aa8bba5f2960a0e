// Command dhcpc keeps a DHCP lease on the management NIC when the config's
// network.management section asks for DHCP (dhcp: true, or no static
// address): address, default route (metric 1024, below static routes) and
// DNS servers. On SIGTERM it releases the lease. Without DHCP to do it
// exits with the do-not-restart status (daemon.ErrNothingToDo). The logic is in
// netsetup/dhcp.
package main

import (
	"context"
	"fmt"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/netsetup/dhcp"
	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func main() { daemon.Main("dhcpc", run) }

func run(ctx context.Context, path string, log *logrus.Entry) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	m := cfg.Network.Management
	if !dhcp.Enabled(m) {
		return fmt.Errorf("no DHCP on a management NIC configured: %w", daemon.ErrNothingToDo)
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
