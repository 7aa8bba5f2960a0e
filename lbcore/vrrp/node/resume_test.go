package node

import (
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
)

// A node that finds its virtual addresses on the bonds at start (a previous
// run was master and was killed) resumes as master at once; one that also
// finds a tracked bond down starts in FAULT and removes them.
func TestStartWithAddressesLeftBehind(t *testing.T) {
	l := newLab(t)
	l.nodes[0].addr(t, "external", vip.String()+"/24")
	n1 := l.start(0, labConfig(100, nil))
	d := waitFor(t, time.Second, "lb1 master", func() bool { return n1.state() == fsm.Master })
	t.Logf("resumed as master %s after start", d)
	if !l.nodes[0].has(vip) {
		t.Error("resumed master lacks its addresses")
	}

	l.nodes[1].addr(t, "external", vip.String()+"/24")
	l.nodes[1].setLink(t, "internal", false)
	n2 := l.start(1, labConfig(50, func(c *config.VRRP) { c.Track = []config.VRRPTrack{{Group: config.Internal}} }))
	waitFor(t, time.Second, "lb2 in FAULT without the stale VIP", func() bool { return n2.state() == fsm.Fault && !l.nodes[1].has(vip) })
}

// TestHungPreviousRunGivesUpTheAddresses: after a watchdog kill the peer
// has (or soon will have) taken over; the restarted node must not resume
// as master with the addresses the hung run left, but give them up.
func TestHungPreviousRunGivesUpTheAddresses(t *testing.T) {
	l := newLab(t)
	l.nodes[0].addr(t, "external", vip.String()+"/24")
	n1 := l.startWith(0, Options{Config: labConfig(100, nil), PreviousRunHung: true})
	waitFor(t, 2*time.Second, "lb1 backup without the left-behind VIP", func() bool { return n1.state() == fsm.Backup && !l.nodes[0].has(vip) })
}
