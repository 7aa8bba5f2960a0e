package engine

import (
	"net/netip"
	"slices"
	"sort"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/addrs"
)

// Addrs computes the addresses the LB daemon owns for cfg (validated); see
// package lbcore/kernel/addrs for who owns what.
func Addrs(cfg *config.Config) addrs.Plan {
	type key struct {
		link string
		addr netip.Addr
	}
	seen := map[key]bool{}
	var out []addrs.Want
	add := func(link string, a netip.Addr, why string) {
		if link == "" || !a.IsValid() {
			return
		}
		k := key{link, a.Unmap()}
		if seen[k] {
			return
		}
		seen[k] = true
		out = append(out, addrs.Want{Link: link, Addr: k.addr, Why: why})
	}
	internal, external := cfg.Network.Internal.Bond, cfg.Network.External.Bond
	if !cfg.VRRP.Enabled() {
		// With VRRP, VIPs, SNAT and local addresses float: vrrpd owns them
		// (the new master answers for what members reply to, issue 13).
		for _, a := range cfg.LocalAddresses() {
			add(internal, a, "local address")
		}
		for _, v := range cfg.VirtualServers {
			vip := v.VIP.Addr
			if v.Internal {
				add(internal, vip, "VIP of "+v.Name)
			} else {
				add(external, vip, "VIP of "+v.Name)
			}
		}
		for _, r := range cfg.SNAT.Rules {
			p := cfg.SNAT.IPools[r.IPool]
			if p == nil {
				continue
			}
			rg, err := p.Range()
			if err != nil {
				continue
			}
			for a := rg.First; ; a = a.Next() {
				add(cfg.OutInterface(r.Out), a, "SNAT ipool "+r.IPool)
				if a == rg.Last {
					break
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Link != out[j].Link {
			return out[i].Link < out[j].Link
		}
		return out[i].Addr.Less(out[j].Addr)
	})
	links := []string{internal, external}
	for _, r := range cfg.SNAT.Rules {
		if l := cfg.OutInterface(r.Out); !slices.Contains(links, l) {
			links = append(links, l)
		}
	}
	return addrs.Plan{Links: links, Addrs: out}
}
