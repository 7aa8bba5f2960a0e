// Command dhcpc keeps a DHCP lease on the management NIC when the config's
// network.management section asks for DHCP (dhcp: true, or no static
// address): address, default route (metric 1024, below static routes) and
// DNS servers. On SIGTERM it releases the lease. Without DHCP to do it
// exits with the do-not-restart status (daemon.ErrNothingToDo). The logic is
// in netsetup/dhcp (KeepLease).
package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/netsetup/dhcp"
	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/sirupsen/logrus"
)

func main() { daemon.Main("dhcpc", run) }

func run(ctx context.Context, path string, log *logrus.Entry) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	err = dhcp.KeepLease(ctx, cfg.Network.Management, log)
	if errors.Is(err, dhcp.ErrNotConfigured) {
		return fmt.Errorf("%w: %w", err, daemon.ErrNothingToDo)
	}
	return err
}
