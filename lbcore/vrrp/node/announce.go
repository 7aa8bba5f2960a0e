package node

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv6"
)

const etherTypeARP = 0x0806

// announcer sends gratuitous ARP and unsolicited neighbour advertisements for
// addresses on one interface.
type announcer struct {
	ifi *net.Interface
	arp *packet.Conn // nil if the interface has no IPv4 virtual address
	ndp *ndp.Conn    // nil if it has no IPv6 virtual address
}

func openAnnouncer(ifi *net.Interface, v4, v6 bool) (*announcer, error) {
	a := &announcer{ifi: ifi}
	if v4 {
		c, err := packet.Listen(ifi, packet.Raw, etherTypeARP, nil)
		if err != nil {
			return nil, fmt.Errorf("arp socket on %s: %w", ifi.Name, err)
		}
		a.arp = c
	}
	if v6 {
		c, _, err := ndp.Listen(ifi, ndp.Unspecified)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("ndp socket on %s: %w", ifi.Name, err)
		}
		a.ndp = c
	}
	return a, nil
}

func (a *announcer) Close() {
	if a.arp != nil {
		a.arp.Close()
	}
	if a.ndp != nil {
		a.ndp.Close()
	}
}

// announce tells the link that addr is now at this interface's MAC.
func (a *announcer) announce(addr netip.Addr) error {
	if addr.Is4() {
		if a.arp == nil {
			return fmt.Errorf("no arp socket on %s", a.ifi.Name)
		}
		// A gratuitous ARP request: sender and target are the address.
		p, err := arp.NewPacket(arp.OperationRequest, a.ifi.HardwareAddr, addr, ethernet.Broadcast, addr)
		if err != nil {
			return err
		}
		pb, err := p.MarshalBinary()
		if err != nil {
			return err
		}
		f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: a.ifi.HardwareAddr, EtherType: ethernet.EtherTypeARP, Payload: pb}
		fb, err := f.MarshalBinary()
		if err != nil {
			return err
		}
		_, err = a.arp.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast})
		return err
	}
	if a.ndp == nil {
		return fmt.Errorf("no ndp socket on %s", a.ifi.Name)
	}
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: addr,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: a.ifi.HardwareAddr}},
	}
	cm := &ipv6.ControlMessage{HopLimit: ndp.HopLimit, Src: addr.AsSlice(), IfIndex: a.ifi.Index}
	return a.ndp.WriteTo(na, cm, netip.IPv6LinkLocalAllNodes())
}
