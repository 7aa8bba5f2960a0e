package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// maxDatagram is the largest reply a udp or dns check reads.
const maxDatagram = 64 << 10

// udpChecker sends one datagram from a connected UDP socket and waits for
// one reply. The socket is connected, so an ICMP port unreachable from the
// member ends the check at once as "connection refused" instead of
// waiting for the timeout.
type udpChecker struct {
	*base
	payload []byte
	expect  *regexp.Regexp // nil: any reply
}

func newUDPChecker(b *base, m config.Monitor) (Checker, error) {
	c := &udpChecker{base: b, payload: m.UDPPayload()}
	if m.Expect != "" {
		re, err := regexp.Compile(m.Expect)
		if err != nil {
			return nil, fmt.Errorf("expect: %w", err)
		}
		c.expect = re
	}
	return c, nil
}

// dialUDP opens a UDP socket connected to addr (from the monitor's source)
// in the socket environment, with its deadline tied to ctx.
func (b *base) dialUDP(ctx context.Context, addr netip.AddrPort) (*net.UDPConn, error) {
	var laddr *net.UDPAddr
	if b.src.IsValid() {
		laddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(b.src, 0))
	}
	var conn *net.UDPConn
	err := b.env(func() error {
		var err error
		conn, err = net.DialUDP("udp", laddr, net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		return nil, inPhase("connect", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	return conn, nil
}

func (c *udpChecker) Check(ctx context.Context, t Target) Result {
	return c.run(ctx, func(ctx context.Context) (string, error) {
		addr, err := c.addr(t)
		if err != nil {
			return "", &checkFailure{err.Error()}
		}
		conn, err := c.dialUDP(ctx, addr)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		if _, err := conn.Write(c.payload); err != nil {
			return "", inPhase("send", err)
		}
		buf := make([]byte, maxDatagram)
		n, err := conn.Read(buf)
		if err != nil {
			return "", inPhase("reply", err)
		}
		if c.expect != nil && !c.expect.Match(buf[:n]) {
			return "", failf("reply of %d bytes does not match %q", n, c.expect.String())
		}
		return "reply " + strconv.Itoa(n) + " bytes", nil
	})
}
