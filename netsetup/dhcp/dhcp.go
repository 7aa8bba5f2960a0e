// Package dhcp is the management NIC's DHCPv4 client: it obtains a lease
// with nclient4 (github.com/insomniacslk/dhcp), applies the address, the
// default route and the DNS servers through netlink and resolv.conf, renews
// the lease at T1 (until it expires, then starts over), and releases it when
// stopped.
//
// The DHCP default route gets metric RouteMetric (1024), so a default route
// from the config's static routes (metric 0) keeps winning: the management
// NIC never steals load-balanced traffic.
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nldump"
	"github.com/fulcrum-lb/fulcrum/netsetup"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Defaults.
const (
	ResolvConf  = "/etc/resolv.conf"
	RouteMetric = 1024
	// carrierWait bounds the wait for the link to come up before the
	// first DISCOVER (a DISCOVER sent without carrier is lost).
	carrierWait = 5 * time.Second
)

// Enabled reports whether a management section asks for DHCP: dhcp: true,
// or no dhcp key and no static address.
func Enabled(m *config.Management) bool {
	if m == nil {
		return false
	}
	if m.DHCP != nil {
		return *m.DHCP
	}
	return !m.Address.IsValid()
}

// Lease is what the server gave.
type Lease struct {
	Address  *net.IPNet
	Router   net.IP // nil when the server sent none
	DNS      []net.IP
	Server   net.IP
	Duration time.Duration // lease time
	T1, T2   time.Duration // renewal and rebinding times
	Obtained time.Time

	raw *nclient4.Lease
}

func (l *Lease) String() string {
	var dns []string
	for _, d := range l.DNS {
		dns = append(dns, d.String())
	}
	return fmt.Sprintf("%s router %v dns [%s] from %s for %v", l.Address, l.Router, strings.Join(dns, " "), l.Server, l.Duration)
}

// Options configure a Client.
type Options struct {
	Interface string          // link name
	Handle    *netlink.Handle // netlink handle (NETLINK_ROUTE) of the link's namespace
	// ResolvConf is where DNS servers are written (ResolvConf if empty).
	ResolvConf string
	// RouteMetric of the default route (RouteMetric if 0).
	RouteMetric int
	// Timeout is the first retransmission timeout; it doubles on each
	// retry (1 s if 0). Contexts bound the total.
	Timeout time.Duration
	Log     logrus.FieldLogger
}

// Client holds one interface's DHCP socket and the lease applied on it.
type Client struct {
	o       Options
	ns      netns.NsHandle // the namespace Open ran in (for the RELEASE socket)
	c       *nclient4.Client
	link    netlink.Link
	applied *Lease
}

// Open brings the link up and opens its DHCP socket. Call it in the network
// namespace the link lives in: the raw socket belongs to that namespace for
// its whole life, and every other method may then run on any thread.
func Open(o Options) (*Client, error) {
	if o.Handle == nil {
		return nil, errors.New("dhcp: a netlink handle is required")
	}
	if o.ResolvConf == "" {
		o.ResolvConf = ResolvConf
	}
	if o.RouteMetric == 0 {
		o.RouteMetric = RouteMetric
	}
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	if o.Log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		o.Log = l
	}
	link, err := o.Handle.LinkByName(o.Interface)
	if err != nil {
		return nil, fmt.Errorf("dhcp %s: %w", o.Interface, err)
	}
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("dhcp %s: current namespace: %w", o.Interface, err)
	}
	if err := o.Handle.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("dhcp %s: set up: %w", o.Interface, err)
	}
	c, err := nclient4.New(o.Interface, nclient4.WithHWAddr(link.Attrs().HardwareAddr),
		nclient4.WithTimeout(o.Timeout), nclient4.WithRetry(8))
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("dhcp %s: %w", o.Interface, err)
	}
	return &Client{o: o, ns: ns, c: c, link: link}, nil
}

// Close closes the socket; the applied lease stays (see Release).
func (c *Client) Close() error {
	c.ns.Close()
	return c.c.Close()
}

// waitCarrier waits (bounded) until the link reports it is up.
func (c *Client) waitCarrier(ctx context.Context) {
	deadline := time.Now().Add(carrierWait)
	for time.Now().Before(deadline) {
		l, err := c.o.Handle.LinkByIndex(c.link.Attrs().Index)
		if err != nil || l.Attrs().OperState == netlink.OperUp || l.Attrs().OperState == netlink.OperUnknown {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Obtain runs DISCOVER-OFFER-REQUEST-ACK until it gets a lease or ctx ends.
// It does not apply the lease.
func (c *Client) Obtain(ctx context.Context) (*Lease, error) {
	c.waitCarrier(ctx)
	raw, err := c.c.Request(ctx, dhcpv4.WithRequestedOptions(dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionSubnetMask))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nclient4.ErrNoResponse) {
			return nil, fmt.Errorf("dhcp %s: no lease (no answer from a DHCP server): %w", c.o.Interface, err)
		}
		return nil, fmt.Errorf("dhcp %s: %w", c.o.Interface, err)
	}
	return leaseFrom(raw)
}

// minLease is the shortest lease accepted: with a lease of 0 the renewal
// loop would run DISCOVER after DISCOVER without pause.
const minLease = 2 * time.Second

// usableIPv4 reports whether ip can be an address, router or DNS server:
// IPv4 unicast (not 0.0.0.0, loopback, multicast or broadcast).
func usableIPv4(ip net.IP) bool {
	ip4 := ip.To4()
	return ip4 != nil && !ip4.IsUnspecified() && !ip4.IsLoopback() && !ip4.IsMulticast() && !ip4.Equal(net.IPv4bcast)
}

// leaseFrom checks what the server sent before anything is put on the
// link: a server's mistake (or an attacker on the management segment) must
// not become a /0 on the management NIC or a renewal storm. A lease that
// cannot be used is an error (Run retries with back-off); a bad router or
// DNS entry is dropped.
func leaseFrom(raw *nclient4.Lease) (*Lease, error) {
	ack := raw.ACK
	ip := ack.YourIPAddr.To4()
	if ip == nil || ip.IsUnspecified() {
		return nil, fmt.Errorf("dhcp: ACK from %s carries no address", ack.ServerIdentifier())
	}
	if !usableIPv4(ip) {
		return nil, fmt.Errorf("dhcp: ACK from %s offers %s, not a unicast address", ack.ServerIdentifier(), ip)
	}
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ip.DefaultMask()
	}
	if ones, bits := mask.Size(); bits != 32 || ones == 0 {
		return nil, fmt.Errorf("dhcp: ACK from %s has subnet mask %s, not an IPv4 prefix of 1-32 bits", ack.ServerIdentifier(), net.IP(mask))
	}
	d := ack.IPAddressLeaseTime(time.Hour)
	if d < minLease {
		return nil, fmt.Errorf("dhcp: ACK from %s has lease time %v, under the %v minimum", ack.ServerIdentifier(), d, minLease)
	}
	// RFC 2131 4.4.5: T1 defaults to half the lease, T2 to 7/8; out-of-order
	// values fall back to those.
	t1, t2 := ack.IPAddressRenewalTime(d/2), ack.IPAddressRebindingTime(d*7/8)
	if t1 <= 0 || t1 > d {
		t1 = d / 2
	}
	if t2 < t1 || t2 > d {
		t2 = max(d*7/8, t1)
	}
	l := &Lease{
		Address:  &net.IPNet{IP: ip, Mask: mask},
		Server:   ack.ServerIdentifier(),
		Duration: d,
		T1:       t1,
		T2:       t2,
		Obtained: raw.CreationTime,
		raw:      raw,
	}
	for _, r := range ack.Router() {
		if usableIPv4(r) && !r.Equal(ip) {
			l.Router = r.To4()
			break
		}
	}
	for _, s := range ack.DNS() {
		if usableIPv4(s) {
			l.DNS = append(l.DNS, s.To4())
		}
	}
	return l, nil
}

// Apply puts the lease on the link: the address (with the lease time as its
// lifetime, so the kernel drops it if renewal fails), the default route via
// the router, and the DNS servers in resolv.conf.
func (c *Client) Apply(l *Lease) error {
	h, name := c.o.Handle, c.o.Interface
	if old := c.applied; old != nil && !old.Address.IP.Equal(l.Address.IP) {
		c.unapply(old)
	}
	secs := int(l.Duration / time.Second)
	addr := &netlink.Addr{IPNet: l.Address, ValidLft: secs, PreferedLft: secs}
	if err := h.AddrReplace(c.link, addr); err != nil {
		return fmt.Errorf("dhcp %s: adding %s: %w", name, l.Address, err)
	}
	if l.Router != nil {
		if err := h.RouteReplace(c.defaultRoute(l.Router)); err != nil {
			return fmt.Errorf("dhcp %s: default route via %s: %w", name, l.Router, err)
		}
	}
	if len(l.DNS) > 0 {
		if err := writeResolvConf(c.o.ResolvConf, name, l.DNS); err != nil {
			return fmt.Errorf("dhcp %s: %w", name, err)
		}
	}
	c.applied = l
	return nil
}

func (c *Client) defaultRoute(gw net.IP) *netlink.Route {
	return &netlink.Route{LinkIndex: c.link.Attrs().Index, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw: gw, Priority: c.o.RouteMetric, Protocol: unix.RTPROT_DHCP}
}

// unapply removes a lease's address and route (errors logged: the address
// may already have expired).
func (c *Client) unapply(l *Lease) {
	if l.Router != nil {
		if err := c.o.Handle.RouteDel(c.defaultRoute(l.Router)); err != nil && !errors.Is(err, unix.ESRCH) {
			c.o.Log.WithError(err).Debug("removing DHCP default route")
		}
	}
	if err := c.o.Handle.AddrDel(c.link, &netlink.Addr{IPNet: l.Address}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		c.o.Log.WithError(err).Debug("removing DHCP address")
	}
}

// Release tells the server the lease is no longer used and removes it from
// the link.
func (c *Client) Release() error {
	l := c.applied
	if l == nil {
		return nil
	}
	err := c.sendRelease(l)
	c.unapply(l)
	c.applied = nil
	if err != nil {
		return fmt.Errorf("dhcp %s: release: %w", c.o.Interface, err)
	}
	return nil
}

// sendRelease unicasts the RELEASE from the leased address (RFC 2131
// 4.4.6). nclient4's Release goes out of its raw socket with source
// 0.0.0.0, which a Linux server drops as a martian for a unicast
// destination, so this uses a UDP socket bound to lease:68 in the link's
// namespace.
func (c *Client) sendRelease(l *Lease) error {
	msg, err := dhcpv4.NewReleaseFromACK(l.raw.ACK)
	if err != nil {
		return err
	}
	var conn *net.UDPConn
	err = inNamespace(c.ns, func() error {
		var err error
		conn, err = net.DialUDP("udp4", &net.UDPAddr{IP: l.Address.IP, Port: dhcpv4.ClientPort},
			&net.UDPAddr{IP: l.Server, Port: dhcpv4.ServerPort})
		return err
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write(msg.ToBytes())
	return err
}

func inNamespace(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return err
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(fmt.Sprintf("dhcp: cannot return to the original netns: %v", err))
		}
	}()
	return fn()
}

// Renew asks the lease's server to extend it (RFC 2131 RENEWING; nclient4
// sends the REQUEST on the broadcast socket, which also serves as
// REBINDING past T2).
func (c *Client) Renew(ctx context.Context) (*Lease, error) {
	if c.applied == nil {
		return nil, errors.New("dhcp: no lease to renew")
	}
	raw, err := c.c.Renew(ctx, c.applied.raw)
	if err != nil {
		return nil, fmt.Errorf("dhcp %s: renew: %w", c.o.Interface, err)
	}
	return leaseFrom(raw)
}

// Run keeps a lease on the link until ctx ends, then releases it. onLease
// (optional) is called after each lease is applied.
func (c *Client) Run(ctx context.Context, onLease func(*Lease)) error {
	log := c.o.Log
	backoff := 2 * time.Second
	for ctx.Err() == nil {
		if c.applied == nil {
			octx, cancel := context.WithTimeout(ctx, 30*time.Second)
			l, err := c.Obtain(octx)
			cancel()
			if err == nil {
				err = c.Apply(l)
			}
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				log.WithError(err).WithField("retry_in", backoff).Warn("no lease")
				if !sleep(ctx, backoff) {
					break
				}
				backoff = min(2*backoff, time.Minute)
				continue
			}
			backoff = 2 * time.Second
			log.WithField("lease", l.String()).Info("lease obtained")
			if onLease != nil {
				onLease(l)
			}
		}
		if !c.keep(ctx, onLease) {
			log.WithField("address", c.applied.Address).Warn("lease lost; starting over")
			c.unapply(c.applied)
			c.applied = nil
		}
	}
	if c.applied != nil {
		addr := c.applied.Address
		if err := c.Release(); err != nil {
			log.WithError(err).Warn("release")
		} else {
			log.WithField("address", addr).Info("lease released")
		}
	}
	return nil
}

// keep waits for T1 and renews until it succeeds (true) or the lease
// expires or the server refuses (false). It returns true when ctx ends.
func (c *Client) keep(ctx context.Context, onLease func(*Lease)) bool {
	l := c.applied
	expiry := l.Obtained.Add(l.Duration)
	if !sleep(ctx, time.Until(l.Obtained.Add(l.T1))) {
		return true
	}
	for time.Now().Before(expiry) {
		rctx, cancel := context.WithDeadline(ctx, expiry)
		nl, err := c.Renew(rctx)
		cancel()
		if ctx.Err() != nil {
			return true
		}
		var nak *nclient4.ErrNak
		if errors.As(err, &nak) {
			c.o.Log.WithField("server", l.Server).Warn("renewal refused (NAK)")
			return false
		}
		if err == nil {
			if err = c.Apply(nl); err == nil {
				c.o.Log.WithField("lease", nl.String()).Info("lease renewed")
				if onLease != nil {
					onLease(nl)
				}
				return true
			}
		}
		c.o.Log.WithError(err).Warn("renewal failed; retrying")
		// RFC 2131 4.4.5: retry after half the remaining time, at least 1 s.
		if !sleep(ctx, max(time.Until(expiry)/2, time.Second)) {
			return true
		}
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// writeResolvConf replaces path atomically with the lease's DNS servers.
func writeResolvConf(path, iface string, dns []net.IP) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by the fulcrum DHCP client for %s\n", iface)
	for _, d := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".dhcp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// FindInterface returns the name of the link a management selector (an
// interface name or a MAC address) picks, waiting up to wait for it to
// appear (drivers probe asynchronously at boot).
func FindInterface(ctx context.Context, h *netlink.Handle, selector string, wait time.Duration) (string, error) {
	deadline := time.Now().Add(wait)
	for {
		links, err := nldump.Retry(h.LinkList)
		if err != nil {
			return "", fmt.Errorf("listing links: %w", err)
		}
		var nics []netsetup.NIC
		var names []string
		for _, l := range links {
			a := l.Attrs()
			mac := a.HardwareAddr
			if len(a.PermHWAddr) == 6 {
				mac = a.PermHWAddr
			}
			nics = append(nics, netsetup.NIC{Name: a.Name, MAC: mac, Index: a.Index})
			names = append(names, fmt.Sprintf("%s(%s)", a.Name, mac))
		}
		found, _, err := netsetup.ResolveMembers([]string{selector}, nics)
		if err != nil {
			return "", err
		}
		if len(found) == 1 {
			return found[0].Name, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("management NIC %s: not present (NICs here: %s)", selector, strings.Join(names, " "))
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return "", ctx.Err()
		}
	}
}
