// Package ipvsnl starts, stops and lists the kernel's IPVS connection
// synchronisation daemons over generic netlink (family "IPVS"), which
// github.com/moby/ipvs does not cover. A master daemon multicasts the
// connections of its network namespace on an interface; a backup daemon
// with the same sync id installs what it hears into its own connection
// table, so a backup that takes over already knows the connections in
// flight.
//
// Numbers follow the kernel's include/uapi/linux/ip_vs.h (IPVS_CMD_*,
// IPVS_CMD_ATTR_DAEMON, IPVS_DAEMON_ATTR_*) and the attribute types of
// ip_vs_daemon_policy in net/netfilter/ipvs/ip_vs_ctl.c.
package ipvsnl

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Generic netlink family and commands (include/uapi/linux/ip_vs.h).
const (
	FamilyName    = "IPVS"
	FamilyVersion = 1

	cmdNewDaemon = 9  // IPVS_CMD_NEW_DAEMON: start a sync daemon
	cmdDelDaemon = 10 // IPVS_CMD_DEL_DAEMON: stop a sync daemon
	cmdGetDaemon = 11 // IPVS_CMD_GET_DAEMON: dump the running daemons

	cmdAttrDaemon = 3 // IPVS_CMD_ATTR_DAEMON: nested daemon attributes
)

// Attributes nested in IPVS_CMD_ATTR_DAEMON (IPVS_DAEMON_ATTR_*).
const (
	daemonAttrState      = 1 // u32: IP_VS_STATE_MASTER / _BACKUP
	daemonAttrMcastIfn   = 2 // NUL-terminated string, < 16 bytes
	daemonAttrSyncID     = 3 // u32
	daemonAttrSyncMaxLen = 4 // u16: UDP payload size
	daemonAttrMcastGroup = 5 // IPv4 address, network order
	daemonAttrMcastGrp6  = 6 // IPv6 address
	daemonAttrMcastPort  = 7 // u16, host order
	daemonAttrMcastTTL   = 8 // u8
)

// Kernel defaults (net/netfilter/ipvs/ip_vs_sync.c) applied to zero fields.
const (
	DefaultPort = 8848 // IP_VS_SYNC_PORT
	DefaultTTL  = 1
)

// DefaultGroup is the kernel's IPv4 sync group (IP_VS_SYNC_GROUP).
var DefaultGroup = netip.AddrFrom4([4]byte{224, 0, 0, 81})

// MaxIfNameLen is the longest interface name the kernel takes
// (IP_VS_IFNAME_MAXLEN 16 with its NUL).
const MaxIfNameLen = 15

// MaxSyncID is the largest sync id: the sync protocol carries it in a byte.
const MaxSyncID = 255

// State is the role of a sync daemon.
type State uint32

// The kernel's IP_VS_STATE_MASTER and IP_VS_STATE_BACKUP.
const (
	Master State = 1
	Backup State = 2
)

func (s State) String() string {
	switch s {
	case Master:
		return "master"
	case Backup:
		return "backup"
	}
	return fmt.Sprintf("state(%d)", uint32(s))
}

// Valid reports whether s is Master or Backup.
func (s State) Valid() bool { return s == Master || s == Backup }

// Daemon is one kernel sync daemon. Zero MaxLen, Group, Port and TTL
// leave the kernel's defaults (payload sized from the interface MTU,
// 224.0.0.81, 8848, 1); List reports the values in effect.
type Daemon struct {
	State     State
	Interface string // multicast interface (the failover bond)
	SyncID    uint8  // master and backup must agree; backups drop other ids
	MaxLen    uint16 // UDP payload size of sync messages
	Group     netip.Addr
	Port      uint16 // base UDP port (the kernel uses Port+thread for more threads)
	TTL       uint8
}

func (d Daemon) String() string {
	g := "default"
	if d.Group.IsValid() {
		g = d.Group.String()
	}
	return fmt.Sprintf("%s on %s sync id %d group %s port %d ttl %d maxlen %d",
		d.State, d.Interface, d.SyncID, g, d.Port, d.TTL, d.MaxLen)
}

// Validate checks what the kernel would reject, with a message naming the
// field.
func (d Daemon) Validate() error {
	if !d.State.Valid() {
		return fmt.Errorf("sync daemon: state %d is neither master (1) nor backup (2)", uint32(d.State))
	}
	if d.Interface == "" {
		return fmt.Errorf("sync daemon: no interface")
	}
	if len(d.Interface) > MaxIfNameLen {
		return fmt.Errorf("sync daemon: interface name %q is longer than %d bytes", d.Interface, MaxIfNameLen)
	}
	for i := 0; i < len(d.Interface); i++ {
		if c := d.Interface[i]; c == 0 || c == '/' || c == ' ' {
			return fmt.Errorf("sync daemon: interface name %q contains %q", d.Interface, c)
		}
	}
	if d.Group.IsValid() && !d.Group.IsMulticast() {
		return fmt.Errorf("sync daemon: group %s is not a multicast address", d.Group)
	}
	if d.Group.Is4In6() {
		return fmt.Errorf("sync daemon: group %s: give IPv4 groups as IPv4", d.Group)
	}
	return nil
}

// genlHeader is struct genlmsghdr: command, version, reserved.
func genlHeader(cmd uint8) []byte { return []byte{cmd, FamilyVersion, 0, 0} }

// appendAttr appends one attribute with its padding.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	var h [attrHdrLen]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(attrHdrLen+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	b = append(b, h[:]...)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func u16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// daemonAttrs encodes the attributes nested in IPVS_CMD_ATTR_DAEMON, in the
// kernel's order. Zero optional fields are left out (kernel default).
func daemonAttrs(d Daemon, full bool) []byte {
	var b []byte
	b = appendAttr(b, daemonAttrState, u32(uint32(d.State)))
	if !full {
		return b // DEL_DAEMON needs the state only
	}
	b = appendAttr(b, daemonAttrMcastIfn, append([]byte(d.Interface), 0))
	b = appendAttr(b, daemonAttrSyncID, u32(uint32(d.SyncID)))
	if d.MaxLen != 0 {
		b = appendAttr(b, daemonAttrSyncMaxLen, u16(d.MaxLen))
	}
	if d.Group.Is4() {
		a := d.Group.As4()
		b = appendAttr(b, daemonAttrMcastGroup, a[:])
	} else if d.Group.Is6() {
		a := d.Group.As16()
		b = appendAttr(b, daemonAttrMcastGrp6, a[:])
	}
	if d.Port != 0 {
		b = appendAttr(b, daemonAttrMcastPort, u16(d.Port))
	}
	if d.TTL != 0 {
		b = appendAttr(b, daemonAttrMcastTTL, []byte{d.TTL})
	}
	return b
}

const nlaFNested = 0x8000

// StartMessage is the generic netlink payload (genlmsghdr and attributes)
// of IPVS_CMD_NEW_DAEMON for d.
func StartMessage(d Daemon) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return appendAttr(genlHeader(cmdNewDaemon), cmdAttrDaemon|nlaFNested, daemonAttrs(d, true)), nil
}

// StopMessage is the payload of IPVS_CMD_DEL_DAEMON for the daemon in state s.
func StopMessage(s State) ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("sync daemon: state %d is neither master (1) nor backup (2)", uint32(s))
	}
	return appendAttr(genlHeader(cmdDelDaemon), cmdAttrDaemon|nlaFNested, daemonAttrs(Daemon{State: s}, false)), nil
}

// ListMessage is the payload of the IPVS_CMD_GET_DAEMON dump request.
func ListMessage() []byte { return genlHeader(cmdGetDaemon) }

// ParseDaemon decodes one reply of the IPVS_CMD_GET_DAEMON dump (a
// genlmsghdr and its attributes). It never panics: truncated or malformed
// input is an error saying what is wrong. Unknown attributes are skipped.
func ParseDaemon(msg []byte) (Daemon, error) {
	var d Daemon
	if len(msg) < 4 {
		return d, fmt.Errorf("ipvs daemon reply: %d bytes, shorter than a generic netlink header", len(msg))
	}
	if msg[0] != cmdNewDaemon {
		return d, fmt.Errorf("ipvs daemon reply: command %d, want %d (IPVS_CMD_NEW_DAEMON)", msg[0], cmdNewDaemon)
	}
	top, err := parseAttrs(msg[4:])
	if err != nil {
		return d, fmt.Errorf("ipvs daemon reply: %w", err)
	}
	var nested []byte
	found := false
	for _, a := range top {
		if a.Type == cmdAttrDaemon {
			nested, found = a.Data, true
		}
	}
	if !found {
		return d, fmt.Errorf("ipvs daemon reply: no IPVS_CMD_ATTR_DAEMON attribute")
	}
	attrs, err := parseAttrs(nested)
	if err != nil {
		return d, fmt.Errorf("ipvs daemon reply: daemon attributes: %w", err)
	}
	haveState := false
	for _, a := range attrs {
		var err error
		switch a.Type {
		case daemonAttrState:
			var v uint32
			v, err = attrU32(a, "state")
			d.State, haveState = State(v), true
		case daemonAttrMcastIfn:
			d.Interface = attrString(a)
		case daemonAttrSyncID:
			var v uint32
			v, err = attrU32(a, "sync id")
			if err == nil && v > MaxSyncID {
				err = fmt.Errorf("sync id %d is above %d", v, MaxSyncID)
			}
			d.SyncID = uint8(v)
		case daemonAttrSyncMaxLen:
			d.MaxLen, err = attrU16(a, "sync maxlen")
		case daemonAttrMcastGroup:
			if len(a.Data) != 4 {
				err = fmt.Errorf("mcast group: %d bytes, want 4", len(a.Data))
			} else {
				d.Group = netip.AddrFrom4([4]byte(a.Data))
			}
		case daemonAttrMcastGrp6:
			if len(a.Data) != 16 {
				err = fmt.Errorf("mcast group6: %d bytes, want 16", len(a.Data))
			} else {
				d.Group = netip.AddrFrom16([16]byte(a.Data))
			}
		case daemonAttrMcastPort:
			d.Port, err = attrU16(a, "mcast port")
		case daemonAttrMcastTTL:
			d.TTL, err = attrU8(a, "mcast ttl")
		}
		if err != nil {
			return Daemon{}, fmt.Errorf("ipvs daemon reply: %w", err)
		}
	}
	if !haveState {
		return Daemon{}, fmt.Errorf("ipvs daemon reply: no state attribute")
	}
	if !d.State.Valid() {
		return Daemon{}, fmt.Errorf("ipvs daemon reply: state %d is neither master nor backup", uint32(d.State))
	}
	return d, nil
}
