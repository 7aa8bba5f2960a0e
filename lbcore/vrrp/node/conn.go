package node

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/packet"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// rawPacket is one received VRRP payload with what the IP layer told us.
type rawPacket struct {
	data     []byte
	src, dst netip.Addr
	ttl      int
	ifIndex  int
}

// conn is a raw IP protocol-112 socket of one family on the heartbeat
// interface.
type conn struct {
	v6  bool
	ifi *net.Interface
	p4  *ipv4.PacketConn
	p6  *ipv6.PacketConn
	pc  net.PacketConn
}

// openConn opens the socket; multicast joins the VRRP group on ifi.
func openConn(ifi *net.Interface, v6, multicast bool) (*conn, error) {
	c := &conn{v6: v6, ifi: ifi}
	if !v6 {
		pc, err := net.ListenPacket("ip4:112", "0.0.0.0")
		if err != nil {
			return nil, fmt.Errorf("listen ip4:112: %w", err)
		}
		c.pc = pc
		p := ipv4.NewPacketConn(pc)
		c.p4 = p
		for _, step := range []struct {
			what string
			err  func() error
		}{
			{"control messages", func() error { return p.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true) }},
			{"ttl", func() error { return p.SetTTL(packet.TTL) }},
			{"multicast ttl", func() error { return p.SetMulticastTTL(packet.TTL) }},
			{"multicast interface", func() error { return p.SetMulticastInterface(ifi) }},
			{"multicast loopback", func() error { return p.SetMulticastLoopback(false) }},
			{"join group", func() error {
				if !multicast {
					return nil
				}
				return p.JoinGroup(ifi, &net.IPAddr{IP: packet.GroupIPv4.AsSlice()})
			}},
		} {
			if err := step.err(); err != nil {
				pc.Close()
				return nil, fmt.Errorf("ipv4 socket on %s: %s: %w", ifi.Name, step.what, err)
			}
		}
		return c, nil
	}
	pc, err := net.ListenPacket("ip6:112", "::")
	if err != nil {
		return nil, fmt.Errorf("listen ip6:112: %w", err)
	}
	c.pc = pc
	p := ipv6.NewPacketConn(pc)
	c.p6 = p
	for _, step := range []struct {
		what string
		err  func() error
	}{
		{"control messages", func() error {
			return p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true)
		}},
		{"hop limit", func() error { return p.SetHopLimit(packet.TTL) }},
		{"multicast hop limit", func() error { return p.SetMulticastHopLimit(packet.TTL) }},
		{"multicast interface", func() error { return p.SetMulticastInterface(ifi) }},
		{"multicast loopback", func() error { return p.SetMulticastLoopback(false) }},
		{"join group", func() error {
			if !multicast {
				return nil
			}
			return p.JoinGroup(ifi, &net.IPAddr{IP: packet.GroupIPv6.AsSlice()})
		}},
	} {
		if err := step.err(); err != nil {
			pc.Close()
			return nil, fmt.Errorf("ipv6 socket on %s: %s: %w", ifi.Name, step.what, err)
		}
	}
	return c, nil
}

func (c *conn) Close() error { return c.pc.Close() }

// read returns the next packet. The IPv4 header is stripped by the socket
// layer; TTL, destination and interface come from control messages.
func (c *conn) read(buf []byte) (rawPacket, error) {
	if !c.v6 {
		n, cm, src, err := c.p4.ReadFrom(buf)
		if err != nil {
			return rawPacket{}, err
		}
		p := rawPacket{data: append([]byte(nil), buf[:n]...), ttl: -1}
		if a, ok := src.(*net.IPAddr); ok {
			p.src, _ = netip.AddrFromSlice(a.IP)
			p.src = p.src.Unmap()
		}
		if cm != nil {
			p.ttl, p.ifIndex = cm.TTL, cm.IfIndex
			p.dst, _ = netip.AddrFromSlice(cm.Dst)
			p.dst = p.dst.Unmap()
		}
		return p, nil
	}
	n, cm, src, err := c.p6.ReadFrom(buf)
	if err != nil {
		return rawPacket{}, err
	}
	p := rawPacket{data: append([]byte(nil), buf[:n]...), ttl: -1}
	if a, ok := src.(*net.IPAddr); ok {
		p.src, _ = netip.AddrFromSlice(a.IP)
	}
	if cm != nil {
		p.ttl, p.ifIndex = cm.HopLimit, cm.IfIndex
		p.dst, _ = netip.AddrFromSlice(cm.Dst)
	}
	return p, nil
}

// write sends payload b from src to dst with TTL / hop limit 255 out of the
// heartbeat interface.
func (c *conn) write(b []byte, src, dst netip.Addr) error {
	to := &net.IPAddr{IP: dst.AsSlice()}
	if !c.v6 {
		_, err := c.p4.WriteTo(b, &ipv4.ControlMessage{Src: src.AsSlice(), IfIndex: c.ifi.Index}, to)
		return err
	}
	if dst.IsLinkLocalUnicast() || dst.IsLinkLocalMulticast() {
		to.Zone = strconv.Itoa(c.ifi.Index) // an index: names resolve in the caller's netns
	}
	_, err := c.p6.WriteTo(b, &ipv6.ControlMessage{HopLimit: packet.TTL, Src: src.AsSlice(), IfIndex: c.ifi.Index}, to)
	return err
}
