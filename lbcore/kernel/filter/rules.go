package filter

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// ChainInput is the base chain (hook input, priority filter, policy drop);
// zone chains are named "zone_" + the zone's name.
const ChainInput = "input"

// ZoneChain is the chain name of zone name.
func ZoneChain(name string) string { return "zone_" + name }

// ICMP types.
const (
	icmpEchoRequest   = 8
	icmp6EchoRequest  = 128
	icmp6RouterSolic  = 133
	icmp6NeighborAdvt = 136
)

func table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

func inputChain(t *nftables.Table) *nftables.Chain {
	drop := nftables.ChainPolicyDrop
	return &nftables.Chain{Name: ChainInput, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &drop}
}

func zoneChain(t *nftables.Table, name string) *nftables.Chain {
	return &nftables.Chain{Name: ZoneChain(name), Table: t}
}

// Expression building blocks (register 1).

func cmpEq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }

func nfproto(v6 bool) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if v6 {
		p = unix.NFPROTO_IPV6
	}
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, cmpEq([]byte{p})}
}

func l4proto(p Proto) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmpEq([]byte{byte(p)})}
}

func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func iif(name string) []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, cmpEq(ifname(name))}
}

// addr loads the source or destination address of the packet's family.
func addr(v6, src bool) *expr.Payload {
	off, n := uint32(16), uint32(4)
	switch {
	case v6 && src:
		off, n = 8, 16
	case v6:
		off, n = 24, 16
	case src:
		off = 12
	}
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
}

// prefixMatch: the packet's source (src) or destination address is in p.
// The rule also pins the family, as inet chains see both.
func prefixMatch(p netip.Prefix, src bool) []expr.Any {
	p = p.Masked()
	v6 := p.Addr().Is6() && !p.Addr().Is4In6()
	a := p.Addr().Unmap()
	raw := a.AsSlice()
	e := append(nfproto(v6), addr(v6, src))
	if p.Bits() < len(raw)*8 {
		mask := make([]byte, len(raw))
		for i := 0; i < p.Bits(); i++ {
			mask[i/8] |= 0x80 >> (i % 8)
		}
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(raw)), Mask: mask, Xor: make([]byte, len(raw))})
	}
	return append(e, cmpEq(raw))
}

func port(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

// thPort matches the transport header's destination (or source) port.
func thPort(from, to uint16, src bool) []expr.Any {
	off := uint32(2)
	if src {
		off = 0
	}
	e := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2}}
	if from == to {
		return append(e, cmpEq(port(from)))
	}
	return append(e, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: port(from), ToData: port(to)})
}

func icmpType(v6 bool, typ byte) []expr.Any {
	p := Proto(unix.IPPROTO_ICMP)
	if v6 {
		p = unix.IPPROTO_ICMPV6
	}
	e := append(nfproto(v6), l4proto(p)...)
	return append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1}, cmpEq([]byte{typ}))
}

func ctEstablished() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

func accept() []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept}}
}

func drop() []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
}

func comment(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

type rule struct {
	exprs   []expr.Any
	comment string
}

func r(comment string, parts ...[]expr.Any) rule {
	var e []expr.Any
	for _, p := range parts {
		e = append(e, p...)
	}
	return rule{exprs: e, comment: comment}
}

// inputRules is the base chain: loopback, ND, dispatch by interface, drop.
func inputRules(p *Policy) []rule {
	rules := []rule{r("loopback", iif("lo"), accept())}
	nd := append(nfproto(true), l4proto(unix.IPPROTO_ICMPV6)...)
	nd = append(nd, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{icmp6RouterSolic}, ToData: []byte{icmp6NeighborAdvt}})
	rules = append(rules, r("ipv6 neighbour discovery", nd, accept()))
	for _, z := range p.Zones {
		rules = append(rules, r("zone "+z.Name, iif(z.Iface), []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: ZoneChain(z.Name)}}))
	}
	return append(rules, r("default drop", drop()))
}

// zoneRules is one zone's chain; what it does not accept returns to the
// base chain and is dropped there.
func zoneRules(p *Policy, z *Zone) []rule {
	rate, burst := p.rate()
	var rules []rule
	for _, v6 := range []bool{false, true} {
		typ, fam := byte(icmpEchoRequest), "icmp"
		if v6 {
			typ, fam = icmp6EchoRequest, "icmpv6"
		}
		lim := func() []expr.Any {
			return []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(rate), Unit: expr.LimitTimeSecond, Burst: burst}}
		}
		switch {
		case z.Ping:
			rules = append(rules, r(fmt.Sprintf("%s echo %d/s burst %d", fam, rate, burst), icmpType(v6, typ), lim(), accept()))
		case z.PeerPing:
			for _, peer := range z.Peers {
				if pv6 := peer.Addr().Is6() && !peer.Addr().Is4In6(); pv6 != v6 {
					continue
				}
				rules = append(rules, r(fmt.Sprintf("%s echo from %s %d/s burst %d", fam, peer, rate, burst),
					prefixMatch(peer, true), icmpType(v6, typ), lim(), accept()))
			}
		}
		rules = append(rules, r(fam+" echo over limit or not admitted", icmpType(v6, typ), drop()))
	}
	rules = append(rules, r("established, related", ctEstablished(), accept()))
	// Single-port services: one set lookup per family (the set's elements
	// carry the comments), so a new connection's cost does not grow with
	// the number of virtual servers; port ranges keep a rule each.
	var ranged []rule
	for _, v6 := range []bool{false, true} {
		if len(serviceElements(z, v6)) > 0 {
			name := ServiceSet(z.Name, v6)
			rules = append(rules, r(fmt.Sprintf("services in set %s", name), serviceLookup(v6, name), accept()))
		}
	}
	for _, s := range z.Services {
		if !singleService(s) {
			ranged = append(ranged, r(serviceComment(s),
				prefixMatch(netip.PrefixFrom(s.Addr, s.Addr.BitLen()), false), l4proto(s.Proto), thPort(s.From, s.To, false), accept()))
		}
	}
	rules = append(rules, ranged...)
	for _, pt := range z.Ports {
		parts := [][]expr.Any{l4proto(pt.Proto)}
		c := fmt.Sprintf("port %s %s/%d", pt.Name, pt.Proto, pt.Port)
		if pt.SrcPort != 0 {
			parts = append(parts, thPort(pt.SrcPort, pt.SrcPort, true))
			c += fmt.Sprintf(" from port %d", pt.SrcPort)
		}
		parts = append(parts, thPort(pt.Port, pt.Port, false), accept())
		rules = append(rules, r(c, parts...))
	}
	for _, peer := range z.Peers {
		for _, pr := range z.PeerRules {
			parts := [][]expr.Any{prefixMatch(peer, true), l4proto(pr.Proto)}
			c := fmt.Sprintf("peer %s %s from %s", pr.Name, pr.Proto, peer)
			if pr.Port != 0 {
				parts = append(parts, thPort(pr.Port, pr.Port, false))
				c = fmt.Sprintf("peer %s %s/%d from %s", pr.Name, pr.Proto, pr.Port, peer)
			}
			rules = append(rules, r(c, append(parts, accept())...))
		}
	}
	return rules
}

// ServiceSet is the name of zone's set of single-port services of one
// address family ("svc4_external", "svc6_external").
func ServiceSet(zone string, v6 bool) string {
	if v6 {
		return "svc6_" + zone
	}
	return "svc4_" + zone
}

func serviceComment(s Service) string {
	return fmt.Sprintf("service %s %s %s/%d-%d", s.Name, s.Addr, s.Proto, s.From, s.To)
}

func singleService(s Service) bool { return s.From == s.To && s.Proto.hasPorts() }

func isV6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }

// serviceKeyType is the key of a service set: daddr . l4proto . dport, each
// field padded to a 32-bit register as nft concatenates them.
func serviceKeyType(v6 bool) nftables.SetDatatype {
	if v6 {
		return nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	}
	return nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
}

// serviceElements are zone's single-port services of one family as set
// elements, each with its comment.
func serviceElements(z *Zone, v6 bool) []nftables.SetElement {
	var out []nftables.SetElement
	for _, s := range z.Services {
		if !singleService(s) || isV6(s.Addr) != v6 {
			continue
		}
		a := s.Addr.Unmap().AsSlice()
		k := make([]byte, len(a)+8)
		copy(k, a)
		k[len(a)] = byte(s.Proto)
		binary.BigEndian.PutUint16(k[len(a)+4:], s.From)
		out = append(out, nftables.SetElement{Key: k, Comment: serviceComment(s)})
	}
	return out
}

// serviceLookup: meta nfproto, then daddr . l4proto . th dport @set. The
// key is built in consecutive 32-bit registers: the address from register
// 1 (= NFT_REG32_00, 4 or 16 bytes), then the protocol and the port.
func serviceLookup(v6 bool, set string) []expr.Any {
	protoReg, portReg := uint32(9), uint32(10) // NFT_REG32_01, _02
	if v6 {
		protoReg, portReg = 12, 13 // NFT_REG32_04, _05
	}
	return append(nfproto(v6),
		addr(v6, false),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: protoReg},
		&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: set},
	)
}
