package node

import (
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
)

// A long split brain (the Failover link cut, both nodes master) with a 1 s
// GARP refresh: the lower-priority master (lb2) sees lb1 announce the VIP
// and holds its own refresh, so the client's neighbour entry settles on lb1
// and stays there. (Before, each refresh pulled the client over: it flipped
// between the two every refresh period.)
func TestSplitBrainLowerMasterHoldsRefresh(t *testing.T) {
	l := newLab(t)
	refresh := func(c *config.VRRP) { d := config.Duration(time.Second); c.GARP.Refresh = &d }
	n1 := l.start(0, labConfig(150, refresh))
	n2 := l.start(1, labConfig(100, refresh))
	waitFor(t, 3*time.Second, "lb1 master, lb2 backup", func() bool { return n1.state() == fsm.Master && n2.state() == fsm.Backup })
	l.waitWho("lb1", 2*time.Second)          // the client has a neighbour entry for the VIP
	l.nodes[1].setLink(t, "failover", false) // lb2 hears nothing, and is not heard
	waitFor(t, 3*time.Second, "split brain: both master", func() bool { return n1.state() == fsm.Master && n2.state() == fsm.Master })
	// lb2's takeover burst and its follow-up (2 s) pull the client; lb1's
	// next refresh (1 s period) takes it back. Then watch for 5 s.
	time.Sleep(3500 * time.Millisecond)
	seen := map[string]int{}
	flips, last := 0, ""
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		who := l.neighbour()
		seen[who]++
		if last != "" && who != last {
			flips++
		}
		last = who
	}
	t.Logf("client's neighbour entry for the VIP over 5 s: %v, %d flips", seen, flips)
	if seen["lb1"] == 0 || flips > 0 || seen["lb2"] > 0 || seen[""] > 0 {
		t.Errorf("the lower-priority master pulled traffic during the split brain: %v, %d flips", seen, flips)
	}
	if n1.state() != fsm.Master || n2.state() != fsm.Master {
		t.Errorf("not a split brain any more: lb1 %s lb2 %s", n1.state(), n2.state())
	}
}
