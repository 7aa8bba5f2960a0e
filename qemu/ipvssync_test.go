package qemu

import (
	"os"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/qemu/guesttest"
)

// TestIPVSSyncOnTheRealKernel runs lbcore/kernel/ipvsnl's kernel tests in an
// appliance guest: sync daemons started, listed and stopped over generic
// netlink; a connection through an IPVS service in one namespace synced to
// a backup daemon in another (and not to one with another sync id); and
// the daemons as ipvsadm (copied from the host, when installed) reads them.
// In the same boot, lbcore/kernel/ipvslist's listings (lbctl show ipvs)
// are compared with ipvsadm -Ln, --stats, --rate and -c on one table.
func TestIPVSSyncOnTheRealKernel(t *testing.T) {
	var tools, also []string
	if _, err := os.Stat("/usr/sbin/ipvsadm"); err == nil {
		tools = []string{"/usr/sbin/ipvsadm"}
		also = []string{"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvslist"}
	} else {
		t.Logf("no /usr/sbin/ipvsadm on the host (apt-get install ipvsadm): no comparison with it")
	}
	out := guesttest.Run(t, "github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvsnl", guesttest.Options{
		Run:          "^TestGuest",
		HostBinaries: tools,
		Also:         also,
	})
	for _, name := range []string{"TestGuestStartListStop", "TestGuestConnectionSyncedToBackup", "TestGuestBatchMatchesMoby", "TestGuestBatchFailureMidChunk"} {
		if !strings.Contains(out, "--- PASS: "+name) {
			t.Errorf("%s did not pass in the guest", name)
		}
	}
	if tools != nil && !strings.Contains(out, "--- PASS: TestGuestDaemonsAgreeWithIpvsadm") {
		t.Errorf("TestGuestDaemonsAgreeWithIpvsadm did not pass in the guest")
	}
	if also != nil && !strings.Contains(out, "--- PASS: TestGuestListingsMatchIpvsadm") {
		t.Errorf("TestGuestListingsMatchIpvsadm (ipvslist against ipvsadm) did not pass in the guest")
	}
}
