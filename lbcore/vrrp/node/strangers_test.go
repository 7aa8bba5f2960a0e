package node

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// A flood from strangers is counted packet by packet but logged once per
// source and strangerLogEvery, with the number suppressed in between.
func TestStrangerLogRateLimited(t *testing.T) {
	log, hook := test.NewNullLogger()
	n := &Node{log: log, counters: map[string]uint64{}}
	rt := &session{n: n, accept: []netip.Addr{netip.MustParseAddr("192.0.2.2")}}
	a, b := netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("192.0.2.10")
	t0 := time.Unix(1000, 0)
	for i := range 1000 {
		rt.strangerDropped(t0.Add(time.Duration(i)*time.Millisecond), rawPacket{src: a})
	}
	rt.strangerDropped(t0, rawPacket{src: b})
	rt.strangerDropped(t0.Add(strangerLogEvery+time.Second), rawPacket{src: a})
	if got := n.Counters()["drop."+DropPeer]; got != 1002 {
		t.Errorf("drop.peer = %d, want 1002", got)
	}
	var lines []string
	for _, e := range hook.AllEntries() {
		if e.Level != logrus.WarnLevel || !strings.Contains(e.Message, "not a configured peer") {
			t.Errorf("unexpected log entry %v %q", e.Level, e.Message)
		}
		lines = append(lines, fmt.Sprintf("%v/%v", e.Data["src"], e.Data["suppressed"]))
	}
	if got := strings.Join(lines, " "); got != "192.0.2.9/0 192.0.2.10/0 192.0.2.9/999" {
		t.Errorf("log lines (src/suppressed) = %q", got)
	}
}
