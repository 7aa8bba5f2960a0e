// Package netlab builds the QEMU lab's network on the host: a "switch"
// network namespace holding one bridge per segment (Failover, Internal,
// External, Management) and the taps that appliance VMs plug into, plus host
// namespaces (clients, members, peers) joined to the segments by veth pairs.
// Everything lives in namespaces the lab creates, and Close removes them all;
// the host's own interfaces are never touched.
package netlab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Segments of the lab, named as in the address plan.
const (
	Failover   = "fo"
	Internal   = "int"
	External   = "ext"
	Management = "mgmt"
)

// Lab is one lab instance. Names of its namespaces start with Prefix.
type Lab struct {
	Prefix string
	Switch *Namespace

	mu      sync.Mutex
	bridges map[string]bool
	hosts   []*Namespace
	closed  bool
}

// Namespace is a named network namespace created by the lab.
type Namespace struct {
	Name   string
	handle netns.NsHandle
	nl     *netlink.Handle
}

// InNamespace runs fn with the calling goroutine's OS thread switched into
// ns, and switches back afterwards. Sockets created inside fn belong to ns
// for their whole life; processes started inside fn run in ns.
func InNamespace(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("entering netns: %w", err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// The thread is in the wrong namespace: never reuse it.
			panic(fmt.Sprintf("netlab: cannot return to the original netns: %v", err))
		}
	}()
	return fn()
}

// newNamespace creates a named namespace without leaving the calling
// thread in it.
func newNamespace(name string) (*Namespace, error) {
	if len(name) > 64 {
		return nil, fmt.Errorf("netns name %q too long", name)
	}
	var h netns.NsHandle
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	h, err = netns.NewNamed(name)
	if err != nil {
		netns.Set(orig)
		return nil, fmt.Errorf("creating netns %s: %w", name, err)
	}
	if err := netns.Set(orig); err != nil {
		panic(fmt.Sprintf("netlab: cannot return to the original netns: %v", err))
	}
	nl, err := netlink.NewHandleAt(h, unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		netns.DeleteNamed(name)
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	ns := &Namespace{Name: name, handle: h, nl: nl}
	lo, err := nl.LinkByName("lo")
	if err == nil {
		err = nl.LinkSetUp(lo)
	}
	if err != nil {
		ns.close()
		return nil, fmt.Errorf("netns %s: lo up: %w", name, err)
	}
	return ns, nil
}

// Handle is the namespace's handle (for InNamespace or netlink.NewHandleAt).
func (n *Namespace) Handle() netns.NsHandle { return n.handle }

// Netlink is a netlink handle bound to the namespace.
func (n *Namespace) Netlink() *netlink.Handle { return n.nl }

// Do runs fn inside the namespace (see InNamespace).
func (n *Namespace) Do(fn func() error) error { return InNamespace(n.handle, fn) }

func (n *Namespace) close() error {
	n.nl.Close()
	n.handle.Close()
	if err := netns.DeleteNamed(n.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deleting netns %s: %w", n.Name, err)
	}
	return nil
}

// New creates a lab whose namespaces are named prefix+"sw", prefix+host...
// The prefix should be short and unique per lab (e.g. "fl3a9-").
func New(prefix string) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("netlab: needs root (network namespaces, taps, bridges)")
	}
	sw, err := newNamespace(prefix + "sw")
	if err != nil {
		return nil, err
	}
	return &Lab{Prefix: prefix, Switch: sw, bridges: map[string]bool{}}, nil
}

// BridgeName is the bridge of a segment inside the switch namespace.
func BridgeName(segment string) string { return "br-" + segment }

// ensureBridge creates the segment's bridge. The bridge does not learn
// (ageing time 0, so it floods like a hub): a Linux bridge is not
// LACP-aware, so it cannot treat a bond's two member ports as one LAG, and a
// learning bridge would keep sending to a member whose link was cut.
func (l *Lab) ensureBridge(segment string) (netlink.Link, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	name := BridgeName(segment)
	if l.bridges[segment] {
		return l.Switch.nl.LinkByName(name)
	}
	zero := uint32(0)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}, AgeingTime: &zero}
	if err := l.Switch.nl.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	link, err := l.Switch.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: %w", name, err)
	}
	if err := l.Switch.nl.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("bridge %s up: %w", name, err)
	}
	l.bridges[segment] = true
	return link, nil
}

// Tap creates a persistent tap in the switch namespace, plugged into the
// segment's bridge, for a VM NIC. QEMU must be started inside the switch
// namespace to open it.
func (l *Lab) Tap(name, segment string) error {
	br, err := l.ensureBridge(segment)
	if err != nil {
		return err
	}
	return l.Switch.Do(func() error {
		tap := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TAP, Flags: netlink.TUNTAP_DEFAULTS | netlink.TUNTAP_VNET_HDR}
		if err := netlink.LinkAdd(tap); err != nil {
			return fmt.Errorf("tap %s: %w", name, err)
		}
		for _, f := range tap.Fds {
			f.Close()
		}
		link, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("tap %s: %w", name, err)
		}
		if err := netlink.LinkSetMaster(link, br); err != nil {
			return fmt.Errorf("tap %s into %s: %w", name, br.Attrs().Name, err)
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("tap %s up: %w", name, err)
		}
		return nil
	})
}

// Host creates a namespace prefix+name with one interface "eth0" on the
// segment, the given CIDR addresses, and an optional default gateway.
func (l *Lab) Host(name, segment string, cidrs []string, gateway string) (*Namespace, error) {
	br, err := l.ensureBridge(segment)
	if err != nil {
		return nil, err
	}
	ns, err := newNamespace(l.Prefix + name)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.hosts = append(l.hosts, ns)
	l.mu.Unlock()
	swEnd := "v-" + name
	if len(swEnd) > 15 {
		swEnd = swEnd[:15]
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: swEnd}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns.handle)}
	if err := l.Switch.nl.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("host %s: veth: %w", name, err)
	}
	sw, err := l.Switch.nl.LinkByName(swEnd)
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", name, err)
	}
	if err := l.Switch.nl.LinkSetMaster(sw, br); err != nil {
		return nil, fmt.Errorf("host %s: into bridge: %w", name, err)
	}
	if err := l.Switch.nl.LinkSetUp(sw); err != nil {
		return nil, fmt.Errorf("host %s: %w", name, err)
	}
	eth, err := ns.nl.LinkByName("eth0")
	if err != nil {
		return nil, fmt.Errorf("host %s: eth0: %w", name, err)
	}
	for _, c := range cidrs {
		addr, err := netlink.ParseAddr(c)
		if err != nil {
			return nil, fmt.Errorf("host %s: address %s: %w", name, c, err)
		}
		if err := ns.nl.AddrAdd(eth, addr); err != nil {
			return nil, fmt.Errorf("host %s: address %s: %w", name, c, err)
		}
	}
	if err := ns.nl.LinkSetUp(eth); err != nil {
		return nil, fmt.Errorf("host %s: eth0 up: %w", name, err)
	}
	if gateway != "" {
		if err := ns.nl.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.ParseIP(gateway)}); err != nil {
			return nil, fmt.Errorf("host %s: default via %s: %w", name, gateway, err)
		}
	}
	return ns, nil
}

// Close removes every namespace the lab made (with the bridges, taps and
// veths inside them).
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []string
	for _, h := range l.hosts {
		if err := h.close(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if err := l.Switch.close(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return fmt.Errorf("netlab cleanup: %s", strings.Join(errs, "; "))
	}
	return nil
}
