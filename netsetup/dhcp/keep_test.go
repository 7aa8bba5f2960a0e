package dhcp

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/sirupsen/logrus"
)

// TestKeepLeaseWithoutDHCPSaysSoAtOnce: dhcpc exits "nothing to do" (125)
// on this error rather than idling or touching any interface.
func TestKeepLeaseWithoutDHCPSaysSoAtOnce(t *testing.T) {
	for _, m := range []*config.Management{nil, {Interface: "eth9", DHCP: new(bool), Address: config.Prefix{Prefix: netip.MustParsePrefix("192.0.2.9/24")}}} {
		if err := KeepLease(context.Background(), m, logrus.New()); !errors.Is(err, ErrNotConfigured) {
			t.Errorf("management %+v: %v, want ErrNotConfigured", m, err)
		}
	}
}
