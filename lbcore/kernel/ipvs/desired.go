package ipvs

import (
	"fmt"
	"net/netip"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"golang.org/x/sys/unix"
)

// Health reports whether a pool member is up. A nil Health treats every
// member as up.
type Health func(pool string, member netip.AddrPort) bool

// Desired builds the IPVS table the config asks for. The config must have
// been validated (config.Parse does).
//
// Members that health reports down are left out, or kept with weight 0 when
// the pool has inhibit set. A member left out for health is listed in
// State.Unhealthy, so the plan deletes it at once instead of draining it (a
// dead server has nothing to finish). When fewer members are up than the pool's quorum
// (or none, with quorum 0) and the pool has a sorry server, the sorry server
// is the service's only serving destination.
func Desired(cfg *config.Config, health Health) (*State, error) {
	st := NewState()
	st.Timeouts = &Timeouts{TCP: cfg.IPVSTimeouts.TCP.D(), TCPFin: cfg.IPVSTimeouts.TCPFin.D(), UDP: cfg.IPVSTimeouts.UDP.D()}
	for i := range cfg.VirtualServers {
		vs := &cfg.VirtualServers[i]
		s, err := desiredService(cfg, vs, health, st)
		if err != nil {
			return nil, fmt.Errorf("virtual server %s: %w", vs.Name, err)
		}
		if other, dup := st.Services[s.Key]; dup {
			return nil, fmt.Errorf("virtual server %s: service %s is also virtual server %s", vs.Name, s.Key, other.Name)
		}
		st.Services[s.Key] = s
	}
	return st, nil
}

func desiredService(cfg *config.Config, vs *config.VirtualServer, health Health, st *State) (*Service, error) {
	vip := vs.VIP.Addr
	from, to := vs.Port.From, vs.Port.To
	fam := uint16(unix.AF_INET)
	if vip.Is6() {
		fam = unix.AF_INET6
	}
	s := &Service{Name: vs.Name, Scheduler: string(vs.Scheduler), Dests: map[DestKey]*Dest{}}
	if from != to {
		s.Key = ServiceKey{Family: fam, FWMark: vs.Mark()}
	} else {
		proto := uint16(unix.IPPROTO_TCP)
		if vs.Protocol == config.UDP {
			proto = unix.IPPROTO_UDP
		}
		s.Key = ServiceKey{Family: fam, Protocol: proto, Addr: vip, Port: from}
	}
	bits := vs.Persistence.Netmask.Len(vip.Is6())
	if vip.Is6() {
		s.Netmask = uint32(bits)
	} else {
		s.Netmask = NetmaskV4(bits)
	}
	if vs.PersistenceOn() {
		s.Flags |= FlagPersistent
		s.Timeout = uint32(vs.Persistence.Timeout.D().Seconds())
	}
	var fwd uint32
	switch vs.Mode {
	case config.ModeNAT, config.ModeFullNAT:
		fwd = FwdMasq
	case config.ModeDR:
		fwd = FwdDR
	case config.ModeTUN:
		fwd = FwdTunnel
	default:
		return nil, fmt.Errorf("unknown mode %q", vs.Mode)
	}
	pool := cfg.Pools[vs.Pool]
	if pool == nil {
		return nil, fmt.Errorf("unknown pool %q", vs.Pool)
	}
	destPort := func(p config.Port) uint16 {
		if p != 0 {
			return uint16(p)
		}
		if from == to {
			return from
		}
		return 0 // fwmark service: keep the client's port
	}
	up := 0
	for _, m := range pool.Members {
		a := m.Address.Addr
		k := DestKey{Addr: a, Port: destPort(m.Port)}
		w := m.MemberWeight()
		if health != nil && !health(vs.Pool, netip.AddrPortFrom(a, uint16(m.Port))) {
			if !pool.Inhibit {
				if st.Unhealthy == nil {
					st.Unhealthy = map[DrainRef]bool{}
				}
				st.Unhealthy[DrainRef{Service: s.Key, Dest: k}] = true
				continue
			}
			w = 0
		}
		if w > 0 {
			up++
		}
		s.Dests[k] = &Dest{Key: k, Weight: w, Fwd: fwd}
	}
	quorum := max(pool.Quorum, 1)
	if up < quorum && pool.SorryServer != nil {
		ap := pool.SorryServer.AddrPort
		for _, d := range s.Dests {
			d.Weight = 0 // below quorum: the sorry server alone serves new connections
		}
		k := DestKey{Addr: ap.Addr(), Port: ap.Port()}
		s.Dests[k] = &Dest{Key: k, Weight: 1, Fwd: fwd}
	}
	return s, nil
}
