package node

import (
	"bytes"
	"net/netip"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/sirupsen/logrus"
)

// Split brain: when the Failover link is cut both nodes are master and each
// one's periodic GARP refresh would pull the clients over to it, back and
// forth every refresh period. The announcers watch the data segments for
// ARP from another MAC claiming one of our virtual addresses; a master that
// sees one while its peer outranks it (the last advert it heard had a
// higher priority) holds its refresh, so the higher-priority master keeps
// the traffic. IPv4 only (neighbour advertisements are not watched).

// foreignClaim is an ARP packet from another MAC for one of our addresses.
type foreignClaim struct {
	addr netip.Addr
	mac  string
}

// splitHoldFor is how long one foreign claim holds the refresh: two refresh
// periods, so the other master's next refresh renews it.
func (rt *session) splitHoldFor() time.Duration { return 2 * rt.refreshIv }

// watchARP reads the announcer's ARP socket until it is closed and reports
// claims of virtual addresses by other MACs.
func (a *announcer) watchARP(virtual map[netip.Addr]bool, out chan<- foreignClaim, done <-chan struct{}) {
	if a.arp == nil {
		return
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := a.arp.ReadFrom(buf)
		if err != nil {
			return
		}
		var f ethernet.Frame
		if f.UnmarshalBinary(buf[:n]) != nil || f.EtherType != ethernet.EtherTypeARP {
			continue
		}
		var p arp.Packet
		if p.UnmarshalBinary(f.Payload) != nil || bytes.Equal(p.SenderHardwareAddr, a.ifi.HardwareAddr) {
			continue
		}
		if !virtual[p.SenderIP] {
			continue
		}
		select {
		case out <- foreignClaim{addr: p.SenderIP, mac: p.SenderHardwareAddr.String()}:
		case <-done:
			return
		default: // the main loop is busy; the next claim will do
		}
	}
}

// foreignClaimSeen records a claim for the instances carrying the address.
func (rt *session) foreignClaimSeen(now time.Time, c foreignClaim) {
	for _, in := range rt.n.insts {
		for _, a := range in.addrs {
			if a.Addr != c.addr {
				continue
			}
			if in.m.State() == fsm.Master && in.m.PeerOutranks() && (in.foreignAt.IsZero() || now.Sub(in.foreignAt) > rt.splitHoldFor()) {
				rt.n.log.WithFields(logrus.Fields{"instance": in.cfg.Name, "addr": c.addr, "mac": c.mac}).
					Warn("vrrp: split brain: a higher-priority master announces our addresses; holding the GARP refresh so traffic stays with it")
			}
			in.foreignAt = now
			break
		}
	}
}

// refreshHeld: a split brain's lower-priority master does not refresh.
func (rt *session) refreshHeld(in *instance, now time.Time) bool {
	return in.m.PeerOutranks() && !in.foreignAt.IsZero() && now.Sub(in.foreignAt) < rt.splitHoldFor()
}
