package engine

import (
	"fmt"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nat"
	"golang.org/x/sys/unix"
)

func protoNum(p config.Protocol) uint8 {
	if p == config.UDP {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// NAT builds the nftables ruleset cfg (validated) asks for: marks of
// port-range and FullNAT virtual servers, FullNAT SNAT to local address
// pools, and SNAT all-in-one.
func NAT(cfg *config.Config) (*nat.Ruleset, error) {
	rs := &nat.Ruleset{}
	for i := range cfg.VirtualServers {
		vs := &cfg.VirtualServers[i]
		if vs.NeedsMark() {
			if !vs.VIP.Is4() {
				return nil, wrap(vs, fmt.Errorf("port ranges and fullnat are IPv4 only"))
			}
			rs.Marks = append(rs.Marks, nat.Mark{VS: vs.Name, VIP: vs.VIP.Addr, Proto: protoNum(vs.Protocol), From: vs.Port.From, To: vs.Port.To, Mark: vs.Mark()})
		}
		if vs.Mode != config.ModeFullNAT {
			continue
		}
		lp := cfg.LocalAddressPools[vs.LocalAddressPool]
		if lp == nil {
			return nil, wrap(vs, fmt.Errorf("unknown local address pool %q", vs.LocalAddressPool))
		}
		r, err := lp.Range()
		if err != nil {
			return nil, wrap(vs, fmt.Errorf("local address pool %s: %w", vs.LocalAddressPool, err))
		}
		rs.FullNAT = append(rs.FullNAT, nat.FullNAT{VS: vs.Name, Mark: vs.Mark(), First: r.First, Last: r.Last})
	}
	for i, r := range cfg.SNAT.Rules {
		pool := cfg.SNAT.IPools[r.IPool]
		if pool == nil {
			return nil, fmt.Errorf("snat rule %d: unknown ipool %q", i, r.IPool)
		}
		rg, err := pool.Range()
		if err != nil {
			return nil, fmt.Errorf("snat rule %d: ipool %s: %w", i, r.IPool, err)
		}
		rs.SNAT = append(rs.SNAT, nat.SNAT{Source: r.Source.Masked(), OutIface: cfg.OutInterface(r.Out), First: rg.First, Last: rg.Last})
	}
	return rs, nil
}
