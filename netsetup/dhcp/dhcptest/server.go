// Package dhcptest is a small DHCPv4 server (insomniacslk/dhcp server4) for
// tests: it offers one fixed address with a router and DNS server, counts
// what it received, and can be told to refuse (NAK) requests.
package dhcptest

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// Config of the test server.
type Config struct {
	Interface string // the interface it serves (it must have ServerIP)
	ServerIP  net.IP
	Mask      net.IPMask
	Offer     net.IP // the address every client gets
	Router    net.IP
	DNS       []net.IP
	LeaseTime time.Duration
}

// Counts are the messages the server received, by type.
type Counts struct {
	Discover, Request, Release int
	// Renew counts REQUESTs from a client that already has the address
	// (ciaddr set: RENEWING or REBINDING).
	Renew int
}

// Server is a running test server.
type Server struct {
	cfg  Config
	srv  *server4.Server
	done chan struct{}

	mu     sync.Mutex
	counts Counts
	nak    bool
}

// Start listens on cfg.Interface and serves in the background. Call it in
// the namespace the interface lives in.
func Start(cfg Config) (*Server, error) {
	s := &Server{cfg: cfg, done: make(chan struct{})}
	srv, err := server4.NewServer(cfg.Interface, &net.UDPAddr{Port: dhcpv4.ServerPort}, s.handle)
	if err != nil {
		return nil, fmt.Errorf("dhcptest: %w", err)
	}
	s.srv = srv
	go func() { defer close(s.done); srv.Serve() }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	s.srv.Close()
	<-s.done
}

// Counts returns what was received so far.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// SetNak makes the server answer REQUESTs with NAK (true) or ACK.
func (s *Server) SetNak(v bool) {
	s.mu.Lock()
	s.nak = v
	s.mu.Unlock()
}

func (s *Server) handle(conn net.PacketConn, _ net.Addr, m *dhcpv4.DHCPv4) {
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return
	}
	s.mu.Lock()
	var reply dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		s.counts.Discover++
		reply = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		s.counts.Request++
		if !m.ClientIPAddr.IsUnspecified() {
			s.counts.Renew++
		}
		reply = dhcpv4.MessageTypeAck
		if s.nak {
			reply = dhcpv4.MessageTypeNak
		}
		if sid := m.ServerIdentifier(); sid != nil && !sid.Equal(s.cfg.ServerIP) {
			reply = dhcpv4.MessageTypeNone
		}
	case dhcpv4.MessageTypeRelease:
		s.counts.Release++
	}
	s.mu.Unlock()
	if reply == dhcpv4.MessageTypeNone {
		return
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(reply),
		dhcpv4.WithServerIP(s.cfg.ServerIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP)),
	}
	if reply != dhcpv4.MessageTypeNak {
		mods = append(mods,
			dhcpv4.WithYourIP(s.cfg.Offer),
			dhcpv4.WithNetmask(s.cfg.Mask),
			dhcpv4.WithLeaseTime(uint32(s.cfg.LeaseTime/time.Second)))
		if s.cfg.Router != nil {
			mods = append(mods, dhcpv4.WithRouter(s.cfg.Router))
		}
		if len(s.cfg.DNS) > 0 {
			mods = append(mods, dhcpv4.WithDNS(s.cfg.DNS...))
		}
	}
	resp, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		return
	}
	conn.WriteTo(resp.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort})
}
