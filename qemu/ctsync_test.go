package qemu

import (
	"testing"

	"github.com/fulcrum-lb/fulcrum/qemu/guesttest"
)

// TestConntrackSyncOnTheRealKernel runs lbcore/kernel/ctnl's kernel tests in
// an appliance guest: the SNAT entry of a real connection, read from one
// namespace, sent through the conntrack sync protocol and installed into
// another with its NAT binding, then refreshed and deleted.
func TestConntrackSyncOnTheRealKernel(t *testing.T) {
	guesttest.Run(t, "github.com/fulcrum-lb/fulcrum/lbcore/kernel/ctnl", guesttest.Options{Run: "^TestGuest"})
}
