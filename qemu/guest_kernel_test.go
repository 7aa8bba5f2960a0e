package qemu

import (
	"testing"

	"github.com/fulcrum-lb/fulcrum/qemu/guesttest"
)

// TestIPVSBehaviourOnTheRealKernel runs lbcore/kernel/ipvs's kernel tests (NAT,
// FullNAT, DR, persistence, SNAT, reconcile without disruption, drain) inside
// an appliance guest, where ip_vs exists. On the host they skip.
func TestIPVSBehaviourOnTheRealKernel(t *testing.T) {
	guesttest.Run(t, "github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs", guesttest.Options{Run: "^TestGuest"})
}
