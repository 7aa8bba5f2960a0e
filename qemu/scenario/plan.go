// Package scenario builds the two-node HA lab the scenario tests and
// `make lab` share: lb1 (master) and lb2 (backup) with two NICs per group
// and a management NIC, clients and an "internet" host on External, four
// members and an internal client on Internal, and member servers that answer
// every request with their own name and the source address they see. It also
// has the client side (single requests, kept-alive connections, request loops
// that count lost requests) and the lab report writer (out/lab-report.md).
package scenario

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
)

// Addresses of the HA lab configs (qemu/configs/ha-lb*.yaml), all from the
// lab address plan in DESIGN.md.
const (
	VIPNAT      = "203.0.113.100"  // web-nat: NAT, round robin
	VIPFullNAT  = "203.0.113.101"  // web-fullnat: FullNAT, round robin
	VIPSticky   = "203.0.113.102"  // web-sticky: NAT with 600 s persistence
	VIPSpare    = "203.0.113.103"  // floats with VRRP; no VS until a live apply adds one
	VIPInternal = "198.51.100.100" // east-west: internal FullNAT VIP
	SNATAddress = "203.0.113.200"  // the SNAT IPool members' outbound traffic leaves from
	Internet    = "203.0.113.50"   // the "internet" host beyond External
	Gateway     = "198.51.100.1"   // floating Internal gateway of the members
	ServicePort = 80
)

// LocalAddresses is the FullNAT local-address pool (la) in the HA configs,
// 198.51.100.201-204. The addresses float with the VRRP instance (issue 13
// item 3), so members see the same ones whichever node (n, kept so callers
// say which node they mean) is master.
func LocalAddresses(node int) []string {
	var out []string
	for i := 0; i < 4; i++ {
		out = append(out, fmt.Sprintf("198.51.100.%d", 201+i))
	}
	return out
}

// SelfIP is node n's own address on a segment (lb1 .1/.2, lb2 .2/.3, ...).
func SelfIP(node int, segment string) string {
	switch segment {
	case netlab.Failover:
		return fmt.Sprintf("192.0.2.%d", node)
	case netlab.Internal:
		return fmt.Sprintf("198.51.100.%d", node+1)
	case netlab.External:
		return fmt.Sprintf("203.0.113.%d", node+1)
	case netlab.Management:
		return fmt.Sprintf("192.0.2.%d", 128+node)
	}
	return ""
}

// HostSpec is one namespace host of the HA lab.
type HostSpec struct {
	Name    string
	Segment string
	CIDR    string
	Gateway string
	// Serve: the host runs a member server on port 80 answering with its
	// name and the source address it sees.
	Serve bool
}

// Addr is the host's address without the prefix length.
func (h HostSpec) Addr() string { a, _, _ := strings.Cut(h.CIDR, "/"); return a }

// Members are the pool members' host names, in address order.
func Members() []string { return []string{"member1", "member2", "member3", "member4"} }

// HostPlan lists the hosts of the HA lab.
func HostPlan() []HostSpec {
	hs := []HostSpec{
		{Name: "client1", Segment: netlab.External, CIDR: "203.0.113.10/24"},
		{Name: "client2", Segment: netlab.External, CIDR: "203.0.113.11/24"},
		{Name: "inet", Segment: netlab.External, CIDR: Internet + "/24", Serve: true},
	}
	for i, m := range Members() {
		hs = append(hs, HostSpec{Name: m, Segment: netlab.Internal, CIDR: fmt.Sprintf("198.51.100.%d/24", 11+i), Gateway: Gateway, Serve: true})
	}
	return append(hs,
		HostSpec{Name: "iclient", Segment: netlab.Internal, CIDR: "198.51.100.40/24"},
		HostSpec{Name: "admin", Segment: netlab.Management, CIDR: "192.0.2.254/25"},
	)
}

// NICs are node n's guest NICs: two per group, then the management NIC.
// Tap names are "t<node>-<segment><member>" and "t<node>-mgmt", as
// qemu/appliance names them.
func NICs(node int) []vm.NIC {
	var nics []vm.NIC
	for _, seg := range []string{netlab.Failover, netlab.Internal, netlab.External} {
		for m := 1; m <= 2; m++ {
			nics = append(nics, vm.NIC{ID: appliance.NICID(seg, m), MAC: appliance.MAC(node, seg, m), Tap: fmt.Sprintf("t%d-%s%d", node, seg, m)})
		}
	}
	return append(nics, vm.NIC{ID: "mgmt", MAC: appliance.MAC(node, netlab.Management, 1), Tap: fmt.Sprintf("t%d-mgmt", node)})
}

// NICSegment is the lab segment a NIC of NICs plugs into.
func NICSegment(n vm.NIC) string {
	if n.ID == "mgmt" {
		return netlab.Management
	}
	return strings.TrimRight(n.ID, "0123456789")
}

// NodeOfMAC tells which appliance node a lab MAC (52:54:00:<node>:..)
// belongs to, or 0.
func NodeOfMAC(mac net.HardwareAddr) int {
	if len(mac) != 6 || mac[0] != 0x52 || mac[1] != 0x54 || mac[2] != 0 {
		return 0
	}
	return int(mac[3])
}

// NodeName is "lb<n>".
func NodeName(n int) string { return "lb" + strconv.Itoa(n) }
