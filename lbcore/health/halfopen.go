package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The tcp_half_open check sends a bare SYN from a raw socket and waits for
// the SYN-ACK (up) or a RST (refused); the appliance's kernel, which has no
// socket for the reply, answers the SYN-ACK with a RST, so the server drops
// its half-open entry and no connection is ever made. The scheduler begins
// every half-open check due in a dispatch round, sends their SYNs with one
// sendmmsg, and the socket's receive loop (recvmmsg) completes them: no
// socket, connect, close or goroutine per check, and the server never wakes
// its application. At 10 000 members a second that is under half the CPU of
// the tcp check (out/health-bench.md).
//
// What it proves is less: the member's kernel has a listener on the port,
// not that the application accepts. Use tcp or http when that matters.
//
// Replies are told apart by (member address, member port, our port) and the
// acknowledged sequence number. Our ports come from a few TCP sockets bound
// to ephemeral ports and held open, so no other socket on the appliance can
// use them and the kernel has no socket to match the replies with (hence
// its RST). A BPF filter on the raw socket passes only packets to those
// ports, so the socket does not see the appliance's other TCP traffic.
// Timeouts are enforced by one sweeper per socket, not a timer per check.

// probePorts is how many source ports a raw socket holds: that many checks
// can be in flight at once towards one member address and port.
const probePorts = 16

// routeCacheTTL is how long the source address the kernel picks towards an
// IPv4 member is reused for the SYN's checksum without asking again.
const routeCacheTTL = 30 * time.Second

// synProber owns the raw sockets of half-open checks, one per address
// family and source address, opened on first use. One prober serves every
// tcp_half_open monitor of a scheduler.
type synProber struct {
	env SocketEnv

	mu       sync.Mutex
	socks    map[synSocketKey]*synSocket
	failedAt map[synSocketKey]time.Time // last failed open, to retry once a second
	failErr  map[synSocketKey]error
}

type synSocketKey struct {
	v6  bool
	src netip.Addr
}

func newSYNProber(env SocketEnv) *synProber {
	if env == nil {
		env = directEnv
	}
	return &synProber{env: env, socks: map[synSocketKey]*synSocket{},
		failedAt: map[synSocketKey]time.Time{}, failErr: map[synSocketKey]error{}}
}

// socket returns the open raw socket for the family and source, opening it
// if needed. A failed open is retried at most once a second.
func (p *synProber) socket(v6 bool, src netip.Addr) (*synSocket, error) {
	k := synSocketKey{v6, src}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.socks[k]; s != nil {
		return s, nil
	}
	if t, ok := p.failedAt[k]; ok && time.Since(t) < time.Second {
		return nil, p.failErr[k]
	}
	s, err := openSYNSocket(p.env, v6, src)
	if err != nil {
		p.failedAt[k], p.failErr[k] = time.Now(), err
		return nil, err
	}
	delete(p.failedAt, k)
	delete(p.failErr, k)
	p.socks[k] = s
	return s, nil
}

// Close closes every socket; checks waiting on them time out. The prober
// can be used again afterwards (sockets reopen on demand).
func (p *synProber) Close() error {
	p.mu.Lock()
	socks := p.socks
	p.socks = map[synSocketKey]*synSocket{}
	p.mu.Unlock()
	var errs []error
	for _, s := range socks {
		errs = append(errs, s.close())
	}
	return errors.Join(errs...)
}

type probeKey struct {
	member netip.Addr
	port   uint16 // the member's
	ours   uint16
}

// probe is one half-open check in flight. Exactly one of the receive loop
// (answer), the sweeper (timeout), a failed send or close completes it: the
// one that removes it from the waiting map calls done.
type probe struct {
	isn      uint32
	start    time.Time
	deadline int64 // Unix nanoseconds; the sweeper times it out then
	timeout  time.Duration
	done     func(Result)
}

// outgoing is a SYN queued for the next flush.
type outgoing struct {
	key probeKey
	seg []byte
	src netip.Addr // IPv4 without a bound source: the source to pin
}

// sweepEvery is how often a socket looks for probes past their deadline:
// one ticker per socket instead of a timer per check.
const sweepEvery = 5 * time.Millisecond

type routeEntry struct {
	src     netip.Addr
	expires time.Time
}

// synSocket is one raw TCP socket with its held ports and waiting probes.
type synSocket struct {
	v6    bool
	src   netip.Addr // bound source; invalid: the kernel picks per route
	env   SocketEnv
	conn  *net.IPConn
	p4    *ipv4.PacketConn
	holds []int // fds of the TCP sockets holding ports
	ports []uint16
	done  chan struct{} // closed when receive returns
	// receiving is set once the receive loop runs
	receiving bool

	mu      sync.Mutex
	waiting map[probeKey]*probe
	pending []outgoing // SYNs begun and not yet sent
	next    int
	routes  map[netip.Addr]routeEntry
}

func openSYNSocket(env SocketEnv, v6 bool, src netip.Addr) (_ *synSocket, err error) {
	s := &synSocket{v6: v6, src: src, env: env, done: make(chan struct{}),
		waiting: map[probeKey]*probe{}, routes: map[netip.Addr]routeEntry{}}
	defer func() {
		if err != nil {
			s.close() // what was opened before the failure
		}
	}()
	network, laddr := "ip4:tcp", "0.0.0.0"
	if v6 {
		network, laddr = "ip6:tcp", "::"
	}
	if src.IsValid() {
		laddr = src.String()
	}
	err = env(func() error {
		pc, err := net.ListenPacket(network, laddr)
		if err != nil {
			return err
		}
		s.conn = pc.(*net.IPConn)
		for range probePorts {
			fd, port, err := holdPort(v6)
			if err != nil {
				return err
			}
			s.holds = append(s.holds, fd)
			s.ports = append(s.ports, port)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, syscall.EPERM) {
			return nil, fmt.Errorf("raw socket for tcp_half_open: %w (needs CAP_NET_RAW)", err)
		}
		return nil, fmt.Errorf("raw socket for tcp_half_open: %w", err)
	}
	s.conn.SetReadBuffer(1 << 20)
	filter, err := portFilter(v6, s.ports)
	if err != nil {
		return nil, fmt.Errorf("tcp_half_open filter: %w", err)
	}
	if v6 {
		p6 := ipv6.NewPacketConn(s.conn)
		if err := p6.SetBPF(filter); err != nil {
			return nil, fmt.Errorf("tcp_half_open filter: %w", err)
		}
		// The kernel fills in the TCP checksum (offset 16), pseudo-header
		// and all, whatever source address it picks.
		rc, err := s.conn.SyscallConn()
		if err != nil {
			return nil, err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IPV6, syscall.IPV6_CHECKSUM, 16)
		}); err != nil {
			return nil, err
		}
		if serr != nil {
			return nil, fmt.Errorf("tcp_half_open: IPV6_CHECKSUM: %w", serr)
		}
	} else {
		s.p4 = ipv4.NewPacketConn(s.conn)
		if err := s.p4.SetBPF(filter); err != nil {
			return nil, fmt.Errorf("tcp_half_open filter: %w", err)
		}
	}
	s.receiving = true
	go s.receive()
	go s.sweep()
	return s, nil
}

// holdPort binds a TCP socket to an ephemeral port and keeps it, so the
// port is ours: nothing else on the appliance binds or connects from it.
func holdPort(v6 bool) (int, uint16, error) {
	family := syscall.AF_INET
	var sa syscall.Sockaddr = &syscall.SockaddrInet4{}
	if v6 {
		family, sa = syscall.AF_INET6, &syscall.SockaddrInet6{}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		return -1, 0, os.NewSyscallError("socket", err)
	}
	if v6 {
		syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 1)
	}
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, 0, os.NewSyscallError("bind", err)
	}
	got, err := syscall.Getsockname(fd)
	if err != nil {
		syscall.Close(fd)
		return -1, 0, os.NewSyscallError("getsockname", err)
	}
	switch a := got.(type) {
	case *syscall.SockaddrInet4:
		return fd, uint16(a.Port), nil
	case *syscall.SockaddrInet6:
		return fd, uint16(a.Port), nil
	}
	syscall.Close(fd)
	return -1, 0, errors.New("held port: unexpected socket address")
}

// portFilter passes TCP segments whose destination port is one of ports.
// IPv4 raw sockets see the IP header, IPv6 ones start at the TCP header.
func portFilter(v6 bool, ports []uint16) ([]bpf.RawInstruction, error) {
	var prog []bpf.Instruction
	if v6 {
		prog = append(prog, bpf.LoadAbsolute{Off: 2, Size: 2})
	} else {
		prog = append(prog, bpf.LoadMemShift{Off: 0}, bpf.LoadIndirect{Off: 2, Size: 2})
	}
	for i, p := range ports {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(p), SkipTrue: uint8(len(ports) - i)})
	}
	prog = append(prog, bpf.RetConstant{Val: 0}, bpf.RetConstant{Val: 0xffff})
	return bpf.Assemble(prog)
}

func (s *synSocket) close() error {
	s.mu.Lock()
	left := s.waiting
	s.waiting = map[probeKey]*probe{}
	s.pending = nil
	s.mu.Unlock()
	for _, p := range left {
		p.done(Result{Reason: "cancelled (syn)", Latency: time.Since(p.start)})
	}
	var err error
	if s.conn != nil {
		err = s.conn.Close()
		if s.receiving {
			<-s.done
		}
	}
	for _, fd := range s.holds {
		syscall.Close(fd)
	}
	s.holds = nil
	return err
}

// receive reads replies, several per system call (recvmmsg) when several
// are queued, until the socket closes, and hands each to its probe.
func (s *synSocket) receive() {
	defer close(s.done)
	const batch = 16
	var read func([]ipv4.Message) (int, error)
	if s.v6 {
		p6 := ipv6.NewPacketConn(s.conn)
		read = func(ms []ipv4.Message) (int, error) { return p6.ReadBatch(ms, 0) }
	} else {
		read = func(ms []ipv4.Message) (int, error) { return s.p4.ReadBatch(ms, 0) }
	}
	ms := make([]ipv4.Message, batch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1500)}
	}
	for {
		n, err := read(ms)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. ENOBUFS: keep going
			continue
		}
		for _, m := range ms[:n] {
			b := m.Buffers[0][:m.N]
			if !s.v6 { // IPv4 raw sockets deliver the IP header too
				ihl := int(b[0]&0x0f) * 4
				if ihl < 20 || ihl > len(b) {
					continue
				}
				b = b[ihl:]
			}
			from, _ := m.Addr.(*net.IPAddr)
			s.deliver(b, from)
		}
	}
}

// sweep fails probes whose deadline passed, until the socket closes.
func (s *synSocket) sweep() {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	var expired []*probe
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			n := now.UnixNano()
			s.mu.Lock()
			for k, p := range s.waiting {
				if p.deadline <= n {
					delete(s.waiting, k)
					expired = append(expired, p)
				}
			}
			s.mu.Unlock()
			for i, p := range expired {
				p.done(Result{Reason: fmt.Sprintf("timeout after %s (syn)", p.timeout), Latency: now.Sub(p.start)})
				expired[i] = nil
			}
			expired = expired[:0]
		}
	}
}

// TCP header flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

func (s *synSocket) deliver(seg []byte, from *net.IPAddr) {
	if len(seg) < 20 || from == nil {
		return
	}
	member, ok := netip.AddrFromSlice(from.IP)
	if !ok {
		return
	}
	k := probeKey{member: member.Unmap(), port: binary.BigEndian.Uint16(seg[0:2]), ours: binary.BigEndian.Uint16(seg[2:4])}
	ack := binary.BigEndian.Uint32(seg[8:12])
	flags := seg[13]
	if flags&tcpACK == 0 || flags&(tcpSYN|tcpRST) == 0 {
		return
	}
	s.mu.Lock()
	p := s.waiting[k]
	if p == nil || ack != p.isn+1 {
		s.mu.Unlock()
		return // late, stray, or not an answer to our SYN
	}
	delete(s.waiting, k)
	s.mu.Unlock()
	if flags&tcpRST != 0 {
		p.done(Result{Reason: "connection refused (syn)", Latency: time.Since(p.start)})
		return
	}
	p.done(Result{OK: true, Reason: "SYN-ACK", Latency: time.Since(p.start)})
}

// begin registers a probe towards dst and queues its SYN for flush; a probe
// that cannot start is completed at once.
func (s *synSocket) begin(dst netip.AddrPort, timeout time.Duration, done func(Result)) {
	now := time.Now()
	member := dst.Addr().Unmap()
	p := &probe{isn: rand.Uint32(), start: now, deadline: now.Add(timeout).UnixNano(), timeout: timeout, done: done}
	var src netip.Addr
	if !s.v6 && !s.src.IsValid() {
		var err error
		if src, err = s.routeSource(member, dst.Port()); err != nil {
			done(Result{Reason: describeSYN(err), Latency: time.Since(now)})
			return
		}
	}
	s.mu.Lock()
	var k probeKey
	found := false
	for i := range s.ports {
		idx := (s.next + i) % len(s.ports)
		k = probeKey{member: member, port: dst.Port(), ours: s.ports[idx]}
		if _, busy := s.waiting[k]; !busy {
			s.next, found = idx+1, true
			break
		}
	}
	if !found {
		s.mu.Unlock()
		done(Result{Reason: fmt.Sprintf("all %d half-open probe ports are busy towards %s", len(s.ports), dst)})
		return
	}
	segSrc := s.src
	if src.IsValid() {
		segSrc = src
	}
	s.waiting[k] = p
	s.pending = append(s.pending, outgoing{key: k, seg: synSegment(segSrc, member, k.ours, k.port, p.isn), src: src})
	s.mu.Unlock()
}

// flush sends the queued SYNs, a batch per system call (sendmmsg), and
// completes the probes whose SYN could not be sent.
func (s *synSocket) flush() {
	s.mu.Lock()
	out := s.pending
	s.pending = nil
	s.mu.Unlock()
	for len(out) > 0 {
		n, err := s.sendBatch(out)
		if err != nil {
			// the first unsent one fails; carry on with the rest
			s.fail(out[n].key, describeSYN(err))
			n++
		}
		out = out[n:]
	}
}

func (s *synSocket) sendBatch(out []outgoing) (int, error) {
	const maxBatch = 64
	out = out[:min(len(out), maxBatch)]
	if s.v6 {
		msgs := make([]ipv6.Message, len(out))
		for i, o := range out {
			msgs[i] = ipv6.Message{Buffers: [][]byte{o.seg}, Addr: &net.IPAddr{IP: o.key.member.AsSlice()}}
		}
		return ipv6.NewPacketConn(s.conn).WriteBatch(msgs, 0)
	}
	msgs := make([]ipv4.Message, len(out))
	for i, o := range out {
		msgs[i] = ipv4.Message{Buffers: [][]byte{o.seg}, Addr: &net.IPAddr{IP: o.key.member.AsSlice()}}
		if o.src.IsValid() {
			// pin the source the checksum was computed for
			msgs[i].OOB = (&ipv4.ControlMessage{Src: o.src.AsSlice()}).Marshal()
		}
	}
	return s.p4.WriteBatch(msgs, 0)
}

// fail completes a probe that will get no answer.
func (s *synSocket) fail(k probeKey, reason string) {
	s.mu.Lock()
	p := s.waiting[k]
	delete(s.waiting, k)
	s.mu.Unlock()
	if p != nil {
		p.done(Result{Reason: reason, Latency: time.Since(p.start)})
	}
}

// describeSYN turns a send-side error into a check reason.
func describeSYN(err error) string {
	return (&base{}).describe(context.Background(), inPhase("syn", err))
}

// routeSource is the address the kernel sends from towards member (cached).
func (s *synSocket) routeSource(member netip.Addr, port uint16) (netip.Addr, error) {
	now := time.Now()
	s.mu.Lock()
	e, ok := s.routes[member]
	s.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.src, nil
	}
	var src netip.Addr
	err := s.env(func() error {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: member.AsSlice(), Port: int(port)})
		if err != nil {
			return err
		}
		defer c.Close()
		src = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		return nil
	})
	if err != nil {
		return netip.Addr{}, err
	}
	s.mu.Lock()
	if len(s.routes) > 1<<16 {
		clear(s.routes) // members come and go; do not grow without bound
	}
	s.routes[member] = routeEntry{src: src, expires: now.Add(routeCacheTTL)}
	s.mu.Unlock()
	return src, nil
}

// synSegment is a TCP SYN with an MSS option. For IPv4 src must be the
// address it leaves from (the checksum covers it); for IPv6 the kernel
// computes the checksum and src is ignored.
func synSegment(src, dst netip.Addr, sport, dport uint16, isn uint32) []byte {
	b := make([]byte, 24)
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], isn)
	b[12] = 6 << 4 // data offset: 6 words (20 + MSS option)
	b[13] = tcpSYN
	binary.BigEndian.PutUint16(b[14:], 64240) // window
	b[20], b[21] = 2, 4                       // MSS option
	binary.BigEndian.PutUint16(b[22:], 1460)
	if src.Is4() {
		binary.BigEndian.PutUint16(b[16:], tcpChecksum4(src, dst, b))
	}
	return b
}

// tcpChecksum4 is the TCP checksum over the IPv4 pseudo-header and seg
// (whose checksum field is zero).
func tcpChecksum4(src, dst netip.Addr, seg []byte) uint16 {
	s4, d4 := src.As4(), dst.As4()
	var sum uint32
	for i := 0; i < 4; i += 2 {
		sum += uint32(s4[i])<<8 | uint32(s4[i+1])
		sum += uint32(d4[i])<<8 | uint32(d4[i+1])
	}
	sum += syscall.IPPROTO_TCP + uint32(len(seg))
	for i := 0; i+1 < len(seg); i += 2 {
		sum += uint32(seg[i])<<8 | uint32(seg[i+1])
	}
	if len(seg)%2 == 1 {
		sum += uint32(seg[len(seg)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// halfOpenChecker is the tcp_half_open monitor.
type halfOpenChecker struct {
	*base
	prober *synProber
	own    bool // prober made for this checker alone: Close closes it
}

// begin starts a check of t; done gets its result, from another goroutine
// unless the check cannot start. The scheduler begins every half-open check
// due in one dispatch round and then flushes them together.
func (c *halfOpenChecker) begin(t Target, done func(Result)) *synSocket {
	addr, err := c.addr(t)
	if err != nil {
		done(Result{Reason: err.Error()})
		return nil
	}
	member := addr.Addr().Unmap()
	if c.src.IsValid() && c.src.Is4() != member.Is4() {
		done(Result{Reason: fmt.Sprintf("source %s and member %s are different address families", c.src, member)})
		return nil
	}
	s, err := c.prober.socket(member.Is6(), c.src)
	if err != nil {
		done(Result{Reason: describeSYN(err)})
		return nil
	}
	s.begin(netip.AddrPortFrom(member, addr.Port()), c.timeout, done)
	return s
}

// Check runs one check on its own (the Checker interface); the scheduler
// uses begin and flush instead.
func (c *halfOpenChecker) Check(ctx context.Context, t Target) Result {
	res := make(chan Result, 1)
	if s := c.begin(t, func(r Result) { res <- r }); s != nil {
		s.flush()
	}
	select {
	case r := <-res:
		return r
	case <-ctx.Done():
		return Result{Reason: describeSYN(ctx.Err())}
	}
}

// Close releases the raw socket of a checker made by NewChecker.
func (c *halfOpenChecker) Close() error {
	if c.own {
		return c.prober.Close()
	}
	return nil
}
