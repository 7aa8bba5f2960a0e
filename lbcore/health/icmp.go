package health

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// icmpChecker sends one ICMP (or ICMPv6) echo request and waits for the
// reply with its identifier, sequence number and random payload. It uses
// the kernel's unprivileged ping socket where net.ipv4.ping_group_range
// allows it (the kernel then hands it only its own replies) and a raw
// socket otherwise (the appliance runs as root; the reply is picked out by
// identifier, sequence and payload).
type icmpChecker struct {
	*base
	raw atomic.Bool // ping sockets are not allowed here: use raw sockets
}

const icmpPayload = 16

func (c *icmpChecker) Check(ctx context.Context, t Target) Result {
	return c.run(ctx, func(ctx context.Context) (string, error) {
		dst := t.Addr.Unmap()
		if !dst.IsValid() {
			return "", &checkFailure{"member has no address"}
		}
		conn, raw, err := c.listen(dst.Is6())
		if err != nil {
			return "", inPhase("socket", err)
		}
		defer conn.Close()
		if dl, ok := ctx.Deadline(); ok {
			conn.SetDeadline(dl)
		}
		stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
		defer stop()

		id, seq := int(rand.Uint32()&0xffff), int(rand.Uint32()&0xffff)
		data := make([]byte, icmpPayload)
		for i := range data {
			data[i] = byte(rand.Uint32())
		}
		var typ icmp.Type = ipv4.ICMPTypeEcho
		proto := 1
		if dst.Is6() {
			typ, proto = ipv6.ICMPTypeEchoRequest, 58
		}
		wb, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: data}}).Marshal(nil)
		if err != nil {
			return "", err
		}
		var to net.Addr = &net.UDPAddr{IP: dst.AsSlice()}
		if raw {
			to = &net.IPAddr{IP: dst.AsSlice()}
		}
		if _, err := conn.WriteTo(wb, to); err != nil {
			return "", inPhase("echo request", err)
		}
		rb := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(rb)
			if err != nil {
				return "", inPhase("echo reply", err)
			}
			if addrOf(from) != dst {
				continue
			}
			msg, err := icmp.ParseMessage(proto, rb[:n])
			if err != nil {
				continue
			}
			echo, ok := msg.Body.(*icmp.Echo)
			if !ok || (msg.Type != ipv4.ICMPTypeEchoReply && msg.Type != ipv6.ICMPTypeEchoReply) {
				continue
			}
			// A ping socket sets the identifier itself (and matches it).
			if echo.Seq != seq || (raw && echo.ID != id) || !bytes.Equal(echo.Data, data) {
				continue
			}
			return "echo reply", nil
		}
	})
}

// listen opens a ping socket, or a raw socket when ping sockets are not
// allowed (EACCES, remembered), in the socket environment.
func (c *icmpChecker) listen(v6 bool) (*icmp.PacketConn, bool, error) {
	src := "0.0.0.0"
	if v6 {
		src = "::"
	}
	if c.src.IsValid() && c.src.Is6() == v6 {
		src = c.src.String()
	}
	var conn *icmp.PacketConn
	raw := c.raw.Load()
	err := c.env(func() error {
		var err error
		if !raw {
			network := "udp4"
			if v6 {
				network = "udp6"
			}
			conn, err = icmp.ListenPacket(network, src)
			if !errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.EPERM) {
				return err
			}
			raw = true
			c.raw.Store(true)
		}
		network := "ip4:icmp"
		if v6 {
			network = "ip6:ipv6-icmp"
		}
		conn, err = icmp.ListenPacket(network, src)
		return err
	})
	return conn, raw, err
}

func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.IPAddr:
		ip = a.IP
	}
	out, _ := netip.AddrFromSlice(ip)
	return out.Unmap()
}
