package node

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/packet"
	"golang.org/x/net/ipv4"
)

// injector sends hand-made VRRP packets onto the failover segment from the
// client namespace (192.0.2.9, a lab host on the failover plan).
type injector struct {
	t   testing.TB
	raw *ipv4.RawConn
	ifi int
	src netip.Addr
}

func (l *lab) injector() *injector {
	l.client.addr(l.t, "brf", "192.0.2.9/25")
	br, err := l.client.h.LinkByName("brf")
	if err != nil {
		l.t.Fatal(err)
	}
	var raw *ipv4.RawConn
	err = inNS(l.client.ns, func() error {
		c, err := net.ListenPacket("ip4:112", "0.0.0.0")
		if err != nil {
			return err
		}
		raw, err = ipv4.NewRawConn(c)
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { raw.Close() })
	return &injector{t: l.t, raw: raw, ifi: br.Attrs().Index, src: netip.MustParseAddr("192.0.2.9")}
}

func (j *injector) send(ttl int, payload []byte) { j.sendTo(ttl, payload, packet.GroupIPv4) }

func (j *injector) sendTo(ttl int, payload []byte, dst netip.Addr) {
	j.t.Helper()
	h := &ipv4.Header{Version: 4, Len: ipv4.HeaderLen, TotalLen: ipv4.HeaderLen + len(payload), TTL: ttl,
		Protocol: packet.Protocol, Src: j.src.AsSlice(), Dst: dst.AsSlice()}
	if err := j.raw.WriteTo(h, payload, &ipv4.ControlMessage{IfIndex: j.ifi}); err != nil {
		j.t.Fatalf("inject: %v", err)
	}
}

func (j *injector) advert(a packet.Advert) []byte { return j.advertTo(a, packet.GroupIPv4) }

func (j *injector) advertTo(a packet.Advert, dst netip.Addr) []byte {
	j.t.Helper()
	b, err := a.Marshal(j.src, dst)
	if err != nil {
		j.t.Fatal(err)
	}
	return b
}

// Malformed and spoofed adverts that would make the master step down if
// accepted (priority 254) never change its state; each is counted under its
// reason. A well-formed one then does, proving the injection reaches it.
func TestMalformedAdvertsIgnored(t *testing.T) {
	l := newLab(t)
	n1 := l.start(0, labConfig(100, nil))
	waitFor(t, 3*time.Second, "lb1 master", func() bool { return n1.state() == fsm.Master })
	j := l.injector()
	vipOnly := []netip.Addr{netip.MustParseAddr("198.51.100.1"), vip}
	good := packet.Advert{Version: 3, VRID: 51, Priority: 254, Interval: 20, Addrs: vipOnly}
	v2 := good
	v2.Version, v2.Interval = 2, 100
	wrongVRID := good
	wrongVRID.VRID = 52
	oneAddr := good
	oneAddr.Addrs = vipOnly[:1]
	badSum := j.advert(good)
	badSum[7] ^= 0xff
	badVersion := j.advert(good)
	badVersion[0] = 0x41
	badType := j.advert(good)
	badType[0] = 0x32
	for _, tc := range []struct {
		reason  string
		ttl     int
		payload []byte
	}{
		{DropTTL, 64, j.advert(good)},
		{DropTTL, 254, j.advert(good)},
		{string(packet.ReasonChecksum), 255, badSum},
		{string(packet.ReasonVersion), 255, badVersion},
		{string(packet.ReasonType), 255, badType},
		{string(packet.ReasonTruncated), 255, j.advert(good)[:10]},
		{string(packet.ReasonTruncated), 255, []byte{0x31}},
		{DropVersion, 255, j.advert(v2)},
		{DropVRID, 255, j.advert(wrongVRID)},
		{DropAddrCount, 255, j.advert(oneAddr)},
	} {
		before := n1.Counters()["drop."+tc.reason]
		for range 5 {
			j.send(tc.ttl, tc.payload)
		}
		waitFor(t, 2*time.Second, "drop."+tc.reason+" counted", func() bool { return n1.Counters()["drop."+tc.reason] >= before+5 })
		if s := n1.state(); s != fsm.Master {
			t.Fatalf("a packet dropped as %s changed the state to %s", tc.reason, s)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if s := n1.state(); s != fsm.Master {
		t.Fatalf("state %s after the malformed packets", s)
	}
	t.Logf("counters: %v", n1.Counters())
	// control: the same advert, well formed, wins the election
	j.send(255, j.advert(good))
	waitFor(t, time.Second, "lb1 steps down for a valid higher-priority advert", func() bool { return n1.state() == fsm.Backup })
}

// A third speaker on the failover segment with the pair's VRID, the right
// addresses and any priority, even 255 (the address owner), changes nothing
// when the nodes name their peers: every advert is dropped and counted as
// drop.peer. Before peers existed, one such advert made the master step down
// and the backup stay silent (issue 12.7).
func TestThirdSpeakerIgnored(t *testing.T) {
	l := newLab(t)
	peer := func(a string) func(*config.VRRP) {
		return func(c *config.VRRP) { c.Peers = []config.IP{{Addr: netip.MustParseAddr(a)}} }
	}
	n1 := l.start(0, labConfig(150, peer("192.0.2.2")))
	waitFor(t, 3*time.Second, "lb1 master", func() bool { return n1.state() == fsm.Master })
	n2 := l.start(1, labConfig(100, peer("192.0.2.1")))
	waitFor(t, 3*time.Second, "lb2 backup hearing lb1", func() bool {
		return n2.state() == fsm.Backup && n2.Status()[0].Master == netip.MustParseAddr("192.0.2.1")
	})
	j := l.injector()
	addrs := []netip.Addr{netip.MustParseAddr("198.51.100.1"), vip}
	sent, changed := 0, ""
	for _, prio := range []uint8{255, 254, 151, 1, 0} {
		a := j.advert(packet.Advert{Version: 3, VRID: 51, Priority: prio, Interval: 20, Addrs: addrs})
		for range 10 {
			j.send(255, a)
			sent++
			time.Sleep(20 * time.Millisecond)
			if s1, s2 := n1.state(), n2.state(); (s1 != fsm.Master || s2 != fsm.Backup) && changed == "" {
				changed = fmt.Sprintf("after %d adverts (priority %d) from 192.0.2.9: lb1 %s, lb2 %s", sent, prio, s1, s2)
			}
		}
	}
	if changed != "" {
		t.Errorf("a stranger changed the pair's state: %s", changed)
	}
	time.Sleep(800 * time.Millisecond) // more than lb2's master-down interval
	if s1, s2 := n1.state(), n2.state(); s1 != fsm.Master || s2 != fsm.Backup {
		t.Fatalf("after %d adverts from 192.0.2.9: lb1 %s, lb2 %s (want MASTER, BACKUP)", sent, s1, s2)
	}
	if m := n2.Status()[0].Master; m != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("lb2 hears %s as master, want lb1 192.0.2.1", m)
	}
	if !l.nodes[0].hasVIP() || l.nodes[1].hasVIP() {
		t.Errorf("VIP: lb1 %v, lb2 %v (want lb1 only)", l.nodes[0].hasVIP(), l.nodes[1].hasVIP())
	}
	waitFor(t, 2*time.Second, "every stranger's advert counted on lb1", func() bool { return n1.Counters()["drop."+DropPeer] >= uint64(sent) })
	waitFor(t, 2*time.Second, "every stranger's advert counted on lb2", func() bool { return n2.Counters()["drop."+DropPeer] >= uint64(sent) })
	t.Logf("lb1 counters: %v", n1.Counters())
}
