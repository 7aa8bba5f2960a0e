package engine

import (
	"fmt"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"golang.org/x/sys/unix"
)

// IPVS builds the IPVS table cfg (validated) asks for under ov, with each
// pool's destinations chosen by PoolPolicy from the members' health h.
// Virtual servers of mode http and https have no IPVS service: the L7
// proxy daemon listens on their VIP and port (the filter admits them). A
// member left out for health is listed in State.Unhealthy, so the plan
// deletes it at once instead of draining it (a dead server has nothing to
// finish).
func IPVS(cfg *config.Config, ov Overrides, h Health) (*ipvs.State, error) {
	st, err := services(cfg, ov, h, nil)
	if err != nil {
		return nil, err
	}
	st.Timeouts = &ipvs.Timeouts{TCP: cfg.IPVSTimeouts.TCP.D(), TCPFin: cfg.IPVSTimeouts.TCPFin.D(), UDP: cfg.IPVSTimeouts.UDP.D()}
	return st, nil
}

// IPVSOfPools is the part of IPVS that members of pools decide: the
// services of the virtual servers balancing to them, and no timeouts (what
// a health transition in those pools can change; ipvs.Reconciler's
// ApplyServices applies it and leaves every other service alone).
func IPVSOfPools(cfg *config.Config, ov Overrides, h Health, pools map[string]bool) (*ipvs.State, error) {
	return services(cfg, ov, h, pools)
}

// services builds the IPVS services of cfg's L4 virtual servers (only those
// balancing to pools, when pools is not nil).
func services(cfg *config.Config, ov Overrides, h Health, pools map[string]bool) (*ipvs.State, error) {
	st := ipvs.NewState()
	for i := range cfg.VirtualServers {
		vs := &cfg.VirtualServers[i]
		if vs.Mode.L7() {
			continue // served by the L7 proxy (l7d), not IPVS
		}
		if pools != nil && !pools[vs.Pool] {
			continue
		}
		s, err := service(cfg, vs, ov, h, st)
		if err != nil {
			return nil, wrap(vs, err)
		}
		if other, dup := st.Services[s.Key]; dup {
			return nil, wrap(vs, fmt.Errorf("service %s is also virtual server %s", s.Key, other.Name))
		}
		st.Services[s.Key] = s
	}
	return st, nil
}

// ServiceKey is the IPVS service of a virtual server.
func ServiceKey(vs *config.VirtualServer) ipvs.ServiceKey {
	fam := uint16(unix.AF_INET)
	if vs.VIP.Is6() {
		fam = unix.AF_INET6
	}
	if vs.Port.IsRange() {
		return ipvs.ServiceKey{Family: fam, FWMark: vs.Mark()}
	}
	proto := uint16(unix.IPPROTO_TCP)
	if vs.Protocol == config.UDP {
		proto = unix.IPPROTO_UDP
	}
	return ipvs.ServiceKey{Family: fam, Protocol: proto, Addr: vs.VIP.Addr, Port: vs.Port.From}
}

var forwarding = map[config.Mode]uint32{config.ModeNAT: ipvs.FwdMasq, config.ModeFullNAT: ipvs.FwdMasq, config.ModeDR: ipvs.FwdDR, config.ModeTUN: ipvs.FwdTunnel}

func service(cfg *config.Config, vs *config.VirtualServer, ov Overrides, h Health, st *ipvs.State) (*ipvs.Service, error) {
	s := &ipvs.Service{Name: vs.Name, Key: ServiceKey(vs), Scheduler: string(vs.Scheduler), Dests: map[ipvs.DestKey]*ipvs.Dest{}}
	v6 := vs.VIP.Is6()
	bits := vs.Persistence.Netmask.Len(v6)
	if v6 {
		s.Netmask = uint32(bits)
	} else {
		s.Netmask = ipvs.NetmaskV4(bits)
	}
	if vs.PersistenceOn() {
		s.Flags |= ipvs.FlagPersistent
		s.Timeout = uint32(vs.Persistence.Timeout.D().Seconds())
	}
	fwd, ok := forwarding[vs.Mode]
	if !ok {
		return nil, fmt.Errorf("unknown mode %q", vs.Mode)
	}
	pool := cfg.Pools[vs.Pool]
	if pool == nil {
		return nil, fmt.Errorf("unknown pool %q", vs.Pool)
	}
	destPort := func(p uint16) uint16 {
		if p != 0 || vs.Port.IsRange() {
			return p // a fwmark service (0) keeps the client's port
		}
		return vs.Port.From
	}
	res := PoolPolicy(pool, PoolMembers(vs.Pool, pool, ov, h))
	for _, d := range res.Members {
		k := ipvs.DestKey{Addr: d.Ref.Addr, Port: destPort(d.Ref.Port)}
		if !d.In {
			if st.Unhealthy == nil {
				st.Unhealthy = map[ipvs.DrainRef]bool{}
			}
			st.Unhealthy[ipvs.DrainRef{Service: s.Key, Dest: k}] = true
			continue
		}
		s.Dests[k] = &ipvs.Dest{Key: k, Weight: d.Weight, Fwd: fwd}
	}
	if res.SorryActive {
		ap := pool.SorryServer.AddrPort
		k := ipvs.DestKey{Addr: ap.Addr(), Port: ap.Port()}
		s.Dests[k] = &ipvs.Dest{Key: k, Weight: 1, Fwd: fwd}
	}
	return s, nil
}
