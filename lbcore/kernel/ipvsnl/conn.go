package ipvsnl

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Errors the kernel answers with, made recognisable (errors.Is).
var (
	// ErrRunning: a daemon in that state already runs (EEXIST).
	ErrRunning = errors.New("a sync daemon in that state is already running")
	// ErrNotRunning: no daemon in that state runs (ESRCH).
	ErrNotRunning = errors.New("no sync daemon in that state is running")
	// ErrNoFamily: the kernel has no IPVS generic netlink family (ip_vs
	// not loaded).
	ErrNoFamily = errors.New("no IPVS generic netlink family (is the ip_vs module loaded?)")
)

// Timeout bounds a request the kernel answers at once (family lookup,
// listing): it answers within it or not at all.
const Timeout = 5 * time.Second

// DaemonTimeout bounds starting or stopping a sync daemon: the kernel
// answers only once its threads have started or stopped (kthread_stop
// waits for a master thread to finish sending, and the sockets are
// released under RCU), which took over 5 s on a loaded TCG guest.
const DaemonTimeout = 30 * time.Second

// Conn is a generic netlink socket talking to the IPVS family of one
// network namespace. It is safe for concurrent use.
type Conn struct {
	mu     sync.Mutex
	sock   *nl.NetlinkSocket
	family uint16
	seq    uint32
}

// Open opens a socket in the network namespace at nsPath ("" for the
// caller's) and resolves the IPVS family.
func Open(nsPath string) (*Conn, error) {
	ns := netns.None()
	if nsPath != "" {
		h, err := netns.GetFromPath(nsPath)
		if err != nil {
			return nil, fmt.Errorf("ipvs sync: open namespace %s: %w", nsPath, err)
		}
		defer h.Close()
		ns = h
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("ipvs sync: generic netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(Timeout.Nanoseconds())
	if err := s.SetSendTimeout(&tv); err == nil {
		err = s.SetReceiveTimeout(&tv)
	}
	c := &Conn{sock: s}
	fam, err := c.resolveFamily()
	if err != nil {
		s.Close()
		return nil, err
	}
	c.family = fam
	return c, nil
}

// Close releases the socket. Running daemons keep running.
func (c *Conn) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sock != nil {
		c.sock.Close()
		c.sock = nil
	}
}

// Start starts d. A daemon already running in d.State is ErrRunning, even
// if its settings differ (Stop it first).
func (c *Conn) Start(d Daemon) error {
	msg, err := StartMessage(d)
	if err != nil {
		return err
	}
	if _, err := c.exec(c.family, unix.NLM_F_ACK, msg, DaemonTimeout); err != nil {
		return fmt.Errorf("ipvs sync: start %s: %w", d, explain(err, d))
	}
	return nil
}

// Stop stops the daemon in state s; ErrNotRunning if there is none.
func (c *Conn) Stop(s State) error {
	msg, err := StopMessage(s)
	if err != nil {
		return err
	}
	if _, err := c.exec(c.family, unix.NLM_F_ACK, msg, DaemonTimeout); err != nil {
		return fmt.Errorf("ipvs sync: stop %s daemon: %w", s, explain(err, Daemon{State: s}))
	}
	return nil
}

// List returns the running daemons (at most one master and one backup),
// with the settings in effect.
func (c *Conn) List() ([]Daemon, error) {
	replies, err := c.exec(c.family, unix.NLM_F_DUMP, ListMessage(), Timeout)
	if err != nil {
		return nil, fmt.Errorf("ipvs sync: list daemons: %w", err)
	}
	out := make([]Daemon, 0, len(replies))
	for _, r := range replies {
		d, err := ParseDaemon(r)
		if err != nil {
			return nil, fmt.Errorf("ipvs sync: list daemons: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

func explain(err error, d Daemon) error {
	switch {
	case errors.Is(err, syscall.EEXIST):
		return fmt.Errorf("%w: %w", ErrRunning, err)
	case errors.Is(err, syscall.ESRCH):
		return fmt.Errorf("%w: %w", ErrNotRunning, err)
	case errors.Is(err, syscall.ENODEV):
		return fmt.Errorf("no interface %q in this namespace: %w", d.Interface, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("interface %q has no IPv4 address to send from: %w", d.Interface, err)
	}
	return err
}

// Generic netlink controller (include/uapi/linux/genetlink.h).
const (
	ctrlCmdGetFamily    = 3
	ctrlAttrFamilyID    = 1
	ctrlAttrFamilyName  = 2
	maxRepliesPerAnswer = 64 // a daemon dump has at most 2; bounds a misbehaving peer
)

func (c *Conn) resolveFamily() (uint16, error) {
	msg := appendAttr([]byte{ctrlCmdGetFamily, nl.GENL_CTRL_VERSION, 0, 0}, ctrlAttrFamilyName, append([]byte(FamilyName), 0))
	replies, err := c.exec(nl.GENL_ID_CTRL, unix.NLM_F_ACK, msg, Timeout)
	if errors.Is(err, syscall.ENOENT) {
		return 0, fmt.Errorf("ipvs sync: %w", ErrNoFamily)
	}
	if err != nil {
		return 0, fmt.Errorf("ipvs sync: resolve generic netlink family %s: %w", FamilyName, err)
	}
	for _, r := range replies {
		if len(r) < 4 {
			continue
		}
		attrs, err := parseAttrs(r[4:])
		if err != nil {
			return 0, fmt.Errorf("ipvs sync: family reply: %w", err)
		}
		for _, a := range attrs {
			if a.Type == ctrlAttrFamilyID {
				id, err := attrU16(a, "family id")
				if err != nil {
					return 0, fmt.Errorf("ipvs sync: family reply: %w", err)
				}
				return id, nil
			}
		}
	}
	return 0, fmt.Errorf("ipvs sync: family reply carries no id: %w", ErrNoFamily)
}

// exec sends one request and collects the payloads of the replies of the
// same type, until the ACK, NLMSG_DONE or a non-multipart reply, waiting
// at most wait for them (the socket's own timeout, Timeout, is one wait
// of several).
func (c *Conn) exec(typ uint16, flags int, payload []byte, wait time.Duration) ([][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sock == nil {
		return nil, errors.New("connection closed")
	}
	req := nl.NewNetlinkRequest(int(typ), flags)
	c.seq++
	req.Seq = c.seq
	req.AddRawData(payload)
	if err := c.sock.Send(req); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	pid, err := c.sock.GetPid()
	if err != nil {
		return nil, fmt.Errorf("socket pid: %w", err)
	}
	var out [][]byte
	deadline := time.Now().Add(wait)
	for reads := 0; reads < maxRepliesPerAnswer+2; {
		msgs, from, err := c.sock.Receive()
		if err != nil {
			if errors.Is(err, unix.EAGAIN) && time.Now().Before(deadline) {
				continue // the kernel is still working on it
			}
			return nil, fmt.Errorf("receive (waited up to %v): %w", wait, err)
		}
		reads++
		if from.Pid != nl.PidKernel {
			continue
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Seq || m.Header.Pid != pid {
				continue // a stale answer to an earlier, timed-out request
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				if len(m.Data) >= 4 {
					if errno := int32(nl.NativeEndian().Uint32(m.Data[:4])); errno < 0 {
						return nil, syscall.Errno(-errno)
					}
				}
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, fmt.Errorf("truncated netlink error message (%d bytes)", len(m.Data))
				}
				if errno := int32(nl.NativeEndian().Uint32(m.Data[:4])); errno != 0 {
					return nil, syscall.Errno(-errno)
				}
				return out, nil // the ACK
			case typ:
				if len(out) == maxRepliesPerAnswer {
					return nil, fmt.Errorf("more than %d replies", maxRepliesPerAnswer)
				}
				out = append(out, m.Data)
				if m.Header.Flags&unix.NLM_F_MULTI == 0 && flags&unix.NLM_F_ACK == 0 {
					return out, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("no end of answer after %d reads", maxRepliesPerAnswer+2)
}
