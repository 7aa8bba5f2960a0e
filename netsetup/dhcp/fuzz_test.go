package dhcp

import (
	"net"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

// FuzzLeaseFrom feeds arbitrary ACKs (whatever dhcpv4.FromBytes accepts,
// as nclient4 hands them over) to leaseFrom, which turns a server's answer
// into what Apply puts on the management link. Whatever it accepts must be
// safe to apply: a unicast IPv4 address with a real prefix (a mask like
// 255.0.255.0 would become a /0), a lease time the renewal loop can live
// with, 0 < T1 <= T2 <= lease time, and only IPv4 unicast router and DNS
// servers. Seeds: a normal ACK and testdata/fuzz/FuzzLeaseFrom (the inputs
// that broke it).
func FuzzLeaseFrom(f *testing.F) {
	ack, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithYourIP(net.IPv4(192, 0, 2, 140)),
		dhcpv4.WithNetmask(net.CIDRMask(25, 32)),
		dhcpv4.WithRouter(net.IPv4(192, 0, 2, 254)),
		dhcpv4.WithDNS(net.IPv4(192, 0, 2, 254)),
		dhcpv4.WithServerIP(net.IPv4(192, 0, 2, 254)),
		dhcpv4.WithLeaseTime(600))
	f.Add(ack.ToBytes())
	unicast := func(ip net.IP) bool {
		ip4 := ip.To4()
		return ip4 != nil && len(ip) == net.IPv4len && !ip4.IsUnspecified() && !ip4.IsLoopback() && !ip4.IsMulticast() && !ip4.Equal(net.IPv4bcast)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		l, err := leaseFrom(&nclient4.Lease{ACK: m, CreationTime: time.Now()})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("rejected with an empty message")
			}
			return
		}
		if !unicast(l.Address.IP) {
			t.Fatalf("lease address %v is not IPv4 unicast", l.Address.IP)
		}
		if ones, bits := l.Address.Mask.Size(); bits != 32 || ones < 1 {
			t.Fatalf("lease mask %v is not an IPv4 prefix of 1-32 bits (%d/%d)", l.Address.Mask, ones, bits)
		}
		if l.Duration < minLease {
			t.Fatalf("lease time %v under the %v floor", l.Duration, minLease)
		}
		if !(0 < l.T1 && l.T1 <= l.T2 && l.T2 <= l.Duration) {
			t.Fatalf("T1 %v, T2 %v, lease %v: want 0 < T1 <= T2 <= lease", l.T1, l.T2, l.Duration)
		}
		if l.Router != nil && !unicast(l.Router) {
			t.Fatalf("router %v is not IPv4 unicast", l.Router)
		}
		for _, d := range l.DNS {
			if !unicast(d) {
				t.Fatalf("DNS server %v is not IPv4 unicast", d)
			}
		}
	})
}
