package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/packet"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// session is what Run opens: sockets, netlink handle, announcers.
type session struct {
	n         *Node
	h         *netlink.Handle
	hb        *net.Interface
	conns     map[bool]*conn // by v6
	primary   map[bool]netip.Addr
	announce  map[config.Group]*announcer
	peers     map[bool][]netip.Addr // unicast destinations
	accept    []netip.Addr          // advert sources accepted (empty: any)
	strangers strangerLog
	trackUp   map[config.Group]bool
	vipLinkUp map[string]bool // links carrying virtual addresses, by name
	faultWhy  string
	virtual   map[netip.Addr]bool
	refreshIv time.Duration
}

// Run runs the node until ctx ends, then resigns: a master sends a
// priority-0 advert and removes its virtual addresses. It returns an error
// if the node cannot start or its sockets fail.
func (n *Node) Run(ctx context.Context) error {
	rt, err := n.open(ctx)
	if err != nil {
		return err
	}
	defer rt.close()
	n.rt = rt
	defer func() { n.rt = nil }()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ev := events{claims: make(chan foreignClaim, 16)}
	ev.pkts, ev.readErr = rt.readAdverts(ctx)
	for _, a := range rt.announce {
		go a.watchARP(rt.virtual, ev.claims, ctx.Done())
	}
	linkDone := make(chan struct{})
	defer close(linkDone)
	if ev.links, err = n.subscribeLinks(ctx, linkDone); err != nil {
		return err
	}
	n.start(rt, time.Now())
	return n.loop(ctx, rt, ev)
}

// events are what the node's loop waits on besides its timer and commands.
type events struct {
	pkts    <-chan rawPacket
	readErr <-chan error
	links   <-chan netlink.LinkUpdate
	claims  chan foreignClaim
}

// readAdverts reads every advert socket until ctx ends; a read error
// before that goes to the error channel.
func (rt *session) readAdverts(ctx context.Context) (<-chan rawPacket, <-chan error) {
	pkts := make(chan rawPacket, 64)
	readErr := make(chan error, 2)
	for _, c := range rt.conns {
		go func(c *conn) {
			buf := make([]byte, 1500)
			for {
				p, err := c.read(buf)
				if err != nil {
					if ctx.Err() == nil {
						readErr <- fmt.Errorf("vrrp: read: %w", err)
					}
					return
				}
				select {
				case pkts <- p:
				case <-ctx.Done():
					return
				}
			}
		}(c)
	}
	return pkts, readErr
}

// subscribeLinks subscribes to link updates (existing links first) in the
// node's namespace until done is closed.
func (n *Node) subscribeLinks(ctx context.Context, done chan struct{}) (<-chan netlink.LinkUpdate, error) {
	links := make(chan netlink.LinkUpdate, 32)
	ns := n.opts.netNS()
	opt := netlink.LinkSubscribeOptions{ListExisting: true, ErrorCallback: func(err error) {
		if ctx.Err() == nil {
			n.log.WithError(err).Warn("vrrp: link updates")
		}
	}}
	if ns.IsOpen() {
		opt.Namespace = &ns
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, opt); err != nil {
		return nil, fmt.Errorf("vrrp: subscribe to link updates: %w", err)
	}
	return links, nil
}

// start gives every instance its state machine and starts it: as master
// if a previous run left its addresses here, else as backup (or in FAULT
// if tracking says so), removing addresses a previous run left behind.
func (n *Node) start(rt *session, now time.Time) {
	for _, in := range n.insts {
		c := n.opts.Config
		in.m = fsm.New(fsm.Params{
			Version:      c.Version,
			Priority:     in.base,
			Interval:     config.AdvertDuration(in.cfg.AdvertInterval),
			Preempt:      c.PreemptEnabled(),
			PreemptDelay: n.preemptDelay(),
			WaitSync:     n.opts.WaitSync,
			Primary:      rt.primary[in.v6],
			HandoverHold: handoverHold(c, in.cfg.AdvertInterval),
		})
	}
	resume := rt.heldByPreviousRun()
	if n.opts.PreviousRunHung && len(resume) > 0 {
		n.log.Warn("vrrp: the previous run was killed as hung: giving up the virtual addresses it left, starting as backup")
		resume = nil
	}
	rt.applyTracking(now) // may put instances in FAULT before they start
	for _, in := range n.insts {
		switch {
		case in.m.State() == fsm.Init && resume[in]:
			n.log.WithField("instance", in.cfg.Name).Warn("vrrp: the virtual addresses are still here (vrrpd restarted on the master): resuming as master")
			rt.handle(in, now, in.m.Resume(now))
		case in.m.State() == fsm.Init:
			rt.handle(in, now, in.m.Start(now))
		}
		if in.m.State() != fsm.Master {
			rt.removeAddresses(in, "clean up addresses a previous run left behind")
		}
	}
	n.log.WithField("instances", n.String()).Info("vrrp: node running")
}

// loop ticks the state machines, sends heartbeats and handles events
// until ctx ends (then the node resigns) or a socket fails.
func (n *Node) loop(ctx context.Context, rt *session, ev events) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	beatEvery := n.opts.HeartbeatEvery
	if beatEvery <= 0 {
		beatEvery = time.Second
	}
	var beatAt time.Time
	for {
		now := time.Now()
		for _, in := range n.insts {
			rt.handle(in, now, in.m.Tick(now))
			rt.pumpGARP(in, now)
		}
		n.publish()
		wait := time.Hour
		if d := rt.deadline(); !d.IsZero() {
			wait = max(time.Until(d), 0)
		}
		if n.opts.Heartbeat != nil {
			if !now.Before(beatAt) {
				n.opts.Heartbeat()
				beatAt = now.Add(beatEvery)
			}
			wait = min(wait, max(beatAt.Sub(now), 0))
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			now = time.Now()
			for _, in := range n.insts {
				rt.handle(in, now, in.m.Shutdown(now))
			}
			n.publish()
			n.log.Info("vrrp: node stopped")
			return nil
		case err := <-ev.readErr:
			return err
		case p := <-ev.pkts:
			rt.receive(time.Now(), p)
		case u := <-ev.links:
			rt.linkUpdate(time.Now(), u)
		case c := <-ev.claims:
			rt.foreignClaimSeen(time.Now(), c)
		case f := <-n.cmds:
			f(time.Now())
		case <-timer.C:
		}
	}
}

func (n *Node) open(ctx context.Context) (*session, error) {
	rt := &session{n: n, conns: map[bool]*conn{}, primary: map[bool]netip.Addr{}, announce: map[config.Group]*announcer{},
		peers: map[bool][]netip.Addr{}, trackUp: map[config.Group]bool{}, vipLinkUp: map[string]bool{}, virtual: map[netip.Addr]bool{},
		refreshIv: n.opts.Config.GARP.RefreshInterval()}
	// Route family only: a default handle also opens NETLINK_XFRM, which
	// fails on the appliance (xfrm_user is not loaded, nor needed).
	var err error
	if n.opts.netNS().IsOpen() {
		rt.h, err = netlink.NewHandleAt(n.opts.netNS(), unix.NETLINK_ROUTE)
	} else {
		rt.h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("vrrp: netlink: %w", err)
	}
	fail := func(err error) (*session, error) { rt.close(); return nil, err }
	ifs := n.opts.Interfaces
	if rt.hb, err = linkInterface(rt.h, ifs.Heartbeat); err != nil {
		return fail(fmt.Errorf("vrrp heartbeat: %w", err))
	}
	rt.accept = n.opts.Config.AcceptFrom()
	if len(rt.accept) == 0 {
		n.log.Warn("vrrp: no peers configured: adverts are accepted from any host on the failover segment")
	}
	for _, s := range n.opts.Config.UnicastPeers {
		a := s.Addr
		rt.peers[a.Is6()] = append(rt.peers[a.Is6()], a)
	}
	if err := rt.openConns(ctx); err != nil {
		return fail(err)
	}
	if err := rt.openAnnouncers(); err != nil {
		return fail(err)
	}
	for _, t := range n.opts.Config.Track {
		l, err := rt.h.LinkByName(ifs.ForGroup(t.Group))
		rt.trackUp[t.Group] = err == nil && linkUp(l)
	}
	return rt, nil
}

// openConns opens one advert socket per address family the instances
// use and finds the heartbeat link's primary address for it.
func (rt *session) openConns(ctx context.Context) error {
	n := rt.n
	for _, in := range n.insts {
		for _, a := range in.addrs {
			rt.virtual[a.Addr] = true
		}
	}
	for _, in := range n.insts {
		if _, ok := rt.conns[in.v6]; ok {
			continue
		}
		multicast := len(rt.peers[in.v6]) == 0
		var c *conn
		if err := inNS(n.opts.netNS(), func() (err error) { c, err = openConn(rt.hb, in.v6, multicast); return err }); err != nil {
			return fmt.Errorf("vrrp: %w", err)
		}
		rt.conns[in.v6] = c
		// An IPv6 link-local address may still be in duplicate address
		// detection right after the link came up.
		for try := 0; ; try++ {
			a, err := primaryAddr(rt.h, rt.hb, in.v6, rt.virtual)
			if err == nil {
				rt.primary[in.v6] = a
				break
			}
			if try >= 50 || ctx.Err() != nil {
				return fmt.Errorf("vrrp: %w", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// openAnnouncers opens a gratuitous ARP / NA announcer on each group's
// link that carries virtual addresses, for the families it carries.
func (rt *session) openAnnouncers() error {
	n := rt.n
	type need struct{ v4, v6 bool }
	groups := map[config.Group]*need{}
	for _, in := range n.insts {
		for _, a := range in.addrs {
			g := groups[a.Group]
			if g == nil {
				g = &need{}
				groups[a.Group] = g
			}
			if a.Addr.Is4() {
				g.v4 = true
			} else {
				g.v6 = true
			}
		}
	}
	for g, nd := range groups {
		ifi, err := linkInterface(rt.h, n.opts.Interfaces.ForGroup(g))
		if err != nil {
			return fmt.Errorf("vrrp %s group: %w", g, err)
		}
		var a *announcer
		if err := inNS(n.opts.netNS(), func() (err error) { a, err = openAnnouncer(ifi, nd.v4, nd.v6); return err }); err != nil {
			return fmt.Errorf("vrrp: %w", err)
		}
		rt.announce[g] = a
		l, err := rt.h.LinkByName(ifi.Name)
		rt.vipLinkUp[ifi.Name] = err == nil && linkUp(l)
	}
	return nil
}

// heldByPreviousRun finds the instances whose virtual addresses a previous
// run of this node left in place (it was master and did not resign: killed,
// crashed). Any one address present counts: the node was master.
func (rt *session) heldByPreviousRun() map[*instance]bool {
	held := map[*instance]bool{}
	for _, in := range rt.n.insts {
		for _, a := range in.addrs {
			ok, err := holdsAddress(rt.h, rt.n.opts.Interfaces, a)
			if err != nil {
				rt.n.log.WithError(err).Warn("vrrp: look for addresses of a previous run")
			}
			if ok {
				held[in] = true
				break
			}
		}
	}
	return held
}

func (rt *session) removeAddresses(in *instance, why string) {
	for _, a := range in.addrs {
		if err := setAddress(rt.h, rt.n.opts.Interfaces, a, false); err != nil {
			rt.n.log.WithError(err).WithField("instance", in.cfg.Name).Warn("vrrp: " + why)
		}
	}
}

func (rt *session) close() {
	for _, c := range rt.conns {
		c.Close()
	}
	for _, a := range rt.announce {
		a.Close()
	}
	if rt.h != nil {
		rt.h.Close()
	}
}

// handle carries out the state machine's actions for one instance.
func (rt *session) handle(in *instance, now time.Time, acts []fsm.Action) {
	n := rt.n
	for _, a := range acts {
		switch a.Kind {
		case fsm.SendAdvert:
			rt.sendAdvert(in, a.Priority)
		case fsm.Announce:
			n.log.WithField("instance", in.cfg.Name).Info("vrrp: " + a.Reason + "; announcing again")
			in.garpLeft, in.garpAt = n.opts.Config.GARP.Repeat, now
			in.followUp = now.Add(garpFollowUp)
		case fsm.Transition:
			log := n.log.WithFields(logrus.Fields{"instance": in.cfg.Name, "vrid": in.cfg.VRID, "from": a.From, "to": a.To})
			log.Info("vrrp: state change: " + a.Reason)
			if a.To == fsm.Master {
				for _, ad := range in.addrs {
					if err := setAddress(rt.h, n.opts.Interfaces, ad, true); err != nil {
						log.WithError(err).Error("vrrp: add virtual address")
					}
				}
				in.garpLeft, in.garpAt = n.opts.Config.GARP.Repeat, now
				in.followUp = now.Add(garpFollowUp)
				in.refresh = now.Add(rt.refreshIv)
			}
			if a.From == fsm.Master {
				in.garpLeft = 0
				in.followUp = time.Time{}
				for _, ad := range in.addrs {
					if err := setAddress(rt.h, n.opts.Interfaces, ad, false); err != nil {
						log.WithError(err).Error("vrrp: remove virtual address")
					}
				}
			}
			n.emit(Event{Time: now, Instance: in.cfg.Name, VRID: in.cfg.VRID, From: a.From, To: a.To, Reason: a.Reason})
		}
	}
	if len(acts) > 0 {
		rt.pumpGARP(in, now)
	}
}

func (rt *session) sendAdvert(in *instance, prio int) {
	n := rt.n
	c := rt.conns[in.v6]
	src := rt.primary[in.v6]
	adv := packet.Advert{Version: n.opts.Config.Version, VRID: uint8(in.cfg.VRID), Priority: uint8(prio), Interval: in.cfg.AdvertInterval, Addrs: in.hbAddrs}
	dsts := rt.peers[in.v6]
	if len(dsts) == 0 {
		dsts = []netip.Addr{packet.GroupIPv4}
		if in.v6 {
			dsts = []netip.Addr{packet.GroupIPv6}
		}
	}
	for _, d := range dsts {
		b, err := adv.Marshal(src, d)
		if err == nil {
			err = c.write(b, src, d)
		}
		if err != nil {
			n.count(CounterTxError)
			n.log.WithError(err).WithField("instance", in.cfg.Name).Debug("vrrp: send advert")
			continue
		}
		n.count(CounterTx)
	}
}

// handoverHold is how long a master handing over keeps the addresses after
// the new master's first advert: long enough for the new master's
// announcement burst (garp.repeat × garp.interval), at least two adverts.
func handoverHold(c config.VRRP, advertCS int) time.Duration {
	return max(time.Duration(c.GARP.Repeat)*c.GARP.Interval.D(), 2*config.AdvertDuration(advertCS))
}

// garpFollowUp is when the one extra announcement after a takeover burst
// goes out (keepalived sends a second burst after garp_master_delay, 5 s;
// we send one announcement, sooner).
const garpFollowUp = 2 * time.Second

// pumpGARP sends the announcements that are due: the burst after takeover,
// then the periodic refresh.
func (rt *session) pumpGARP(in *instance, now time.Time) {
	if in.m.State() != fsm.Master || in.m.HandingOver() {
		return // handing over: announcing now would pull traffic back
	}
	g := rt.n.opts.Config.GARP
	send := false
	if in.garpLeft > 0 && !now.Before(in.garpAt) {
		in.garpLeft--
		in.garpAt = now.Add(g.Interval.D())
		send = true
	} else if in.garpLeft == 0 && !in.followUp.IsZero() && !now.Before(in.followUp) {
		in.followUp = time.Time{}
		send = !rt.refreshHeld(in, now)
	} else if in.garpLeft == 0 && rt.refreshIv > 0 && !now.Before(in.refresh) {
		send = !rt.refreshHeld(in, now)
		in.refresh = now.Add(rt.refreshIv)
	}
	if !send {
		return
	}
	in.refresh = now.Add(rt.refreshIv)
	for _, a := range in.addrs {
		if err := rt.announce[a.Group].announce(a.Addr); err != nil {
			rt.n.log.WithError(err).WithField("addr", a.Addr).Warn("vrrp: announce")
		}
	}
}

func (rt *session) deadline() time.Time {
	var d time.Time
	min := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	for _, in := range rt.n.insts {
		min(in.m.Deadline())
		if in.m.State() == fsm.Master && !in.m.HandingOver() {
			if in.garpLeft > 0 {
				min(in.garpAt)
			} else {
				min(in.followUp)
				if rt.refreshIv > 0 {
					min(in.refresh)
				}
			}
		}
	}
	return d
}

// receive validates a packet and feeds it to its instance.
func (rt *session) receive(now time.Time, p rawPacket) {
	n := rt.n
	n.count(CounterRx)
	v6 := p.src.Is6()
	switch {
	case p.ifIndex != 0 && p.ifIndex != rt.hb.Index:
		n.drop(DropInterface, p, fmt.Errorf("arrived on interface %d, not %s", p.ifIndex, rt.hb.Name))
		return
	case p.src == rt.primary[v6]:
		n.drop(DropOwn, p, errors.New("own advert"))
		return
	case p.ttl != packet.TTL:
		n.drop(DropTTL, p, fmt.Errorf("TTL/hop limit %d, not 255", p.ttl))
		return
	}
	if len(rt.accept) > 0 && !contains(rt.accept, p.src) {
		rt.strangerDropped(now, p)
		return
	}
	adv, err := packet.Parse(p.data, p.src, p.dst)
	if err != nil {
		n.drop(string(packet.ReasonOf(err)), p, err)
		return
	}
	if adv.Version != n.opts.Config.Version {
		n.drop(DropVersion, p, fmt.Errorf("VRRPv%d advert, this node runs v%d", adv.Version, n.opts.Config.Version))
		return
	}
	var in *instance
	for _, i := range n.insts {
		if i.v6 == v6 && i.cfg.VRID == int(adv.VRID) {
			in = i
		}
	}
	if in == nil {
		n.drop(DropVRID, p, fmt.Errorf("VRID %d is not configured", adv.VRID))
		return
	}
	if len(adv.Addrs) != len(in.hbAddrs) && adv.Priority != fsm.OwnerPriority {
		n.drop(DropAddrCount, p, fmt.Errorf("%d addresses, %s has %d", len(adv.Addrs), in.cfg.Name, len(in.hbAddrs)))
		return
	}
	if adv.Version == 2 && adv.Interval != in.cfg.AdvertInterval {
		n.drop(DropInterval, p, fmt.Errorf("advert interval %d cs, %s uses %d", adv.Interval, in.cfg.Name, in.cfg.AdvertInterval))
		return
	}
	in.m.SetSynced(n.synced.Load())
	rt.handle(in, now, in.m.Receive(now, fsm.Advert{Priority: int(adv.Priority), Interval: config.AdvertDuration(adv.Interval), Src: p.src}))
}

func contains(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

func (rt *session) linkUpdate(now time.Time, u netlink.LinkUpdate) {
	ifs := rt.n.opts.Interfaces
	name := u.Link.Attrs().Name
	changed := false
	for _, t := range rt.n.opts.Config.Track {
		if ifs.ForGroup(t.Group) != name {
			continue
		}
		up := linkUp(u.Link) && u.Header.Type != unix.RTM_DELLINK
		if rt.trackUp[t.Group] != up {
			rt.trackUp[t.Group] = up
			changed = true
			rt.n.log.WithFields(logrus.Fields{"group": t.Group, "interface": name, "up": up}).Warn("vrrp: tracked bond changed")
		}
	}
	if changed {
		rt.applyTracking(now)
	}
	// A link with virtual addresses that comes back (cable, switch
	// reboot) gets them announced again: the switch and neighbours may
	// have learnt another MAC meanwhile.
	if was, ok := rt.vipLinkUp[name]; ok {
		up := linkUp(u.Link) && u.Header.Type != unix.RTM_DELLINK
		rt.vipLinkUp[name] = up
		if up && !was {
			for _, in := range rt.n.insts {
				if in.m.State() == fsm.Master {
					rt.handle(in, now, []fsm.Action{{Kind: fsm.Announce, Reason: "link " + name + " came up"}})
				}
			}
		}
	}
}

// applyTracking sets fault and effective priority from the tracked bonds.
func (rt *session) applyTracking(now time.Time) {
	fault, dec := "", 0
	for _, t := range rt.n.opts.Config.Track {
		if rt.trackUp[t.Group] {
			continue
		}
		if t.Action == config.TrackFault {
			fault = fmt.Sprintf("%s bond %s is down", t.Group, rt.n.opts.Interfaces.ForGroup(t.Group))
		} else {
			dec += t.Weight
		}
	}
	for _, in := range rt.n.insts {
		in.m.SetPriority(in.base - dec)
		if fault != "" {
			rt.handle(in, now, in.m.SetFault(now, true, fault))
		} else {
			rt.handle(in, now, in.m.SetFault(now, false, "tracked bonds up"))
		}
	}
}
