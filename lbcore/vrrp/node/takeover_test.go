package node

import (
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
)

// A master that takes over right after another node announced the VIP
// (preemption moments after the other node's takeover burst) must end up
// in the client's neighbour table, within the burst plus the follow-up
// announcement.
func TestPreemptingMasterWinsClientNeighbourTable(t *testing.T) {
	l := newLab(t)
	n2 := l.start(1, labConfig(100, nil))
	waitFor(t, 3*time.Second, "lb2 master", func() bool { return n2.state() == fsm.Master })
	l.waitWho("lb2", 3*time.Second) // the client has learned lb2's MAC
	n1 := l.start(0, labConfig(150, nil))
	waitFor(t, 3*time.Second, "lb1 master", func() bool { return n1.state() == fsm.Master })
	waitFor(t, 3*time.Second, "lb2 backup", func() bool { return n2.state() == fsm.Backup })
	took := waitFor(t, 4*time.Second, "the client's neighbour entry to point at lb1", func() bool { return l.neighbour() == "lb1" })
	t.Logf("client's neighbour entry moved to lb1 %s after lb1 became master", took)
}
