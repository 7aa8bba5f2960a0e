package netlab

import (
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// Ping sends one ICMP echo from inside ns to dst and waits up to timeout for
// the reply. It returns the round-trip time.
func (n *Namespace) Ping(dst string, seq int, timeout time.Duration) (time.Duration, error) {
	var conn *icmp.PacketConn
	err := n.Do(func() error {
		var err error
		conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("ping from %s: %w", n.Name, err)
	}
	defer conn.Close()
	id := os.Getpid() & 0xffff
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("fulcrum-lab")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := conn.WriteTo(b, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
		return 0, fmt.Errorf("ping %s from %s: %w", dst, n.Name, err)
	}
	buf := make([]byte, 1500)
	deadline := start.Add(timeout)
	for {
		conn.SetReadDeadline(deadline)
		nr, peer, err := conn.ReadFrom(buf)
		if err != nil {
			return 0, fmt.Errorf("ping %s from %s: no reply within %v", dst, n.Name, timeout)
		}
		rm, err := icmp.ParseMessage(1, buf[:nr])
		if err != nil || rm.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		if e, ok := rm.Body.(*icmp.Echo); ok && e.ID == id && e.Seq == seq && peer.String() == dst {
			return time.Since(start), nil
		}
	}
}

// PingUntil pings dst once per interval until a reply comes or attempts run out.
func (n *Namespace) PingUntil(dst string, attempts int, interval time.Duration) error {
	var err error
	for i := 0; i < attempts; i++ {
		if _, err = n.Ping(dst, i+1, interval); err == nil {
			return nil
		}
	}
	return err
}
