// Package addrs puts on the appliance's bonds the addresses the LB daemon
// owns, and takes them off again when the config stops asking for them.
//
// Who owns what:
//   - FullNAT local addresses (local_address_pools used by a fullnat virtual
//     server) are per node and never float: the LB daemon always owns them,
//     on the Internal bond.
//   - VIPs (External virtual servers on the External bond, internal ones on
//     the Internal bond) and SNAT IPool addresses (on their rule's out
//     interface, normally the External bond) float with VRRP. When the config
//     has vrrp instances, vrrpd owns them (config validation makes sure each
//     is a virtual address of the right group); on a standalone node (no
//     instances) the LB daemon owns them.
//
// Every address is added as a host address (/32, /128). IPv4 addresses the
// daemon adds carry the label "<bond>:lb" (when it fits the 15-byte limit),
// so a restarted daemon recognises and removes its own stale addresses;
// addresses it did not add (self IPs, vrrpd's) are never removed, even when
// they equal a wanted address.
package addrs

import (
	"context"

	"errors"
	"fmt"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/stage"
	"net"
	"net/netip"
	"sort"
	"sync"

	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nldump"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Want is one address the LB daemon must own.
type Want struct {
	Link string     // interface (bond) name
	Addr netip.Addr // added as a host prefix
	Why  string     // what in the config asks for it, for logs
}

func (w Want) key() key { return key{w.Link, w.Addr} }

type key struct {
	link string
	addr netip.Addr
}

// Plan is what the LB daemon owns for one config.
type Plan struct {
	// Links are looked at for stale addresses of ours even when no address
	// is wanted on them (the Internal and External bonds, SNAT out
	// interfaces).
	Links []string
	Addrs []Want // sorted by link and address
}

// Netlink is the part of *netlink.Handle the owner uses (tests: a fake).
type Netlink interface {
	LinkByName(name string) (netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrDel(link netlink.Link, addr *netlink.Addr) error
}

// Owner keeps the daemon's addresses on the links.
type Owner struct {
	nl  Netlink
	log logrus.FieldLogger

	mu    sync.Mutex
	owned map[key]bool // added by us (also remembers unlabelled ones)
}

// NewOwner returns an owner working through nl (a NETLINK_ROUTE handle).
func NewOwner(nl Netlink, log logrus.FieldLogger) *Owner {
	return &Owner{nl: nl, log: log, owned: map[key]bool{}}
}

// Label is the IPv4 address label marking the daemon's addresses on link
// ("" when link's name is too long for one).
func Label(link string) string {
	l := link + ":lb"
	if len(l) > unix.IFNAMSIZ-1 {
		return ""
	}
	return l
}

// Change is what one Apply did.
type Change struct {
	Added, Removed []Want
}

// Empty reports whether nothing changed.
func (c Change) Empty() bool { return len(c.Added) == 0 && len(c.Removed) == 0 }

// Apply makes the owner's addresses match p (the stage contract: Undo
// reverts what it added and removed).
func (o *Owner) Apply(_ context.Context, p Plan) (stage.Change, error) {
	ch, undo, err := o.reconcile(p)
	if err != nil {
		return stage.Change{}, err
	}
	c := stage.Change{Detail: ch}
	if !ch.Empty() {
		c.Summary = fmt.Sprintf("%d added, %d removed", len(ch.Added), len(ch.Removed))
		c.Undo = undo
	}
	return c, nil
}

// reconcile adds the wanted addresses that are missing and removes the ones it
// owns that are no longer wanted, on the plan's links, the links of its
// addresses and the links it added addresses to before. On error it undoes what it did and returns the
// error. The returned undo function reverts a successful Apply (for a
// larger apply that fails later).
func (o *Owner) reconcile(p Plan) (Change, func() error, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	want := p.Addrs
	wanted := map[key]Want{}
	for _, w := range want {
		wanted[w.key()] = w
	}
	present, ours, err := o.scan(o.links(p), wanted)
	if err != nil {
		return Change{}, nil, err
	}
	for k := range o.owned {
		if !present[k] {
			delete(o.owned, k) // someone removed it; re-added below if wanted
		}
	}

	var ch Change
	var done []func() error
	fail := func(err error) (Change, func() error, error) {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			if uerr := done[i](); uerr != nil {
				errs = append(errs, uerr)
			}
		}
		if len(errs) > 0 {
			return Change{}, nil, errors.Join(err, fmt.Errorf("addresses: undo failed: %w", errors.Join(errs...)))
		}
		return Change{}, nil, err
	}
	for _, w := range want {
		if present[w.key()] {
			continue
		}
		if err := o.add(w); err != nil {
			return fail(err)
		}
		w := w
		done = append(done, func() error { return o.del(w) })
		ch.Added = append(ch.Added, w)
	}
	for _, w := range ours {
		if _, ok := wanted[w.key()]; ok {
			o.owned[w.key()] = true // ours (by label) from before a restart
			continue
		}
		if err := o.del(w); err != nil {
			return fail(err)
		}
		w := w
		done = append(done, func() error { return o.add(w) })
		ch.Removed = append(ch.Removed, w)
	}
	for _, w := range ch.Added {
		o.log.WithFields(logrus.Fields{"link": w.Link, "address": w.Addr.String(), "why": w.Why}).Info("address added")
	}
	for _, w := range ch.Removed {
		o.log.WithFields(logrus.Fields{"link": w.Link, "address": w.Addr.String()}).Info("address removed (no longer configured)")
	}
	undo := func() error {
		o.mu.Lock()
		defer o.mu.Unlock()
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			if err := done[i](); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	return ch, undo, nil
}

// links are the links to look at, sorted: the plan's, those with wanted
// addresses and those holding addresses of ours.
func (o *Owner) links(p Plan) []string {
	links := map[string]bool{}
	for _, l := range p.Links {
		if l != "" {
			links[l] = true
		}
	}
	for _, w := range p.Addrs {
		links[w.Link] = true
	}
	for k := range o.owned {
		links[k.link] = true
	}
	names := make([]string, 0, len(links))
	for l := range links {
		names = append(names, l)
	}
	sort.Strings(names)
	return names
}

// scan reads what is on the links now, and which of it is ours.
func (o *Owner) scan(links []string, wanted map[key]Want) (present map[key]bool, ours []Want, err error) {
	present = map[key]bool{}
	for _, name := range links {
		link, err := o.nl.LinkByName(name)
		if err != nil {
			if _, isWanted := firstOn(wanted, name); isWanted || !errors.As(err, &netlink.LinkNotFoundError{}) {
				return nil, nil, fmt.Errorf("addresses: link %s: %w", name, err)
			}
			continue // a link we once used is gone, and its addresses with it
		}
		list, err := nldump.Retry(func() ([]netlink.Addr, error) { return o.nl.AddrList(link, netlink.FAMILY_ALL) })
		if err != nil {
			return nil, nil, fmt.Errorf("addresses: list %s: %w", name, err)
		}
		lbl := Label(name)
		for _, a := range list {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			k := key{name, ip.Unmap()}
			present[k] = true
			if o.owned[k] || (lbl != "" && a.Label == lbl && isHost(a)) {
				ours = append(ours, Want{Link: name, Addr: k.addr, Why: "no longer configured"})
			}
		}
	}
	return present, ours, nil
}

func firstOn(wanted map[key]Want, link string) (Want, bool) {
	for k, w := range wanted {
		if k.link == link {
			return w, true
		}
	}
	return Want{}, false
}

func isHost(a netlink.Addr) bool {
	if a.IPNet == nil {
		return false
	}
	ones, bits := a.Mask.Size()
	return ones == bits
}

func (o *Owner) nlAddr(w Want) *netlink.Addr {
	bits := w.Addr.BitLen()
	a := &netlink.Addr{IPNet: &net.IPNet{IP: w.Addr.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
	if w.Addr.Is4() {
		a.Label = Label(w.Link)
	} else {
		a.Flags = unix.IFA_F_NODAD // usable at once, like a VIP must be
	}
	return a
}

func (o *Owner) add(w Want) error {
	link, err := o.nl.LinkByName(w.Link)
	if err != nil {
		return fmt.Errorf("addresses: link %s: %w", w.Link, err)
	}
	if err := o.nl.AddrAdd(link, o.nlAddr(w)); err != nil {
		return fmt.Errorf("addresses: add %s to %s (%s): %w", w.Addr, w.Link, w.Why, err)
	}
	o.owned[w.key()] = true
	return nil
}

func (o *Owner) del(w Want) error {
	link, err := o.nl.LinkByName(w.Link)
	if err != nil {
		return fmt.Errorf("addresses: link %s: %w", w.Link, err)
	}
	if err := o.nl.AddrDel(link, o.nlAddr(w)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("addresses: remove %s from %s: %w", w.Addr, w.Link, err)
	}
	delete(o.owned, w.key())
	return nil
}

// Owned lists the addresses this owner added and still holds, sorted.
func (o *Owner) Owned() []Want {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]Want, 0, len(o.owned))
	for k := range o.owned {
		out = append(out, Want{Link: k.link, Addr: k.addr})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Link != out[j].Link {
			return out[i].Link < out[j].Link
		}
		return out[i].Addr.Less(out[j].Addr)
	})
	return out
}
