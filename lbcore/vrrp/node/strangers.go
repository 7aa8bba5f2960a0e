package node

import (
	"net/netip"
	"time"

	"github.com/sirupsen/logrus"
)

// Adverts from hosts that are not configured peers are dropped whatever they
// say. Each is counted (drop.peer); the log gets one warning per source and
// strangerLogEvery, with the number dropped since, so a flood cannot fill it.
const (
	strangerLogEvery = 10 * time.Second
	strangerLogMax   = 256 // sources remembered; beyond it the table restarts
)

type strangerLog struct {
	last   map[netip.Addr]time.Time
	missed map[netip.Addr]uint64
}

// strangerDropped counts and (rate-limited) logs an advert from a non-peer.
func (rt *session) strangerDropped(now time.Time, p rawPacket) {
	n := rt.n
	n.count("drop." + DropPeer)
	s := &rt.strangers
	if s.last == nil || len(s.last) >= strangerLogMax {
		s.last, s.missed = map[netip.Addr]time.Time{}, map[netip.Addr]uint64{}
	}
	if t, ok := s.last[p.src]; ok && now.Sub(t) < strangerLogEvery {
		s.missed[p.src]++
		return
	}
	n.log.WithFields(logrus.Fields{"src": p.src, "dst": p.dst, "suppressed": s.missed[p.src], "peers": rt.accept}).
		Warn("vrrp: advert from a host that is not a configured peer dropped")
	s.last[p.src] = now
	s.missed[p.src] = 0
}
