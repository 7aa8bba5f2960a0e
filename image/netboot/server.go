package netboot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/pin/tftp/v3"
	"github.com/sirupsen/logrus"
)

// Config describes one netboot server.
type Config struct {
	Interface string // the only interface served (DHCP binds to it, TFTP/HTTP to its address)
	Dir       string // the PXE tree: boot.ipxe, vmlinuz, initramfs.cpio.gz, chainload binaries
	// PoolStart and PoolEnd bound the addresses handed out; both inside the
	// interface's subnet.
	PoolStart, PoolEnd net.IP
	HTTPPort           int           // default 80
	TFTPPort           int           // default 69
	DHCPPort           int           // default 67
	LeaseTime          time.Duration // default 1h
	Router             net.IP        // optional option 3
	Log                logrus.FieldLogger
}

// Server is a listening netboot server.
type Server struct {
	cfg    Config
	ip     net.IP
	mask   net.IPMask
	dhcp   *server4.Server
	tftp   *tftp.Server
	tftpC  net.PacketConn
	httpL  net.Listener
	http   *http.Server
	leases *leases
	log    logrus.FieldLogger
}

// Listen validates cfg and opens the DHCP, TFTP and HTTP sockets on the
// interface. Call it inside the network namespace the interface lives in.
func Listen(cfg Config) (*Server, error) {
	if cfg.Interface == "" {
		return nil, errors.New("netboot: an interface is required")
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = 80
	}
	if cfg.TFTPPort == 0 {
		cfg.TFTPPort = 69
	}
	if cfg.DHCPPort == 0 {
		cfg.DHCPPort = dhcpv4.ServerPort
	}
	if cfg.LeaseTime == 0 {
		cfg.LeaseTime = time.Hour
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		cfg.Log = l
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, IPXEScript)); err != nil {
		return nil, fmt.Errorf("netboot: PXE tree %s: %w (run make image)", cfg.Dir, err)
	}
	ip, mask, err := interfaceIPv4(cfg.Interface)
	if err != nil {
		return nil, err
	}
	pool, err := newLeases(ip, mask, cfg.PoolStart, cfg.PoolEnd)
	if err != nil {
		return nil, fmt.Errorf("netboot: %w", err)
	}
	s := &Server{cfg: cfg, ip: ip, mask: mask, leases: pool, log: cfg.Log}

	s.dhcp, err = server4.NewServer(cfg.Interface, &net.UDPAddr{Port: cfg.DHCPPort}, s.handleDHCP)
	if err != nil {
		return nil, fmt.Errorf("netboot: dhcp on %s: %w", cfg.Interface, err)
	}
	s.tftpC, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: cfg.TFTPPort})
	if err != nil {
		s.dhcp.Close()
		return nil, fmt.Errorf("netboot: tftp on %s: %w", ip, err)
	}
	s.tftp = tftp.NewServer(s.readTFTP, nil)
	s.tftp.SetTimeout(2 * time.Second)
	// One socket for every transfer: it was opened in the interface's
	// namespace and bound to its address (per-transfer sockets would be
	// opened wherever Serve runs).
	s.tftp.EnableSinglePort()
	s.httpL, err = net.Listen("tcp4", net.JoinHostPort(ip.String(), fmt.Sprint(cfg.HTTPPort)))
	if err != nil {
		s.dhcp.Close()
		s.tftpC.Close()
		return nil, fmt.Errorf("netboot: http on %s: %w", ip, err)
	}
	s.http = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// IP is the server's address on the interface.
func (s *Server) IP() net.IP { return s.ip }

// Serve answers until ctx is cancelled, then closes every socket.
func (s *Server) Serve(ctx context.Context) error {
	s.log.WithFields(logrus.Fields{"interface": s.cfg.Interface, "address": s.ip, "dir": s.cfg.Dir,
		"pool": s.cfg.PoolStart.String() + "-" + s.cfg.PoolEnd.String()}).Info("netboot serving DHCP, TFTP and HTTP")
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	run := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("netboot %s: %w", name, err)
			}
		}()
	}
	run("dhcp", s.dhcp.Serve)
	run("tftp", func() error { return s.tftp.Serve(s.tftpC) })
	run("http", func() error {
		if err := s.http.Serve(s.httpL); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	s.dhcp.Close()
	s.tftp.Shutdown()
	s.http.Close()
	wg.Wait()
	return err
}

func (s *Server) handleDHCP(conn net.PacketConn, _ net.Addr, m *dhcpv4.DHCPv4) {
	log := s.log.WithFields(logrus.Fields{"mac": m.ClientHWAddr.String(), "type": m.MessageType().String()})
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return
	}
	var reply dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		reply = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		if sid := m.ServerIdentifier(); sid != nil && !sid.Equal(s.ip) {
			return // the client chose another server
		}
		reply = dhcpv4.MessageTypeAck
	default:
		return
	}
	addr, err := s.leases.addressFor(m.ClientHWAddr)
	if err != nil {
		log.WithError(err).Warn("no address to offer")
		return
	}
	if reply == dhcpv4.MessageTypeAck {
		want := m.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = m.ClientIPAddr
		}
		if !want.Equal(addr) {
			reply = dhcpv4.MessageTypeNak
		}
	}
	client := Classify(m)
	file := BootFile(client, s.ip, s.cfg.HTTPPort)
	resp, err := Reply(m, reply, addr, s.ip, s.mask, s.cfg.Router, uint32(s.cfg.LeaseTime.Seconds()), file)
	if err != nil {
		log.WithError(err).Error("building reply")
		return
	}
	// Booting clients have no address yet: broadcast, unless a relay
	// forwarded the request.
	var dst net.Addr = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	if !m.GatewayIPAddr.IsUnspecified() {
		dst = &net.UDPAddr{IP: m.GatewayIPAddr, Port: dhcpv4.ServerPort}
	}
	if _, err := conn.WriteTo(resp.ToBytes(), dst); err != nil {
		log.WithError(err).Error("sending reply")
		return
	}
	log.WithFields(logrus.Fields{"reply": reply.String(), "address": addr, "client": client.String(), "bootfile": file}).Info("dhcp")
}

// Reply builds the answer to req: the address, the server's own address as
// server identifier and next server (siaddr, option 66), and the boot file
// (file field and option 67) when there is one.
func Reply(req *dhcpv4.DHCPv4, t dhcpv4.MessageType, addr, server net.IP, mask net.IPMask, router net.IP, lease uint32, bootFile string) (*dhcpv4.DHCPv4, error) {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(t),
		dhcpv4.WithServerIP(server),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)),
	}
	if t != dhcpv4.MessageTypeNak {
		mods = append(mods,
			dhcpv4.WithYourIP(addr),
			dhcpv4.WithNetmask(mask),
			dhcpv4.WithLeaseTime(lease),
		)
		if router != nil {
			mods = append(mods, dhcpv4.WithRouter(router))
		}
		if bootFile != "" {
			mods = append(mods,
				dhcpv4.WithOption(dhcpv4.OptTFTPServerName(server.String())),
				dhcpv4.WithOption(dhcpv4.OptBootFileName(bootFile)))
		}
		if Classify(req) == IPXE {
			// iPXE encapsulated option 175.176 no-pxedhcp=1: do not wait
			// for ProxyDHCP offers (there are none; we are the PXE server).
			mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionEtherboot, []byte{176, 1, 1}))
		}
		if Classify(req) == BIOSPXE || Classify(req) == EFIPXE {
			// PXE clients want the class identifier echoed.
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")))
		}
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, err
	}
	resp.BootFileName = bootFile
	return resp, nil
}

// readTFTP serves files of the tree over TFTP.
func (s *Server) readTFTP(name string, rf io.ReaderFrom) error {
	p, err := s.treePath(name)
	if err != nil {
		s.log.WithField("file", name).Warn("tftp: refused")
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		s.log.WithField("file", name).WithError(err).Warn("tftp: not found")
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		if t, ok := rf.(tftp.OutgoingTransfer); ok {
			t.SetSize(fi.Size())
		}
	}
	n, err := rf.ReadFrom(f)
	s.log.WithFields(logrus.Fields{"file": name, "bytes": n}).Info("tftp")
	return err
}

// treePath maps a request path to a file inside the tree, refusing
// anything that would leave it.
func (s *Server) treePath(name string) (string, error) {
	clean := path.Clean("/" + strings.TrimLeft(strings.ReplaceAll(name, "\\", "/"), "/"))
	if clean == "/" {
		return "", fmt.Errorf("no file named")
	}
	return filepath.Join(s.cfg.Dir, filepath.FromSlash(clean)), nil
}

func (s *Server) httpHandler() http.Handler {
	files := http.FileServer(http.Dir(s.cfg.Dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.log.WithFields(logrus.Fields{"path": r.URL.Path, "from": r.RemoteAddr}).Info("http")
		files.ServeHTTP(w, r)
	})
}

func interfaceIPv4(name string) (net.IP, net.IPMask, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, nil, fmt.Errorf("netboot: interface %s: %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, nil, fmt.Errorf("netboot: interface %s: %w", name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.IP.To4(), n.Mask, nil
		}
	}
	return nil, nil, fmt.Errorf("netboot: interface %s has no IPv4 address", name)
}

// leases hands each MAC a stable address from the pool.
type leases struct {
	mu         sync.Mutex
	start, end uint32
	byMAC      map[string]uint32
	used       map[uint32]bool
}

func newLeases(server net.IP, mask net.IPMask, start, end net.IP) (*leases, error) {
	if start.To4() == nil || end.To4() == nil {
		return nil, fmt.Errorf("address pool %v-%v: want two IPv4 addresses", start, end)
	}
	subnet := &net.IPNet{IP: server.Mask(mask), Mask: mask}
	for _, a := range []net.IP{start, end} {
		if !subnet.Contains(a) {
			return nil, fmt.Errorf("address pool %v-%v: %v is not in the interface's subnet %v", start, end, a, subnet)
		}
	}
	l := &leases{start: ip4(start), end: ip4(end), byMAC: map[string]uint32{}, used: map[uint32]bool{ip4(server): true}}
	if l.start > l.end {
		return nil, fmt.Errorf("address pool %v-%v: start after end", start, end)
	}
	return l, nil
}

func (l *leases) addressFor(mac net.HardwareAddr) (net.IP, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a, ok := l.byMAC[mac.String()]; ok {
		return ipFrom(a), nil
	}
	for a := l.start; a <= l.end && a >= l.start; a++ {
		if !l.used[a] {
			l.used[a] = true
			l.byMAC[mac.String()] = a
			return ipFrom(a), nil
		}
	}
	return nil, errors.New("address pool exhausted")
}

func ip4(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func ipFrom(a uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, a)
	return ip
}
