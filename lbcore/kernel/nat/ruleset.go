// Package nat owns the appliance's nftables table ("ip fulcrum"): firewall
// marks for port-range virtual servers, the SNAT half of FullNAT, and SNAT
// all-in-one for members' own outbound traffic. The table is always replaced
// as a whole in one netlink batch, so the kernel has either the old ruleset
// or the new one, never a mix.
//
// FullNAT. Mainline IPVS has no FullNAT; it is IPVS masquerade plus SNAT of
// the balanced connection to the virtual server's local address pool
// (net.ipv4.vs.conntrack=1 keeps netfilter conntrack on IPVS connections).
// nftables has no "ipvs" match like iptables' -m ipvs, so, as kube-proxy
// does, the VS's packets are marked in prerouting (by VIP, protocol and
// port) and postrouting SNATs packets carrying the mark. The per-packet cost
// does not grow with the number of virtual servers: single-port VSs' marks
// are one lookup in the map "marks" (ip daddr . l4proto . th dport → mark),
// and FullNAT is one postrouting rule per local address range matching a
// set of its VSs' marks ("fullnat0", ...); only port ranges keep a mark rule
// each. (A rule per VS walked all 1000 rules for every packet, routed
// traffic included.) Each marked VS has
// its own mark (the config's VirtualServer.Mark, set by lbcore/engine): for a port range it is the IPVS
// fwmark service's mark; for a single port no fwmark service has it and IPVS
// falls back to its protocol/address/port lookup. The mark survives IPVS's
// masquerade (same skb), and only the first packet of a connection
// traverses nat chains. The local addresses must be the appliance's own
// addresses on the Internal group (netsetup), so members' replies come back
// to it. (Matching "ct original daddr" instead would avoid the marks, but
// google/nftables v0.3.0 cannot decode the ct direction attribute when
// reading rules back, which the rollback snapshot needs.)
//
// SNAT all-in-one: new connections from a rule's source prefix leaving
// through its out interface are SNATed to the rule's IPool (persistent, so a
// source keeps one address), except connections that were destination-NATed
// (balanced traffic and its replies never match: replies are not new
// connections, and balanced connections leave through the Internal side).
package nat

import (
	"net/netip"
)

// TableName is the appliance's nftables table (family ip).
const TableName = "fulcrum"

// Mark sets the firewall mark of a port-range or FullNAT virtual server.
type Mark struct {
	VS       string
	VIP      netip.Addr
	Proto    uint8 // unix.IPPROTO_TCP / IPPROTO_UDP
	From, To uint16
	Mark     uint32
}

// FullNAT SNATs balanced connections of one virtual server (recognised by
// its mark) to its local address range.
type FullNAT struct {
	VS          string
	Mark        uint32
	First, Last netip.Addr
}

// SNAT SNATs members' own outbound connections.
type SNAT struct {
	Source      netip.Prefix
	OutIface    string
	First, Last netip.Addr
}

// Ruleset is the whole content of the table.
type Ruleset struct {
	Marks   []Mark
	FullNAT []FullNAT
	SNAT    []SNAT
}

// Empty reports whether the ruleset has no rules (the table is then removed).
func (r *Ruleset) Empty() bool { return len(r.Marks)+len(r.FullNAT)+len(r.SNAT) == 0 }
