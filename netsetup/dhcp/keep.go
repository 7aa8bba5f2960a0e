package dhcp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNotConfigured says the config asks for no DHCP on a management NIC.
var ErrNotConfigured = errors.New("no DHCP on a management NIC configured")

// KeepLease is the dhcpc daemon: it finds the management NIC m names
// (waiting up to 10 s for it to appear), obtains a lease, applies it
// (address, default route, DNS) and keeps it renewed until ctx ends, then
// releases it. Without DHCP in m it returns ErrNotConfigured at once.
func KeepLease(ctx context.Context, m *config.Management, log logrus.FieldLogger) error {
	if !Enabled(m) {
		return ErrNotConfigured
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	name, err := FindInterface(ctx, h, m.Interface, 10*time.Second)
	if err != nil {
		return err
	}
	log = log.WithField("interface", name)
	c, err := Open(Options{Interface: name, Handle: h, Log: log})
	if err != nil {
		return err
	}
	defer c.Close()
	log.Info("requesting a lease")
	return c.Run(ctx, nil)
}
