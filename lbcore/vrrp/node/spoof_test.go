package node

import (
	"net"
	"net/netip"
	"testing"
	"time"

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
