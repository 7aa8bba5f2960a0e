package ipvsnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// TableCmd is an IPVS_CMD_* that changes the virtual server table.
type TableCmd uint8

// The table-changing commands of include/uapi/linux/ip_vs.h.
const (
	NewService TableCmd = 1  // IPVS_CMD_NEW_SERVICE
	SetService TableCmd = 2  // IPVS_CMD_SET_SERVICE
	DelService TableCmd = 3  // IPVS_CMD_DEL_SERVICE
	NewDest    TableCmd = 5  // IPVS_CMD_NEW_DEST
	SetDest    TableCmd = 6  // IPVS_CMD_SET_DEST
	DelDest    TableCmd = 7  // IPVS_CMD_DEL_DEST
	SetConfig  TableCmd = 12 // IPVS_CMD_SET_CONFIG
)

func (c TableCmd) String() string {
	switch c {
	case NewService:
		return "new-service"
	case SetService:
		return "set-service"
	case DelService:
		return "del-service"
	case NewDest:
		return "new-dest"
	case SetDest:
		return "set-dest"
	case DelDest:
		return "del-dest"
	case SetConfig:
		return "set-config"
	}
	return fmt.Sprintf("cmd(%d)", uint8(c))
}

// Top-level and nested attributes (IPVS_CMD_ATTR_*, IPVS_SVC_ATTR_*,
// IPVS_DEST_ATTR_*).
const (
	cmdAttrService       = 1
	cmdAttrDest          = 2
	cmdAttrTimeoutTCP    = 4
	cmdAttrTimeoutTCPFin = 5
	cmdAttrTimeoutUDP    = 6

	svcAttrAF        = 1
	svcAttrProtocol  = 2
	svcAttrAddr      = 3
	svcAttrPort      = 4
	svcAttrFWMark    = 5
	svcAttrSchedName = 6
	svcAttrFlags     = 7
	svcAttrTimeout   = 8
	svcAttrNetmask   = 9
	svcAttrPEName    = 11

	destAttrAddr      = 1
	destAttrPort      = 2
	destAttrFwdMethod = 3
	destAttrWeight    = 4
	destAttrUThresh   = 5
	destAttrLThresh   = 6

	fwdMask = 0x7 // IP_VS_CONN_F_FWD_MASK
)

// Change is one table change: Service for the service commands, Service
// and Dest for the destination commands, Config for SetConfig. The fields
// are github.com/moby/ipvs's, encoded exactly as its Handle encodes them,
// so a batch and a call through moby/ipvs change the kernel the same way.
type Change struct {
	Cmd     TableCmd
	Service *mobyipvs.Service
	Dest    *mobyipvs.Destination
	Config  *mobyipvs.Config
}

func (c Change) String() string {
	switch {
	case c.Cmd == SetConfig:
		return c.Cmd.String()
	case c.Service == nil:
		return c.Cmd.String() + " (no service)"
	case c.Dest == nil:
		return fmt.Sprintf("%s %s", c.Cmd, svcName(c.Service))
	}
	return fmt.Sprintf("%s %s -> %s", c.Cmd, svcName(c.Service), net.JoinHostPort(c.Dest.Address.String(), fmt.Sprint(c.Dest.Port)))
}

func svcName(s *mobyipvs.Service) string {
	if s.FWMark != 0 {
		return fmt.Sprintf("fwmark %d", s.FWMark)
	}
	return fmt.Sprintf("proto %d %s", s.Protocol, net.JoinHostPort(s.Address.String(), fmt.Sprint(s.Port)))
}

// Encode returns the generic netlink payload (genl header and attributes)
// of the change.
func (c Change) Encode() ([]byte, error) {
	b := []byte{byte(c.Cmd), FamilyVersion, 0, 0}
	switch c.Cmd {
	case SetConfig:
		if c.Config == nil {
			return nil, errors.New("set-config without timeouts")
		}
		b = appendAttr(b, cmdAttrTimeoutTCP, u32(uint32(c.Config.TimeoutTCP/time.Second)))
		b = appendAttr(b, cmdAttrTimeoutTCPFin, u32(uint32(c.Config.TimeoutTCPFin/time.Second)))
		return appendAttr(b, cmdAttrTimeoutUDP, u32(uint32(c.Config.TimeoutUDP/time.Second))), nil
	case NewService, SetService, DelService:
		if c.Service == nil {
			return nil, fmt.Errorf("%s without a service", c.Cmd)
		}
		return appendAttr(b, cmdAttrService, encodeService(c.Service)), nil
	case NewDest, SetDest, DelDest:
		if c.Service == nil || c.Dest == nil {
			return nil, fmt.Errorf("%s without a service and a destination", c.Cmd)
		}
		b = appendAttr(b, cmdAttrService, encodeService(c.Service))
		return appendAttr(b, cmdAttrDest, encodeDest(c.Dest)), nil
	}
	return nil, fmt.Errorf("%s is not a table change", c.Cmd)
}

func encodeService(s *mobyipvs.Service) []byte {
	var b []byte
	b = appendAttr(b, svcAttrAF, u16(s.AddressFamily))
	if s.FWMark != 0 {
		b = appendAttr(b, svcAttrFWMark, u32(s.FWMark))
	} else {
		b = appendAttr(b, svcAttrProtocol, u16(s.Protocol))
		b = appendAttr(b, svcAttrAddr, rawIP(s.Address))
		b = appendAttr(b, svcAttrPort, binary.BigEndian.AppendUint16(nil, s.Port))
	}
	b = appendAttr(b, svcAttrSchedName, append([]byte(s.SchedName), 0))
	if s.PEName != "" {
		b = appendAttr(b, svcAttrPEName, append([]byte(s.PEName), 0))
	}
	flags := binary.NativeEndian.AppendUint32(nil, s.Flags) // struct ip_vs_flags {flags, mask}
	b = appendAttr(b, svcAttrFlags, binary.NativeEndian.AppendUint32(flags, 0xffffffff))
	b = appendAttr(b, svcAttrTimeout, u32(s.Timeout))
	return appendAttr(b, svcAttrNetmask, u32(s.Netmask))
}

func encodeDest(d *mobyipvs.Destination) []byte {
	var b []byte
	b = appendAttr(b, destAttrAddr, rawIP(d.Address))
	b = appendAttr(b, destAttrPort, binary.BigEndian.AppendUint16(nil, d.Port))
	b = appendAttr(b, destAttrFwdMethod, u32(d.ConnectionFlags&fwdMask))
	b = appendAttr(b, destAttrWeight, u32(uint32(d.Weight)))
	b = appendAttr(b, destAttrUThresh, u32(d.UpperThreshold))
	return appendAttr(b, destAttrLThresh, u32(d.LowerThreshold))
}

func rawIP(ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

// Batch bounds: a chunk is one sendmsg. The kernel runs a chunk's messages
// in order in the sender's context and queues an error reply for each that
// fails (a copy of the request) plus one ACK for the chunk's last message;
// chunkMessages keeps those replies well inside the socket's receive
// buffer, and chunkBytes inside its send buffer.
const (
	chunkMessages = 128
	chunkBytes    = 64 << 10
)

// ErrNotSent marks the changes of a batch after the chunk that failed.
var ErrNotSent = errors.New("not sent: an earlier change of the batch failed")

// BatchResult says what happened to each change of a batch.
type BatchResult struct {
	// Errs has one entry per change: nil when the kernel made it, the
	// kernel's error when it refused, ErrNotSent when it was never sent.
	Errs []error
	// Unknown is set when the kernel's answer to a chunk could not be read
	// (timeout, overrun): the changes of that chunk whose Errs entry is
	// nil may or may not have been made.
	Unknown error
}

// Failed returns the index and error of the first change that failed, or
// -1 and nil.
func (r BatchResult) Failed() (int, error) {
	for i, err := range r.Errs {
		if err != nil && !errors.Is(err, ErrNotSent) {
			return i, err
		}
	}
	return -1, nil
}

// Batch makes the changes in order, many per round trip: each chunk is one
// sendmsg, answered by the errors of the changes that failed and one ACK.
// It stops after the first chunk with a failure (the kernel has already run
// the rest of that chunk: each change there stands on its own). A change
// that cannot be encoded fails before anything is sent.
func (c *Conn) Batch(changes []Change) (BatchResult, error) {
	res := BatchResult{Errs: make([]error, len(changes))}
	payloads := make([][]byte, len(changes))
	for i, ch := range changes {
		p, err := ch.Encode()
		if err != nil {
			return res, fmt.Errorf("ipvs: change %d (%s): %w", i+1, ch, err)
		}
		payloads[i] = p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sock == nil {
		return res, errors.New("ipvs: connection closed")
	}
	for start := 0; start < len(payloads); {
		end := chunkEnd(payloads, start)
		failed, err := c.runChunk(payloads[start:end], res.Errs[start:end])
		if err != nil {
			res.Unknown = fmt.Errorf("changes %d-%d: %w", start+1, end, err)
			markNotSent(res.Errs[end:])
			return res, nil
		}
		start = end
		if failed {
			markNotSent(res.Errs[start:])
			break
		}
	}
	return res, nil
}

func markNotSent(errs []error) {
	for i := range errs {
		errs[i] = ErrNotSent
	}
}

func chunkEnd(payloads [][]byte, start int) int {
	size := 0
	end := start
	for end < len(payloads) && end-start < chunkMessages {
		n := unix.NLMSG_HDRLEN + align4(len(payloads[end]))
		if end > start && size+n > chunkBytes {
			break
		}
		size += n
		end++
	}
	return end
}

// runChunk sends payloads in one sendmsg and reads the answers until the
// last message's ACK, filling errs. It reports whether any change failed.
func (c *Conn) runChunk(payloads [][]byte, errs []error) (bool, error) {
	first := c.seq + 1
	var buf []byte
	for i, p := range payloads {
		flags := unix.NLM_F_REQUEST
		if i == len(payloads)-1 {
			flags |= unix.NLM_F_ACK
		}
		c.seq++
		buf = binary.NativeEndian.AppendUint32(buf, uint32(unix.NLMSG_HDRLEN+len(p)))
		buf = binary.NativeEndian.AppendUint16(buf, c.family)
		buf = binary.NativeEndian.AppendUint16(buf, uint16(flags))
		buf = binary.NativeEndian.AppendUint32(buf, c.seq)
		buf = binary.NativeEndian.AppendUint32(buf, 0) // port id: the kernel fills ours in
		buf = append(buf, p...)
		for len(buf)%4 != 0 {
			buf = append(buf, 0)
		}
	}
	last := c.seq
	if err := unix.Sendto(c.sock.GetFd(), buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("send: %w", err)
	}
	pid, err := c.sock.GetPid()
	if err != nil {
		return false, fmt.Errorf("socket pid: %w", err)
	}
	failed := false
	for range len(payloads) + 2 {
		msgs, from, err := c.sock.Receive()
		if err != nil {
			return failed, fmt.Errorf("receive: %w", err)
		}
		if from.Pid != nl.PidKernel {
			continue
		}
		for _, m := range msgs {
			seq := m.Header.Seq
			if m.Header.Pid != pid || m.Header.Type != unix.NLMSG_ERROR || seq < first || seq > last {
				continue // not an answer to this chunk
			}
			if len(m.Data) < 4 {
				return failed, fmt.Errorf("truncated netlink error message (%d bytes)", len(m.Data))
			}
			if errno := int32(binary.NativeEndian.Uint32(m.Data[:4])); errno != 0 {
				errs[seq-first] = syscall.Errno(-errno)
				failed = true
			}
			if seq == last {
				return failed, nil
			}
		}
	}
	return failed, fmt.Errorf("no ACK for the chunk after %d reads", len(payloads)+2)
}
