package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nldump"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkInterface describes a link as a *net.Interface, read through the
// netlink handle (so it works for links in another namespace).
func linkInterface(h *netlink.Handle, name string) (*net.Interface, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	a := l.Attrs()
	return &net.Interface{Index: a.Index, MTU: a.MTU, Name: a.Name, HardwareAddr: a.HardwareAddr, Flags: a.Flags}, nil
}

// linkUp: administratively up with carrier (a bond has carrier while any
// member link has).
func linkUp(l netlink.Link) bool {
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && a.RawFlags&unix.IFF_LOWER_UP != 0
}

// primaryAddr is the heartbeat interface's own address of a family: the first
// IPv4 address that is not a virtual address, or the IPv6 link-local one.
func primaryAddr(h *netlink.Handle, ifi *net.Interface, v6 bool, virtual map[netip.Addr]bool) (netip.Addr, error) {
	fam := netlink.FAMILY_V4
	if v6 {
		fam = netlink.FAMILY_V6
	}
	l, err := h.LinkByIndex(ifi.Index)
	if err != nil {
		return netip.Addr{}, err
	}
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return h.AddrList(l, fam) })
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if virtual[ip] || (v6 && !ip.IsLinkLocalUnicast()) || (!v6 && !ip.Is4()) {
			continue
		}
		if v6 && a.Flags&unix.IFA_F_TENTATIVE != 0 {
			continue
		}
		return ip, nil
	}
	if v6 {
		return netip.Addr{}, fmt.Errorf("%s has no usable IPv6 link-local address yet", ifi.Name)
	}
	return netip.Addr{}, fmt.Errorf("%s has no IPv4 address to send adverts from", ifi.Name)
}

// setAddress adds (add=true) or removes a virtual address on its group's
// bond. Adding an address that is there, or removing one that is not, is no
// error.
func setAddress(h *netlink.Handle, ifs config.VRRPBonds, a config.VRRPAddress, add bool) error {
	name := ifs.ForGroup(a.Group)
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", a.Prefix, name, err)
	}
	na := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr.AsSlice(), Mask: net.CIDRMask(a.Prefix.Bits(), a.Addr.BitLen())}}
	if a.Addr.Is6() {
		na.Flags = unix.IFA_F_NODAD // usable at once: the peer has just given it up
	}
	if add {
		if err := h.AddrReplace(l, na); err != nil {
			return fmt.Errorf("add %s to %s: %w", a.Prefix, name, err)
		}
		return nil
	}
	if err := h.AddrDel(l, na); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s from %s: %w", a.Prefix, name, err)
	}
	return nil
}

// holdsAddress reports whether the virtual address is on its group's bond
// now (left there by a previous run that did not resign).
func holdsAddress(h *netlink.Handle, ifs config.VRRPBonds, a config.VRRPAddress) (bool, error) {
	name := ifs.ForGroup(a.Group)
	l, err := h.LinkByName(name)
	if err != nil {
		return false, fmt.Errorf("%s: %w", name, err)
	}
	fam := netlink.FAMILY_V4
	if a.Addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return h.AddrList(l, fam) })
	if err != nil {
		return false, fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a.Addr {
			return true, nil
		}
	}
	return false, nil
}
