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

	"github.com/fulcrum-lb/fulcrum/services/guard"
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
	// OfferTime is how long an address offered (DISCOVER) stays reserved
	// for a client that does not REQUEST it; default 30 s.
	OfferTime time.Duration
	// MaxLeases bounds the lease table (offers and leases); default 1024
	// (the pool's size is a bound too).
	MaxLeases int
	// AllowMACs, when not empty, is the only clients answered: every
	// other MAC gets no DHCP reply at all.
	AllowMACs []net.HardwareAddr
	Router    net.IP // optional option 3
	Log       logrus.FieldLogger
}

// Limits of the TFTP and HTTP servers: an idle or slow client is cut off,
// at most maxTFTPSessions transfers run at once, and at the HTTP
// connection cap the longest-idle connection makes room. The write timeout
// allows a 100 MB initramfs over a slow link.
const maxTFTPSessions = 32

func httpLimits() guard.HTTP {
	return guard.HTTP{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Minute,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
		MaxBodyBytes:      1 << 10,
		MaxConns:          64,
	}
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
	http   *guard.Server
	leases *leases
	tftpS  *guard.Slots
	allow  map[string]bool
	quiet  *guard.Every // rate limit of log lines clients can cause
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
	if cfg.OfferTime == 0 {
		cfg.OfferTime = 30 * time.Second
	}
	if cfg.MaxLeases == 0 {
		cfg.MaxLeases = 1024
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
	pool, err := newLeases(ip, mask, cfg.PoolStart, cfg.PoolEnd, cfg.MaxLeases)
	if err != nil {
		return nil, fmt.Errorf("netboot: %w", err)
	}
	s := &Server{cfg: cfg, ip: ip, mask: mask, leases: pool, log: cfg.Log,
		tftpS: guard.NewSlots(maxTFTPSessions), quiet: &guard.Every{Burst: 20, Per: time.Second}}
	if len(cfg.AllowMACs) > 0 {
		s.allow = map[string]bool{}
		for _, m := range cfg.AllowMACs {
			s.allow[m.String()] = true
		}
	}

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
	lim := httpLimits()
	lim.ErrorLog = &guard.LimitedWriter{W: cfg.Log.WithField("from", "http").WriterLevel(logrus.WarnLevel), Max: 128, Every: &guard.Every{Burst: 5, Per: time.Second}}
	s.http = lim.Server(s.httpHandler())
	return s, nil
}

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
	if s.allow != nil && !s.allow[m.ClientHWAddr.String()] {
		s.logQuiet(log, "dhcp: MAC not on the allow-list, no answer")
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
	now := time.Now()
	addr, err := s.leases.addressFor(m.ClientHWAddr, now, s.cfg.OfferTime)
	if err != nil {
		s.logQuiet(log.WithError(err), "dhcp: no address to offer")
		return
	}
	if reply == dhcpv4.MessageTypeAck {
		want := m.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = m.ClientIPAddr
		}
		if !want.Equal(addr) {
			reply = dhcpv4.MessageTypeNak
		} else {
			s.leases.hold(m.ClientHWAddr, now, s.cfg.LeaseTime)
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

// logQuiet logs a line a client can cause, at most s.quiet's rate.
func (s *Server) logQuiet(log logrus.FieldLogger, msg string) {
	if ok, suppressed := s.quiet.Allow(time.Now()); ok {
		if suppressed > 0 {
			log = log.WithField("suppressed", suppressed)
		}
		log.Warn(msg)
	}
}

// Errors a client sees: they never name a server path.
var (
	errNotFound = errors.New("file not found")
	errBusy     = errors.New("server busy, try again later")
)

// readTFTP serves files of the tree over TFTP, at most maxTFTPSessions at
// once.
func (s *Server) readTFTP(name string, rf io.ReaderFrom) error {
	if s.tftpS.Take() != nil {
		s.logQuiet(s.log.WithField("file", guard.Clip(name, 128)), "tftp: too many transfers, refused")
		return errBusy
	}
	defer s.tftpS.Release()
	f, _, err := s.openFile(name)
	if err != nil {
		s.logQuiet(s.log.WithField("file", guard.Clip(name, 128)).WithError(err), "tftp: refused")
		return errNotFound
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		if t, ok := rf.(tftp.OutgoingTransfer); ok {
			t.SetSize(fi.Size())
		}
	}
	n, err := rf.ReadFrom(f)
	s.log.WithFields(logrus.Fields{"file": guard.Clip(name, 128), "bytes": n}).Info("tftp")
	return err
}

// openFile opens a regular file of the tree; directories and anything
// outside the tree are refused.
func (s *Server) openFile(name string) (*os.File, os.FileInfo, error) {
	p, err := s.treePath(name)
	if err != nil {
		return nil, nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: not a regular file", p)
	}
	return f, fi, nil
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

// httpHandler serves the tree's regular files to GET and HEAD: no
// directory listings, and errors that never name a server path.
func (s *Server) httpHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log := s.log.WithFields(logrus.Fields{"path": guard.Clip(r.URL.Path, 128), "from": r.RemoteAddr})
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		f, fi, err := s.openFile(r.URL.Path)
		if err != nil {
			s.logQuiet(log.WithError(err), "http: not served")
			http.Error(w, errNotFound.Error(), http.StatusNotFound)
			return
		}
		defer f.Close()
		log.Info("http")
		http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
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

// leases hands each MAC a stable address from the pool. An entry lasts
// until its expiry (an offer's OfferTime, an ACKed lease's LeaseTime);
// expired entries are reclaimed when an address is needed, and the table
// never holds more than max entries.
type leases struct {
	mu         sync.Mutex
	start, end uint32
	server     uint32
	max        int
	byMAC      map[string]*lease
	byAddr     map[uint32]string
}

type lease struct {
	addr    uint32
	expires time.Time
}

func newLeases(server net.IP, mask net.IPMask, start, end net.IP, max int) (*leases, error) {
	if start.To4() == nil || end.To4() == nil {
		return nil, fmt.Errorf("address pool %v-%v: want two IPv4 addresses", start, end)
	}
	subnet := &net.IPNet{IP: server.Mask(mask), Mask: mask}
	for _, a := range []net.IP{start, end} {
		if !subnet.Contains(a) {
			return nil, fmt.Errorf("address pool %v-%v: %v is not in the interface's subnet %v", start, end, a, subnet)
		}
	}
	if max < 1 {
		return nil, fmt.Errorf("lease table size %d: want at least 1", max)
	}
	l := &leases{start: ip4(start), end: ip4(end), server: ip4(server), max: max, byMAC: map[string]*lease{}, byAddr: map[uint32]string{}}
	if l.start > l.end {
		return nil, fmt.Errorf("address pool %v-%v: start after end", start, end)
	}
	return l, nil
}

// addressFor returns mac's address, reserving it until at least now+hold.
func (l *leases) addressFor(mac net.HardwareAddr, now time.Time, hold time.Duration) (net.IP, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := mac.String()
	if e, ok := l.byMAC[key]; ok {
		if e.expires.Before(now.Add(hold)) {
			e.expires = now.Add(hold)
		}
		return ipFrom(e.addr), nil
	}
	if len(l.byMAC) >= l.max {
		l.sweep(now)
		if len(l.byMAC) >= l.max {
			return nil, fmt.Errorf("lease table full (%d entries)", l.max)
		}
	}
	for a := l.start; a <= l.end && a >= l.start; a++ {
		if a == l.server {
			continue
		}
		if owner, taken := l.byAddr[a]; taken {
			if !l.byMAC[owner].expires.Before(now) {
				continue
			}
			delete(l.byMAC, owner)
		}
		l.byAddr[a] = key
		l.byMAC[key] = &lease{addr: a, expires: now.Add(hold)}
		return ipFrom(a), nil
	}
	return nil, errors.New("address pool exhausted")
}

// hold extends mac's entry to now+d (an ACKed lease).
func (l *leases) hold(mac net.HardwareAddr, now time.Time, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.byMAC[mac.String()]; ok {
		e.expires = now.Add(d)
	}
}

// sweep drops expired entries.
func (l *leases) sweep(now time.Time) {
	for mac, e := range l.byMAC {
		if e.expires.Before(now) {
			delete(l.byMAC, mac)
			delete(l.byAddr, e.addr)
		}
	}
}

func ip4(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func ipFrom(a uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, a)
	return ip
}
