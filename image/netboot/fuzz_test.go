package netboot

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/guard"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/sirupsen/logrus"
)

// FuzzHandleDHCP feeds arbitrary datagrams to the netboot server's DHCP
// handler the way server4 does (whatever dhcpv4.FromBytes accepts). The
// handler must never panic; every reply must be a BOOTREPLY for the
// request's transaction, from the server's address, and an OFFER or ACK
// must carry an address inside the pool. The server keeps its state
// across inputs, so sequences (DISCOVER, REQUEST, a flood) are exercised
// too. Seeds: a PXE BIOS DISCOVER, an iPXE REQUEST, a relayed DISCOVER, and
// testdata/fuzz/FuzzHandleDHCP.
func FuzzHandleDHCP(f *testing.F) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 1, 4, 1}
	disc, _ := dhcpv4.NewDiscovery(mac, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	f.Add(disc.ToBytes())
	req, _ := dhcpv4.NewDiscovery(mac, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 0, 2, 200))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 129))),
		dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
	f.Add(req.ToBytes())
	relayed, _ := dhcpv4.NewDiscovery(net.HardwareAddr{0x52, 0x54, 0, 9, 9, 9}, dhcpv4.WithGatewayIP(net.IPv4(198, 51, 100, 1)))
	f.Add(relayed.ToBytes())

	server := net.IPv4(192, 0, 2, 129).To4()
	mask := net.CIDRMask(25, 32)
	first, last := net.IPv4(192, 0, 2, 200).To4(), net.IPv4(192, 0, 2, 203).To4()
	pool, err := newLeases(server, mask, first, last, 3)
	if err != nil {
		f.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	s := &Server{cfg: Config{OfferTime: time.Minute, LeaseTime: time.Hour, HTTPPort: 8080},
		ip: server, mask: mask, leases: pool, quiet: &guard.Every{Burst: 1, Per: time.Second}, log: log}
	inPool := func(ip net.IP) bool {
		ip4 := ip.To4()
		return ip4 != nil && ip4[0] == 192 && ip4[1] == 0 && ip4[2] == 2 && ip4[3] >= 200 && ip4[3] <= 203
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return // server4 drops what does not parse
		}
		var out replies
		s.handleDHCP(&out, nil, m)
		if len(out.got) > 1 {
			t.Fatalf("%d replies to one request", len(out.got))
		}
		for _, r := range out.got {
			if r.OpCode != dhcpv4.OpcodeBootReply || r.TransactionID != m.TransactionID {
				t.Fatalf("reply %s does not answer request %s", r.Summary(), m.Summary())
			}
			if sid := r.ServerIdentifier(); !sid.Equal(server) {
				t.Fatalf("reply from server identifier %v, want %v", sid, server)
			}
			switch r.MessageType() {
			case dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck:
				if !inPool(r.YourIPAddr) {
					t.Fatalf("%s of %v, outside the pool 192.0.2.200-203", r.MessageType(), r.YourIPAddr)
				}
			case dhcpv4.MessageTypeNak:
			default:
				t.Fatalf("reply of type %s", r.MessageType())
			}
		}
	})
}
