// Package ctnl reads and installs conntrack entries for conntrack sync
// (lbcore/ctsync, issue 13 item 2). Reading (dumps) uses
// github.com/ti-mo/conntrack. Installing an entry with its NAT binding
// needs CTA_NAT_SRC / CTA_NAT_DST, which that library does not encode, so
// Install builds the ctnetlink message itself on vishvananda/netlink's nl
// socket: the kernel then sets the entry's NAT status and translates the
// flow's packets as the master did. Numbers follow the kernel's
// include/uapi/linux/netfilter/nfnetlink_conntrack.h.
package ctnl

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/fulcrum-lb/fulcrum/lbcore/ctsync"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Conntrack status bits (IPS_*).
const (
	StatusSeenReply = 1 << 1
	StatusAssured   = 1 << 2
	StatusConfirmed = 1 << 3
	StatusSrcNAT    = 1 << 4
	StatusDstNAT    = 1 << 5
	// What CTA_STATUS may set; CONFIRMED must be there because the kernel
	// confirms a new entry before it compares the status it is given
	// (a difference in CONFIRMED is EBUSY).
	statusSettable = StatusSeenReply | StatusAssured
)

// Conn talks to the conntrack table of one network namespace.
type Conn struct {
	ct   *conntrack.Conn
	cfg  *netlink.Config // for the event socket (Watch)
	ns   netns.NsHandle  // the namespace cfg.NetNS names, open until Close
	sock *nl.NetlinkSocket
	seq  uint32
}

// Open opens both sockets in the namespace at nsPath ("" for the caller's).
func Open(nsPath string) (*Conn, error) {
	ns := netns.None()
	if nsPath != "" {
		h, err := netns.GetFromPath(nsPath)
		if err != nil {
			return nil, fmt.Errorf("conntrack: open namespace %s: %w", nsPath, err)
		}
		ns = h // kept open: Watch dials its event socket through cfg.NetNS later
	}
	cfg := &netlink.Config{}
	if ns.IsOpen() {
		cfg.NetNS = int(ns)
	}
	ct, err := conntrack.Dial(cfg)
	if err != nil {
		closeNS(ns)
		return nil, fmt.Errorf("conntrack: dial: %w", err)
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_NETFILTER)
	if err != nil {
		ct.Close()
		closeNS(ns)
		return nil, fmt.Errorf("conntrack: netfilter socket: %w", err)
	}
	tv := unix.NsecToTimeval(5e9)
	s.SetSendTimeout(&tv)
	s.SetReceiveTimeout(&tv)
	return &Conn{ct: ct, cfg: cfg, ns: ns, sock: s}, nil
}

func closeNS(h netns.NsHandle) {
	if h.IsOpen() {
		h.Close()
	}
}

// Close closes the sockets and the namespace handle.
func (c *Conn) Close() {
	c.ct.Close()
	c.sock.Close()
	closeNS(c.ns)
}

// Dump returns the TCP and UDP entries of the table that keep[Status]
// selects (nil: all), as sync entries.
func (c *Conn) Dump(keep func(status uint32) bool) ([]ctsync.Entry, error) {
	flows, err := c.ct.Dump(nil)
	if err != nil {
		return nil, fmt.Errorf("conntrack: dump: %w", err)
	}
	var out []ctsync.Entry
	for _, f := range flows {
		e, ok := FromFlow(f)
		if !ok || (keep != nil && !keep(e.Status)) {
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// NATOnly keeps entries the master translated (SNAT or DNAT).
func NATOnly(status uint32) bool { return status&(StatusSrcNAT|StatusDstNAT) != 0 }

// FromFlow converts a TCP or UDP flow; other protocols are not synced.
func FromFlow(f conntrack.Flow) (ctsync.Entry, bool) {
	p := f.TupleOrig.Proto.Protocol
	if p != unix.IPPROTO_TCP && p != unix.IPPROTO_UDP {
		return ctsync.Entry{}, false
	}
	e := ctsync.Entry{Op: ctsync.OpUpdate, Proto: p, Status: uint32(f.Status), Timeout: f.Timeout, Mark: f.Mark, Zone: f.Zone,
		Orig:  tuple(f.TupleOrig),
		Reply: tuple(f.TupleReply)}
	if f.ProtoInfo.TCP != nil {
		e.TCPState = f.ProtoInfo.TCP.State
	}
	return e, true
}

func tuple(t conntrack.Tuple) ctsync.Tuple {
	return ctsync.Tuple{Src: t.IP.SourceAddress, Dst: t.IP.DestinationAddress, SrcPort: t.Proto.SourcePort, DstPort: t.Proto.DestinationPort}
}

// ctnetlink numbers (nfnetlink_conntrack.h).
const (
	subsysCT     = 1 // NFNL_SUBSYS_CTNETLINK
	msgNew       = 0 // IPCTNL_MSG_CT_NEW
	msgDelete    = 2 // IPCTNL_MSG_CT_DELETE
	ctaTupleOrig = 1
	ctaTupleRep  = 2
	ctaStatus    = 3
	ctaProtoinfo = 4
	ctaNATSrc    = 6
	ctaTimeout   = 7
	ctaMark      = 8
	ctaNATDst    = 13
	ctaZone      = 18

	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaIPv4Src    = 1
	ctaIPv4Dst    = 2
	ctaIPv6Src    = 3
	ctaIPv6Dst    = 4
	ctaProtoNum   = 1
	ctaProtoSrc   = 2
	ctaProtoDst   = 3

	ctaNATv4Min  = 1
	ctaNATv4Max  = 2
	ctaNATProto  = 3
	ctaNATv6Min  = 4
	ctaNATv6Max  = 5
	ctaPNATMin   = 1
	ctaPNATMax   = 2
	ctaPInfoTCP  = 1
	ctaPInfoTCPS = 1 // CTA_PROTOINFO_TCP_STATE
)

const nested = 0x8000

func attr(typ uint16, data []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func tupleAttr(typ uint16, proto uint8, t ctsync.Tuple) []byte {
	var ip []byte
	if t.Src.Is4() {
		ip = append(attr(ctaIPv4Src, t.Src.AsSlice()), attr(ctaIPv4Dst, t.Dst.AsSlice())...)
	} else {
		ip = append(attr(ctaIPv6Src, t.Src.AsSlice()), attr(ctaIPv6Dst, t.Dst.AsSlice())...)
	}
	pr := attr(ctaProtoNum, []byte{proto})
	pr = append(pr, attr(ctaProtoSrc, be16(t.SrcPort))...)
	pr = append(pr, attr(ctaProtoDst, be16(t.DstPort))...)
	return attr(typ|nested, append(attr(ctaTupleIP|nested, ip), attr(ctaTupleProto|nested, pr)...))
}

// natAttr is the binding that turns orig into reply: a one-address,
// one-port range, so the kernel picks exactly the master's translation.
func natAttr(typ uint16, a netip.Addr, port uint16) []byte {
	var b []byte
	if a.Is4() {
		b = append(attr(ctaNATv4Min, a.AsSlice()), attr(ctaNATv4Max, a.AsSlice())...)
	} else {
		b = append(attr(ctaNATv6Min, a.AsSlice()), attr(ctaNATv6Max, a.AsSlice())...)
	}
	b = append(b, attr(ctaNATProto|nested, append(attr(ctaPNATMin, be16(port)), attr(ctaPNATMax, be16(port))...))...)
	return attr(typ|nested, b)
}

// Untranslated is e's reply tuple with its conntrack NAT undone: the
// source NAT part (reply destination) back to the original source, the
// destination NAT part (reply source) back to the original destination.
// What else differs from the inverted original stays: IPVS masquerading
// (FullNAT) rewrites the reply's source to the member without conntrack
// NAT, and the backup's entry must expect the member's replies too.
func Untranslated(e ctsync.Entry) ctsync.Tuple {
	r := e.Reply
	if e.Status&StatusSrcNAT != 0 {
		r.Dst, r.DstPort = e.Orig.Src, e.Orig.SrcPort
	}
	if e.Status&StatusDstNAT != 0 {
		r.Src, r.SrcPort = e.Orig.Dst, e.Orig.DstPort
	}
	return r
}

// NewMessage is the ctnetlink payload (nfgenmsg and attributes) that
// creates e with its NAT binding (withNAT) or refreshes an existing entry
// (timeout, state, status: the kernel refuses NAT changes on an update).
func NewMessage(e ctsync.Entry, withNAT bool) ([]byte, error) {
	if e.Proto != unix.IPPROTO_TCP && e.Proto != unix.IPPROTO_UDP {
		return nil, fmt.Errorf("conntrack: protocol %d is not synced", e.Proto)
	}
	fam := byte(unix.AF_INET6)
	if e.Orig.Src.Is4() {
		fam = unix.AF_INET
	}
	b := []byte{fam, 0, 0, 0} // nfgenmsg: family, NFNETLINK_V0, res_id 0
	b = append(b, tupleAttr(ctaTupleOrig, e.Proto, e.Orig)...)
	nat := withNAT && e.Status&(StatusSrcNAT|StatusDstNAT) != 0
	if nat {
		// The reply before the NAT binding: the kernel applies the binding
		// below to it and so sets the NAT status; given the translated
		// reply it would see nothing to translate.
		b = append(b, tupleAttr(ctaTupleRep, e.Proto, Untranslated(e))...)
	} else {
		b = append(b, tupleAttr(ctaTupleRep, e.Proto, e.Reply)...)
	}
	if nat {
		if e.Status&StatusSrcNAT != 0 { // the reply goes to the translated source
			b = append(b, natAttr(ctaNATSrc, e.Reply.Dst, e.Reply.DstPort)...)
		}
		if e.Status&StatusDstNAT != 0 { // the reply comes from the translated destination
			b = append(b, natAttr(ctaNATDst, e.Reply.Src, e.Reply.SrcPort)...)
		}
	}
	b = append(b, attr(ctaTimeout, be32(max(e.Timeout, 1)))...)
	b = append(b, attr(ctaStatus, be32(e.Status&statusSettable|StatusConfirmed))...)
	if e.Mark != 0 {
		b = append(b, attr(ctaMark, be32(e.Mark))...)
	}
	if e.Zone != 0 {
		b = append(b, attr(ctaZone, be16(e.Zone))...)
	}
	if e.Proto == unix.IPPROTO_TCP && e.TCPState != 0 {
		b = append(b, attr(ctaProtoinfo|nested, attr(ctaPInfoTCP|nested, attr(ctaPInfoTCPS, []byte{e.TCPState})))...)
	}
	return b, nil
}

// Install creates e as the master has it (same tuples, same NAT binding),
// or refreshes it when it exists; a delete entry removes it.
func (c *Conn) Install(e ctsync.Entry) error {
	if e.Op == ctsync.OpDelete {
		msg, err := NewMessage(ctsync.Entry{Proto: e.Proto, Orig: e.Orig, Reply: e.Reply, Timeout: 1}, false)
		if err != nil {
			return err
		}
		err = c.exec(msgDelete, 0, msg[:4+len(tupleAttr(ctaTupleOrig, e.Proto, e.Orig))])
		if errors.Is(err, syscall.ENOENT) {
			return nil // gone already: expired here too
		}
		return err
	}
	msg, err := NewMessage(e, true)
	if err != nil {
		return err
	}
	err = c.exec(msgNew, unix.NLM_F_CREATE|unix.NLM_F_EXCL, msg)
	if errors.Is(err, syscall.EEXIST) {
		if msg, err = NewMessage(e, false); err != nil {
			return err
		}
		err = c.exec(msgNew, 0, msg)
		if errors.Is(err, syscall.ENOENT) {
			// The create clashed, yet there is no entry with this
			// original tuple: another entry holds the reply tuple.
			err = fmt.Errorf("another entry holds the reply tuple %s:%d -> %s:%d: %w", e.Reply.Src, e.Reply.SrcPort, e.Reply.Dst, e.Reply.DstPort, syscall.EEXIST)
		}
	}
	if err != nil {
		return fmt.Errorf("conntrack: install %s %s:%d -> %s:%d: %w", protoName(e.Proto), e.Orig.Src, e.Orig.SrcPort, e.Orig.Dst, e.Orig.DstPort, err)
	}
	return nil
}

func protoName(p uint8) string {
	if p == unix.IPPROTO_TCP {
		return "tcp"
	}
	return "udp"
}

func (c *Conn) exec(msgType uint16, flags int, payload []byte) error {
	req := nl.NewNetlinkRequest(int(subsysCT<<8|msgType), flags|unix.NLM_F_ACK)
	c.seq++
	req.Seq = c.seq
	req.AddRawData(payload)
	if err := c.sock.Send(req); err != nil {
		return err
	}
	pid, err := c.sock.GetPid()
	if err != nil {
		return err
	}
	for range 8 {
		msgs, _, err := c.sock.Receive()
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Seq || m.Header.Pid != pid || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(m.Data) < 4 {
				return errors.New("truncated netlink error")
			}
			if errno := int32(binary.NativeEndian.Uint32(m.Data[:4])); errno != 0 {
				return syscall.Errno(-errno)
			}
			return nil
		}
	}
	return errors.New("no answer from ctnetlink")
}

// Watch sends the entries that keep selects (nil: all) as they are
// created, change state or are destroyed (as deletes) until ctx ends or
// the event socket fails (a full socket buffer is ENOBUFS: events were
// lost, so the caller resyncs). It blocks while out is full; the kernel
// then queues events in the socket buffer, which is bounded.
func (c *Conn) Watch(ctx context.Context, keep func(status uint32) bool, out chan<- ctsync.Entry) error {
	ev, err := conntrack.Dial(c.cfg)
	if err != nil {
		return fmt.Errorf("conntrack: dial events: %w", err)
	}
	defer ev.Close()
	_ = ev.SetReadBuffer(8 << 20)
	evs := make(chan conntrack.Event, 256)
	errc, err := ev.Listen(evs, 1, []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTUpdate, netfilter.GroupCTDestroy})
	if err != nil {
		return fmt.Errorf("conntrack: listen: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return fmt.Errorf("conntrack: events: %w", err)
		case e := <-evs:
			if e.Flow == nil {
				continue
			}
			s, ok := FromFlow(*e.Flow)
			if !ok || (keep != nil && !keep(s.Status)) {
				continue
			}
			if e.Type == conntrack.EventDestroy {
				s.Op = ctsync.OpDelete
			}
			select {
			case out <- s:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}
