// Package fsm is the VRRP protocol state machine (RFC 5798 section 6.4, and
// RFC 3768 for version 2) as pure logic: the caller passes the current time
// into every call and carries out the returned actions (send an advert, move
// the virtual addresses, announce them). It has no goroutines, sockets or
// clock of its own, so every rule is unit-testable.
package fsm

import (
	"fmt"
	"net/netip"
	"time"
)

// State is a VRRP state.
type State int

// VRRP states. Fault is entered when a tracked bond fails.
const (
	Init State = iota
	Backup
	Master
	Fault
)

func (s State) String() string {
	switch s {
	case Init:
		return "INIT"
	case Backup:
		return "BACKUP"
	case Master:
		return "MASTER"
	case Fault:
		return "FAULT"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// OwnerPriority is the priority of the address owner, which is master at once.
const OwnerPriority = 255

// Params configure a machine.
type Params struct {
	Version  int           // 2 or 3: v3 learns the master's advert interval
	Priority int           // 1..255
	Interval time.Duration // own advertisement interval
	Preempt  bool
	// PreemptDelay holds preemption of a lower-priority master off for this
	// long after Start or after leaving FAULT.
	PreemptDelay time.Duration
	// WaitSync makes preemption wait until SetSynced(true) says this
	// router holds the master's connection table (conntrack sync, issue
	// 13 item 4), so taking over loses no connection. PreemptDelay is then
	// only the safety net: the longest the wait lasts when sync never
	// completes.
	WaitSync bool
	// Primary is this router's own address the adverts come from, which
	// breaks ties between masters of equal priority.
	Primary netip.Addr
	// HandoverHold is how long a master handing over (Switchover) keeps
	// the addresses after the new master's first advert, so the new master
	// has announced them before the old one lets go. Default 2 intervals.
	HandoverHold time.Duration
}

// Advert is what the machine needs of a received (already validated) advert.
type Advert struct {
	Priority int
	Interval time.Duration
	Src      netip.Addr
}

// ActionKind says what the caller must do.
type ActionKind int

// Actions.
const (
	// SendAdvert: send an advertisement with Action.Priority.
	SendAdvert ActionKind = iota
	// Transition: the state changed from Action.From to Action.To. Entering
	// MASTER means add the virtual addresses and announce them (gratuitous
	// ARP / unsolicited NA); leaving MASTER means remove them.
	Transition
	// Announce: send gratuitous ARP / unsolicited NA again now (another
	// master was seen and lost the election: make the network converge).
	Announce
)

// Action is one thing for the caller to do, in order.
type Action struct {
	Kind     ActionKind
	Priority int   // SendAdvert
	From, To State // Transition
	Reason   string
}

func (a Action) String() string {
	switch a.Kind {
	case SendAdvert:
		return fmt.Sprintf("send-advert(prio=%d)", a.Priority)
	case Transition:
		return fmt.Sprintf("%s->%s(%s)", a.From, a.To, a.Reason)
	case Announce:
		return "announce(" + a.Reason + ")"
	}
	return "?"
}

// Machine is one VRRP router's state for one virtual router.
type Machine struct {
	p        Params
	state    State
	priority int // effective priority (tracking may lower it)

	masterAdverInterval time.Duration
	masterDownAt        time.Time // BACKUP
	adverAt             time.Time // MASTER
	preemptFrom         time.Time
	holdPreempt         bool // manual switchover: do not take back
	synced              bool // WaitSync: the peer's table is here
	handover            handover
	peerPriority        int // of the last advert heard from another router (0: none)
	master              netip.Addr
}

// handover is a manual switchover in progress (make-before-break): the
// master stays master, advertising priority 0, until another router's
// advert shows it took over; then it keeps the addresses for
// Params.HandoverHold more and becomes backup. If no one takes over by
// giveUpAt, it stays master.
type handover struct {
	active    bool
	giveUpAt  time.Time
	releaseAt time.Time // zero until the new master is heard
}

// New returns a machine in INIT.
func New(p Params) *Machine {
	return &Machine{p: p, priority: p.Priority, masterAdverInterval: p.Interval}
}

// State is the current state.
func (m *Machine) State() State { return m.state }

// Priority is the effective priority.
func (m *Machine) Priority() int { return m.priority }

// MasterAdverInterval is the interval learned from the master (v3), or the
// own interval.
func (m *Machine) MasterAdverInterval() time.Duration { return m.masterAdverInterval }

// Master is the address of the last master heard from (invalid if none, or
// this router when it is master).
func (m *Machine) Master() netip.Addr { return m.master }

// SkewTime is (256-Priority) × Master_Adver_Interval / 256 (v3), or
// (256-Priority)/256 s (v2).
func (m *Machine) SkewTime() time.Duration {
	if m.p.Version == 2 {
		return time.Duration(256-m.priority) * time.Second / 256
	}
	return time.Duration(256-m.priority) * m.masterAdverInterval / 256
}

// MasterDownInterval is 3 × Master_Adver_Interval + Skew_Time.
func (m *Machine) MasterDownInterval() time.Duration {
	return 3*m.masterAdverInterval + m.SkewTime()
}

// Deadline is when Tick must next be called (zero when no timer runs).
func (m *Machine) Deadline() time.Time {
	switch m.state {
	case Backup:
		return m.masterDownAt
	case Master:
		h := m.handover
		switch {
		case h.active && !h.releaseAt.IsZero():
			return h.releaseAt
		case h.active && h.giveUpAt.Before(m.adverAt):
			return h.giveUpAt
		}
		return m.adverAt
	}
	return time.Time{}
}

// PeerOutranks reports whether the last other router heard advertised a
// higher priority than this one's: in a split brain (the two masters no
// longer hear each other) it tells the lower-priority master it is the one
// that should yield.
func (m *Machine) PeerOutranks() bool { return m.peerPriority > m.priority }

// HandingOver reports whether a switchover is in progress (still master,
// waiting for the peer to take over).
func (m *Machine) HandingOver() bool { return m.handover.active }

func (m *Machine) to(s State, why string, acts []Action) []Action {
	if s == m.state {
		return acts
	}
	a := Action{Kind: Transition, From: m.state, To: s, Reason: why}
	m.state = s
	return append(acts, a)
}

func (m *Machine) becomeMaster(now time.Time, why string, acts []Action) []Action {
	acts = append(acts, Action{Kind: SendAdvert, Priority: m.priority})
	m.adverAt = now.Add(m.p.Interval)
	m.masterDownAt = time.Time{}
	m.holdPreempt = false
	m.master = netip.Addr{}
	return m.to(Master, why, acts)
}

func (m *Machine) becomeBackup(now time.Time, why string, acts []Action) []Action {
	m.handover = handover{}
	m.masterDownAt = now.Add(m.MasterDownInterval())
	m.adverAt = time.Time{}
	return m.to(Backup, why, acts)
}

// Start leaves INIT: the address owner becomes master at once, everyone else
// backup.
func (m *Machine) Start(now time.Time) []Action {
	if m.state != Init {
		return nil
	}
	m.preemptFrom = now.Add(m.p.PreemptDelay)
	m.masterAdverInterval = m.p.Interval
	if m.priority == OwnerPriority {
		return m.becomeMaster(now, "address owner", nil)
	}
	return m.becomeBackup(now, "startup", nil)
}

// Resume leaves INIT straight for MASTER, advertising at once: the daemon
// was restarted on the master and still holds the virtual addresses, so it
// carries on instead of starting as backup and letting the peer take over
// (and then preempting back: a double failover). If the peer has taken
// over meanwhile, the normal election sorts the two masters out.
func (m *Machine) Resume(now time.Time) []Action {
	if m.state != Init {
		return nil
	}
	m.preemptFrom = now.Add(m.p.PreemptDelay)
	m.masterAdverInterval = m.p.Interval
	return m.becomeMaster(now, "resumed: this node still holds the virtual addresses", nil)
}

// Tick fires the timers that are due at now.
func (m *Machine) Tick(now time.Time) []Action {
	switch m.state {
	case Backup:
		if !now.Before(m.masterDownAt) {
			return m.becomeMaster(now, "master down timer expired", nil)
		}
	case Master:
		if m.handover.active {
			return m.tickHandover(now)
		}
		if !now.Before(m.adverAt) {
			m.adverAt = now.Add(m.p.Interval)
			return []Action{{Kind: SendAdvert, Priority: m.priority}}
		}
	}
	return nil
}

func (m *Machine) tickHandover(now time.Time) []Action {
	h := &m.handover
	switch {
	case !h.releaseAt.IsZero():
		if now.Before(h.releaseAt) {
			return nil
		}
		return m.becomeBackup(now, fmt.Sprintf("manual switchover: %s is master and has announced the addresses", m.master), nil)
	case !now.Before(h.giveUpAt):
		// Nobody took over: stay master and say so to the network.
		m.handover, m.holdPreempt = handover{}, false
		m.adverAt = now.Add(m.p.Interval)
		return []Action{{Kind: SendAdvert, Priority: m.priority}, {Kind: Announce, Reason: "manual switchover: no peer took over; staying master"}}
	case !now.Before(m.adverAt):
		m.adverAt = now.Add(m.p.Interval)
		return []Action{{Kind: SendAdvert, Priority: 0}}
	}
	return nil
}

// higher reports whether the advert wins against this router: higher
// priority, or equal priority from a higher primary address.
func (m *Machine) higher(a Advert) bool {
	if a.Priority != m.priority {
		return a.Priority > m.priority
	}
	return a.Src.Compare(m.p.Primary) > 0
}

func (m *Machine) preempts(now time.Time) bool {
	if !m.p.Preempt || m.holdPreempt {
		return false
	}
	if m.p.WaitSync && m.synced {
		return true
	}
	return !now.Before(m.preemptFrom)
}

// SetSynced records whether this router holds the master's connection
// table (see Params.WaitSync).
func (m *Machine) SetSynced(s bool) { m.synced = s }

// Receive processes a valid advert for this virtual router from another
// router.
func (m *Machine) Receive(now time.Time, a Advert) []Action {
	if a.Priority > 0 {
		m.peerPriority = a.Priority
	}
	switch m.state {
	case Backup:
		if a.Priority == 0 {
			m.masterDownAt = now.Add(m.SkewTime())
			m.master = netip.Addr{}
			return nil
		}
		if !m.preempts(now) || a.Priority >= m.priority {
			if m.p.Version == 3 && a.Interval > 0 {
				m.masterAdverInterval = a.Interval
			}
			m.masterDownAt = now.Add(m.MasterDownInterval())
			m.master = a.Src
		}
		// else: a lower-priority master and we preempt: ignore it and
		// let the master down timer make us master.
		return nil
	case Master:
		if m.handover.active {
			// Handing over: the first advert of a new master starts
			// the hold; the old master says nothing more (an advert at
			// its own priority would make the new master step down).
			if a.Priority > 0 && m.handover.releaseAt.IsZero() {
				m.master = a.Src
				m.handover.releaseAt = now.Add(m.handoverHold())
			}
			return nil
		}
		if a.Priority == 0 {
			m.adverAt = now.Add(m.p.Interval)
			return []Action{{Kind: SendAdvert, Priority: m.priority}}
		}
		if m.higher(a) {
			if m.p.Version == 3 && a.Interval > 0 {
				m.masterAdverInterval = a.Interval
			}
			m.master = a.Src
			// One last advert at our own priority tells the winner that
			// there were two masters (a healed split brain), so it
			// announces the addresses again and the network converges on
			// it even when its own advert reached us first. RFC 5798
			// masters discard it; keepalived re-announces like we do.
			acts := []Action{{Kind: SendAdvert, Priority: m.priority}}
			return m.becomeBackup(now, fmt.Sprintf("higher-priority master %s (priority %d)", a.Src, a.Priority), acts)
		}
		// Another master that loses: tell it at once and make the network
		// forget it (split brain healing).
		m.adverAt = now.Add(m.p.Interval)
		return []Action{
			{Kind: SendAdvert, Priority: m.priority},
			{Kind: Announce, Reason: fmt.Sprintf("lower-priority master %s (priority %d) seen", a.Src, a.Priority)},
		}
	}
	return nil
}

// SetPriority changes the effective priority (tracking). It takes effect in
// the next advert and election.
func (m *Machine) SetPriority(p int) {
	if p < 1 {
		p = 1
	}
	if p > OwnerPriority {
		p = OwnerPriority
	}
	m.priority = p
}

// SetFault enters (true) or leaves (false) FAULT. A master giving up sends
// a priority-0 advert so the backup takes over at once.
func (m *Machine) SetFault(now time.Time, fault bool, why string) []Action {
	if fault {
		if m.state == Fault {
			return nil
		}
		var acts []Action
		if m.state == Master {
			acts = append(acts, Action{Kind: SendAdvert, Priority: 0})
		}
		m.masterDownAt, m.adverAt = time.Time{}, time.Time{}
		m.master = netip.Addr{}
		m.handover = handover{}
		return m.to(Fault, why, acts)
	}
	if m.state != Fault {
		return nil
	}
	m.preemptFrom = now.Add(m.p.PreemptDelay)
	m.masterAdverInterval = m.p.Interval
	if m.priority == OwnerPriority {
		return m.becomeMaster(now, "fault cleared, address owner", nil)
	}
	return m.becomeBackup(now, "fault cleared: "+why, nil)
}

// Switchover makes a master hand over to its peer, make-before-break: it
// advertises priority 0 (every interval) but keeps the addresses until the
// peer's first advert as master plus HandoverHold, then becomes backup
// and does not preempt back until it becomes master again (the peer fails)
// or ResumePreempt is called. If no peer takes over within 3 intervals
// plus one second, the switchover is abandoned and it stays master.
func (m *Machine) Switchover(now time.Time) ([]Action, error) {
	if m.state != Master {
		return nil, fmt.Errorf("switchover: not master (%s)", m.state)
	}
	if m.priority == OwnerPriority {
		return nil, fmt.Errorf("switchover: the address owner (priority 255) cannot hand over")
	}
	if m.handover.active {
		return nil, fmt.Errorf("switchover: already handing over")
	}
	m.holdPreempt = true
	m.handover = handover{active: true, giveUpAt: now.Add(3*m.p.Interval + time.Second)}
	m.adverAt = now.Add(m.p.Interval)
	return []Action{{Kind: SendAdvert, Priority: 0}}, nil
}

func (m *Machine) handoverHold() time.Duration {
	if m.p.HandoverHold > 0 {
		return m.p.HandoverHold
	}
	return 2 * m.p.Interval
}

// ResumePreempt ends the preemption hold of a manual switchover.
func (m *Machine) ResumePreempt() { m.holdPreempt = false }

// Shutdown returns to INIT; a master resigns with a priority-0 advert.
func (m *Machine) Shutdown(now time.Time) []Action {
	var acts []Action
	if m.state == Master {
		acts = append(acts, Action{Kind: SendAdvert, Priority: 0})
	}
	m.masterDownAt, m.adverAt = time.Time{}, time.Time{}
	m.handover = handover{}
	return m.to(Init, "shutdown", acts)
}
