package netboot

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/services/guard"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
)

func request(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.NewDiscovery(net.HardwareAddr{0x52, 0x54, 0, 1, 4, 1}, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestClassifyAndBootFile(t *testing.T) {
	server := net.IPv4(192, 0, 2, 129)
	cases := []struct {
		name string
		mods []dhcpv4.Modifier
		want Client
		file string
	}{
		{"plain DHCP client", nil, NotPXE, ""},
		{"BIOS PXE ROM", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC))}, BIOSPXE, "undionly.kpxe"},
		{"old BIOS ROM without option 93", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient"))}, BIOSPXE, "undionly.kpxe"},
		{"UEFI x64 PXE", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003000")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64))}, EFIPXE, "ipxe.efi"},
		{"UEFI arch 9", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_BC))}, EFIPXE, "ipxe.efi"},
		{"iPXE by user class (after chainload, still arch 0)", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)), dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE"))}, IPXE, "http://192.0.2.129:8080/boot.ipxe"},
		{"iPXE by option 175", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)), dhcpv4.WithGeneric(dhcpv4.OptionEtherboot, []byte{0xb1, 1, 1})}, IPXE, "http://192.0.2.129:8080/boot.ipxe"},
		{"ARM64 UEFI: no loader", []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_ARM64))}, Unsupported, ""},
	}
	for _, c := range cases {
		m := request(t, c.mods...)
		if got := Classify(m); got != c.want {
			t.Errorf("%s: classified %v, want %v", c.name, got, c.want)
		}
		if got := BootFile(c.want, server, 8080); got != c.file {
			t.Errorf("%s: boot file %q, want %q", c.name, got, c.file)
		}
	}
	if got := BootFile(IPXE, server, 80); got != "http://192.0.2.129/boot.ipxe" {
		t.Errorf("port 80 URL %q", got)
	}
}

func TestReplyCarriesPXEOptions(t *testing.T) {
	req := request(t, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
	server, addr := net.IPv4(192, 0, 2, 129).To4(), net.IPv4(192, 0, 2, 200).To4()
	r, err := Reply(req, dhcpv4.MessageTypeOffer, addr, server, net.CIDRMask(25, 32), nil, 3600, BIOSLoader)
	if err != nil {
		t.Fatal(err)
	}
	if r.MessageType() != dhcpv4.MessageTypeOffer || !r.YourIPAddr.Equal(addr) || !r.ServerIPAddr.Equal(server) || !r.ServerIdentifier().Equal(server) {
		t.Errorf("reply %s", r.Summary())
	}
	if r.BootFileName != BIOSLoader || r.BootFileNameOption() != BIOSLoader || r.TFTPServerName() != "192.0.2.129" {
		t.Errorf("boot file %q / option 67 %q / option 66 %q", r.BootFileName, r.BootFileNameOption(), r.TFTPServerName())
	}
	if r.ClassIdentifier() != "PXEClient" {
		t.Errorf("class identifier %q, want PXEClient echoed", r.ClassIdentifier())
	}
	ipxe := request(t, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
	ir, _ := Reply(ipxe, dhcpv4.MessageTypeOffer, addr, server, net.CIDRMask(25, 32), nil, 3600, BootFile(IPXE, server, 80))
	if got := ir.Options.Get(dhcpv4.OptionEtherboot); !bytes.Equal(got, []byte{176, 1, 1}) {
		t.Errorf("iPXE reply option 175 = % x, want b0 01 01 (no-pxedhcp: skip the ProxyDHCP wait)", got)
	}
	plain, _ := Reply(request(t), dhcpv4.MessageTypeOffer, addr, server, net.CIDRMask(25, 32), nil, 3600, "")
	if plain.BootFileName != "" || plain.Options.Has(dhcpv4.OptionBootfileName) || plain.Options.Has(dhcpv4.OptionClassIdentifier) {
		t.Errorf("plain client got PXE options: %s", plain.Summary())
	}
}

func TestPoolRejectsAddressesOutsideTheSubnet(t *testing.T) {
	mask := net.CIDRMask(25, 32)
	srv := net.IPv4(192, 0, 2, 129)
	if _, err := newLeases(srv, mask, net.IPv4(192, 0, 2, 200), net.IPv4(192, 0, 2, 10), 10); err == nil {
		t.Error("accepted a pool leaving the subnet")
	}
	if _, err := newLeases(srv, mask, net.IPv4(192, 0, 2, 210), net.IPv4(192, 0, 2, 200), 10); err == nil {
		t.Error("accepted a pool with start after end")
	}
	l, err := newLeases(srv, mask, net.IPv4(192, 0, 2, 128), net.IPv4(192, 0, 2, 130), 10)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	a, _ := l.addressFor(net.HardwareAddr{1, 2, 3, 4, 5, 6}, now, time.Minute)
	b, _ := l.addressFor(net.HardwareAddr{1, 2, 3, 4, 5, 7}, now, time.Minute)
	again, _ := l.addressFor(net.HardwareAddr{1, 2, 3, 4, 5, 6}, now, time.Minute)
	if !a.Equal(net.IPv4(192, 0, 2, 128)) || !b.Equal(net.IPv4(192, 0, 2, 130)) || !again.Equal(a) {
		t.Errorf("leases %v %v %v: want .128, .130 (server's .129 skipped), .128 again", a, b, again)
	}
	if _, err := l.addressFor(net.HardwareAddr{1, 2, 3, 4, 5, 8}, now, time.Minute); err == nil {
		t.Error("pool not exhausted")
	}
}

// A flood of DISCOVERs from made-up MACs reserved every address forever.
// Offers expire: once they have, a real client gets an address; an ACKed
// lease is kept for the lease time; the table never outgrows its bound.
func TestOffersExpireAndTheTableIsBounded(t *testing.T) {
	mask := net.CIDRMask(24, 32)
	srv := net.IPv4(192, 0, 2, 1)
	l, err := newLeases(srv, mask, net.IPv4(192, 0, 2, 10), net.IPv4(192, 0, 2, 13), 100)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	acked := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	if _, err := l.addressFor(acked, now, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	l.hold(acked, now, time.Hour)
	for i := 0; i < 1000; i++ {
		l.addressFor(net.HardwareAddr{6, 0, 0, 0, byte(i >> 8), byte(i)}, now, 30*time.Second)
	}
	real := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	if _, err := l.addressFor(real, now.Add(10*time.Second), 30*time.Second); err == nil {
		t.Fatal("pool not exhausted by the flood while its offers stand")
	}
	a, err := l.addressFor(real, now.Add(31*time.Second), 30*time.Second)
	if err != nil {
		t.Fatalf("after the flood's offers expired: %v", err)
	}
	if b, _ := l.addressFor(acked, now.Add(31*time.Second), 30*time.Second); b == nil || b.Equal(a) {
		t.Errorf("the ACKed lease was given away: %v and %v", a, b)
	}

	small, _ := newLeases(srv, mask, net.IPv4(192, 0, 2, 10), net.IPv4(192, 0, 2, 250), 8)
	for i := 0; i < 1000; i++ {
		small.addressFor(net.HardwareAddr{6, 0, 0, 0, byte(i >> 8), byte(i)}, now, 30*time.Second)
	}
	if n := len(small.byMAC); n != 8 {
		t.Errorf("lease table bounded at 8 holds %d entries", n)
	}
	if _, err := small.addressFor(real, now.Add(31*time.Second), 30*time.Second); err != nil {
		t.Errorf("full table with expired entries: %v", err)
	}
}

// replies records what the DHCP handler sends.
type replies struct {
	net.PacketConn
	got []*dhcpv4.DHCPv4
}

func (r *replies) WriteTo(b []byte, _ net.Addr) (int, error) {
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		return 0, err
	}
	r.got = append(r.got, m)
	return len(b), nil
}

func TestAllowListRestrictsWhoBoots(t *testing.T) {
	allowed := net.HardwareAddr{0x52, 0x54, 0, 1, 4, 1}
	pool, _ := newLeases(net.IPv4(192, 0, 2, 129), net.CIDRMask(25, 32), net.IPv4(192, 0, 2, 200), net.IPv4(192, 0, 2, 210), 10)
	s := &Server{cfg: Config{AllowMACs: []net.HardwareAddr{allowed}, OfferTime: time.Minute, LeaseTime: time.Hour},
		ip: net.IPv4(192, 0, 2, 129).To4(), mask: net.CIDRMask(25, 32), leases: pool,
		allow: map[string]bool{allowed.String(): true}, quiet: &guard.Every{Burst: 1, Per: time.Second}, log: logrus.New()}
	var out replies
	other, _ := dhcpv4.NewDiscovery(net.HardwareAddr{0x52, 0x54, 0, 9, 9, 9})
	s.handleDHCP(&out, nil, other)
	if len(out.got) != 0 {
		t.Fatalf("a MAC not on the allow-list got %d replies", len(out.got))
	}
	s.handleDHCP(&out, nil, request(t))
	if len(out.got) != 1 || out.got[0].MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("the allowed MAC got %d replies", len(out.got))
	}
}

// freePort returns a port nothing listens on (for network, "tcp" or "udp").
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "tcp" {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestErrorsRevealNoPathsAndNoListing serves a tree on the loopback
// interface and asks for what it must not give: a directory listing,
// missing files (the error must not name the server's directory), a file
// outside the tree.
func TestErrorsRevealNoPathsAndNoListing(t *testing.T) {
	testkit.Require(t, testkit.Root) // DHCP binds to the device
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, IPXEScript), []byte("#!ipxe\nboot\n"), 0o644)
	os.Mkdir(filepath.Join(dir, "pxelinux.cfg"), 0o755)
	os.WriteFile(filepath.Join(dir, "pxelinux.cfg", "default"), []byte("x"), 0o644)
	s, err := Listen(Config{Interface: "lo", Dir: dir, HTTPPort: freePort(t, "tcp"), TFTPPort: freePort(t, "udp"), DHCPPort: freePort(t, "udp"),
		PoolStart: net.IPv4(127, 0, 0, 200), PoolEnd: net.IPv4(127, 0, 0, 201)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	base := fmt.Sprintf("http://127.0.0.1:%d", s.cfg.HTTPPort)
	get := func(p string) (int, string) {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/" + IPXEScript); code != 200 || body != "#!ipxe\nboot\n" {
		t.Fatalf("the script: %d %q", code, body)
	}
	for _, p := range []string{"/", "/pxelinux.cfg/", "/pxelinux.cfg", "/nothing-here", "/../../etc/passwd"} {
		code, body := get(p)
		if code != http.StatusNotFound || strings.Contains(body, "default") || strings.Contains(body, dir) || strings.Contains(body, "<a href") {
			t.Errorf("GET %s: %d %q, want a bare 404", p, code, body)
		}
	}
	resp, err := http.Post(base+"/"+IPXEScript, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}

	c, err := tftp.NewClient(fmt.Sprintf("127.0.0.1:%d", s.cfg.TFTPPort))
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	for _, name := range []string{"nothing-here", "pxelinux.cfg", "../secret"} {
		_, err := c.Receive(name, "octet")
		if err == nil {
			t.Errorf("tftp %s: served", name)
			continue
		}
		if strings.Contains(err.Error(), dir) || strings.Contains(err.Error(), "/tmp") {
			t.Errorf("tftp %s: the error names a server path: %v", name, err)
		}
	}
}

// TestServerInNamespaces runs the server on a lab host's eth0 (192.0.2.129
// on the Management segment) and, from a second host on the segment, does a
// real DHCP exchange as a BIOS PXE ROM would, fetches the chainload binary
// over TFTP and the iPXE script over HTTP, and checks that a path leaving
// the tree is refused.
func TestServerInNamespaces(t *testing.T) {
	testkit.Require(t, testkit.Root) // network namespaces
	dir := t.TempDir()
	loader := make([]byte, 150_000) // many TFTP blocks
	rand.Read(loader)
	os.WriteFile(filepath.Join(dir, BIOSLoader), loader, 0o644)
	os.WriteFile(filepath.Join(dir, IPXEScript), []byte("#!ipxe\nboot\n"), 0o644)
	os.WriteFile(filepath.Join(filepath.Dir(dir), "secret"), []byte("no"), 0o644)

	lab, err := netlab.New(fmt.Sprintf("bm%04x-", time.Now().UnixNano()&0xffff))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	srvHost, err := lab.Host("srv", netlab.Management, []string{"192.0.2.129/25"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := lab.Host("cli", netlab.Management, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	var s *Server
	if err := srvHost.Do(func() error {
		s, err = Listen(Config{Interface: "eth0", Dir: dir, HTTPPort: 8080,
			PoolStart: net.IPv4(192, 0, 2, 200), PoolEnd: net.IPv4(192, 0, 2, 201)})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	var lease *nclient4.Lease
	err = cli.Do(func() error {
		c, err := nclient4.New("eth0", nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
		if err != nil {
			return err
		}
		defer c.Close()
		rctx, rcancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer rcancel()
		lease, err = c.Request(rctx, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)))
		return err
	})
	if err != nil {
		t.Fatalf("DHCP exchange: %v", err)
	}
	ack := lease.ACK
	if !ack.YourIPAddr.Equal(net.IPv4(192, 0, 2, 200)) || ack.BootFileNameOption() != BIOSLoader || !ack.ServerIPAddr.Equal(net.IPv4(192, 0, 2, 129)) {
		t.Fatalf("ACK %s: want 192.0.2.200 with %s from 192.0.2.129", ack.Summary(), BIOSLoader)
	}

	// Take the leased address, then TFTP and HTTP from it.
	link, err := cli.Netlink().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Netlink().AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: ack.YourIPAddr, Mask: ack.SubnetMask()}}); err != nil {
		t.Fatal(err)
	}
	err = cli.Do(func() error {
		c, err := tftp.NewClient("192.0.2.129:69")
		if err != nil {
			return err
		}
		c.SetTimeout(2 * time.Second)
		wt, err := c.Receive(ack.BootFileNameOption(), "octet")
		if err != nil {
			return fmt.Errorf("tftp: %w", err)
		}
		var buf bytes.Buffer
		if _, err := wt.WriteTo(&buf); err != nil {
			return fmt.Errorf("tftp: %w", err)
		}
		if !bytes.Equal(buf.Bytes(), loader) {
			return fmt.Errorf("tftp: got %d bytes, not the %d of %s", buf.Len(), len(loader), BIOSLoader)
		}
		if wt, err := c.Receive("../secret", "octet"); err == nil {
			if _, err := wt.WriteTo(io.Discard); err == nil {
				return fmt.Errorf("tftp served a file outside the tree")
			}
		}
		// Dial here, on this goroutine's (the namespace's) thread: an
		// http.Client would dial from a goroutine outside the namespace.
		conn, err := net.DialTimeout("tcp", "192.0.2.129:8080", 5*time.Second)
		if err != nil {
			return fmt.Errorf("http: %w", err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "GET /%s HTTP/1.0\r\nHost: 192.0.2.129\r\n\r\n", IPXEScript)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return fmt.Errorf("http: %w", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !bytes.HasPrefix(b, []byte("#!ipxe")) {
			return fmt.Errorf("http: %s %q", resp.Status, b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Idle and slow (slowloris) HTTP clients kept their connections forever;
// at the connection cap the longest-idle ones are now closed, and a booting
// client is still served.
func TestIdleAndSlowHTTPClientsAreCut(t *testing.T) {
	testkit.Require(t, testkit.Root) // DHCP binds to the device
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, IPXEScript), []byte("#!ipxe\n"), 0o644)
	s, err := Listen(Config{Interface: "lo", Dir: dir, HTTPPort: freePort(t, "tcp"), TFTPPort: freePort(t, "udp"), DHCPPort: freePort(t, "udp"),
		PoolStart: net.IPv4(127, 0, 0, 200), PoolEnd: net.IPv4(127, 0, 0, 201)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := fmt.Sprintf("127.0.0.1:%d", s.cfg.HTTPPort)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 300; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if i%2 == 1 {
			io.WriteString(c, "GET / HTTP/1.1\r\nX-Slow: ") // never finished
		}
		conns = append(conns, c)
	}
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + addr + "/" + IPXEScript)
	if err != nil {
		t.Fatalf("with 300 idle and slow clients: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with 300 idle and slow clients: %s", resp.Status)
	}
	for i, c := range conns[:10] {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("idle/slow connection %d of the first 10 still open past the cap: %v", i, err)
		}
	}
}

func TestTFTPSessionCap(t *testing.T) {
	s := &Server{cfg: Config{Dir: t.TempDir()}, tftpS: guard.NewSlots(1), quiet: &guard.Every{Burst: 1, Per: time.Second}, log: logrus.New()}
	os.WriteFile(filepath.Join(s.cfg.Dir, "f"), []byte("x"), 0o644)
	s.tftpS.Take() // one transfer running
	if err := s.readTFTP("f", nil); err != errBusy {
		t.Fatalf("transfer beyond the cap: %v, want %v", err, errBusy)
	}
}
