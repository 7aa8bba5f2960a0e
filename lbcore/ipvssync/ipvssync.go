// Package ipvssync keeps the kernel's IPVS sync daemons in line with the
// node's VRRP role, so the connections the master forwards are already in
// the backup's IPVS table when it takes over (issue 13, item 1).
//
// Policy (Desired): a node that takes part in VRRP (master, backup or
// fault) runs a backup daemon, so it holds the peer's connections when it
// becomes master; a master or backup also runs a master daemon, so what it
// forwards reaches the peer. The kernel allows one daemon of each kind per
// namespace, and running both at once means no handover (failover,
// switchover or failback) has a window in which one side is restarting its
// daemon: the new master's master daemon is already sending, the new
// backup's backup daemon already receiving. A master daemon on a node
// without traffic sends nothing, a backup daemon on a master receives
// nothing while the peer forwards nothing. A faulted node (tracked bond
// down) forwards nothing, so it only receives. A stopped node (no VRRP,
// shutting down) runs none.
//
// Both daemons use the failover bond and the sync id of the VRRP instance
// (its VRID); the kernel's backup drops messages with another sync id.
// Sync traffic is UDP multicast to Group:Port (default 224.0.0.81:8848)
// with TTL 1, from the failover address.
package ipvssync

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvsnl"
)

// Role is the node's VRRP role as far as sync is concerned.
type Role int

// Roles. Stopped is the zero value: no daemons.
const (
	Stopped Role = iota
	Backup
	Master
	Fault
)

func (r Role) String() string {
	switch r {
	case Stopped:
		return "stopped"
	case Backup:
		return "backup"
	case Master:
		return "master"
	case Fault:
		return "fault"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// Settings are what both daemons are started with.
type Settings struct {
	Interface string // the failover bond
	SyncID    uint8  // the VRRP instance's VRID
	// Optional; zero leaves the kernel default (224.0.0.81, 8848, TTL 1,
	// payload sized from the MTU).
	Group netip.Addr
	Port  uint16
	TTL   uint8
	// MaxLen is the master daemon's message size (the kernel sends a
	// message when the next connection no longer fits, or after 2 s).
	// The backup daemon always takes the kernel's default: its buffer
	// must hold any message, and the kernel raises a smaller one to 1024.
	// The appliance leaves it at the kernel's default: smaller messages
	// did not lower the sync lag (make bench, out/sync-bench.md).
	MaxLen uint16
}

// Validate checks the settings as the kernel would.
func (s Settings) Validate() error {
	return s.daemon(ipvsnl.Master).Validate()
}

func (s Settings) daemon(st ipvsnl.State) ipvsnl.Daemon {
	d := ipvsnl.Daemon{State: st, Interface: s.Interface, SyncID: s.SyncID, Group: s.Group, Port: s.Port, TTL: s.TTL}
	if st == ipvsnl.Master {
		d.MaxLen = s.MaxLen
	}
	return d
}

// Desired is the set of daemons a node in role r runs (see the package
// comment for why).
func Desired(r Role, s Settings) []ipvsnl.Daemon {
	switch r {
	case Master, Backup:
		return []ipvsnl.Daemon{s.daemon(ipvsnl.Master), s.daemon(ipvsnl.Backup)}
	case Fault:
		return []ipvsnl.Daemon{s.daemon(ipvsnl.Backup)}
	}
	return nil
}

// Kernel is what Reconcile needs of an *ipvsnl.Conn.
type Kernel interface {
	Start(ipvsnl.Daemon) error
	Stop(ipvsnl.State) error
	List() ([]ipvsnl.Daemon, error)
}

// matches reports whether a running daemon has the wanted settings; zero
// optional fields accept whatever default the kernel chose.
func matches(running, want ipvsnl.Daemon) bool {
	return running.State == want.State && running.Interface == want.Interface && running.SyncID == want.SyncID &&
		(!want.Group.IsValid() || running.Group == want.Group) &&
		(want.Port == 0 || running.Port == want.Port) &&
		(want.TTL == 0 || running.TTL == want.TTL) &&
		(want.MaxLen == 0 || running.MaxLen == want.MaxLen)
}

// Changes counts what one Reconcile did.
type Changes struct {
	Started, Stopped int
}

// Reconcile makes the kernel's daemons those of Desired(r, s): it starts
// the missing ones, restarts those with other settings (another sync id
// after a config change) and stops the unwanted ones. It carries on past
// a failing step and returns every error joined, with the daemons as
// listed at the end.
func Reconcile(k Kernel, r Role, s Settings) (Changes, []ipvsnl.Daemon, error) {
	var ch Changes
	want := Desired(r, s)
	if len(want) > 0 {
		if err := s.Validate(); err != nil {
			return ch, nil, fmt.Errorf("ipvs sync settings: %w", err)
		}
	}
	running, err := k.List()
	if err != nil {
		return ch, nil, err
	}
	var errs []error
	byState := map[ipvsnl.State]ipvsnl.Daemon{}
	for _, d := range running {
		byState[d.State] = d
	}
	wanted := map[ipvsnl.State]bool{}
	for _, w := range want {
		wanted[w.State] = true
		cur, ok := byState[w.State]
		if ok && matches(cur, w) {
			continue
		}
		if ok {
			if err := k.Stop(w.State); err != nil && !errors.Is(err, ipvsnl.ErrNotRunning) {
				errs = append(errs, fmt.Errorf("restart with new settings: %w", err))
				continue
			}
			ch.Stopped++
		}
		if err := k.Start(w); err != nil {
			errs = append(errs, err)
			continue
		}
		ch.Started++
	}
	for _, d := range running {
		if wanted[d.State] {
			continue
		}
		if err := k.Stop(d.State); err != nil && !errors.Is(err, ipvsnl.ErrNotRunning) {
			errs = append(errs, err)
			continue
		}
		ch.Stopped++
	}
	after, err := k.List()
	if err != nil {
		errs = append(errs, err)
	}
	return ch, after, errors.Join(errs...)
}
