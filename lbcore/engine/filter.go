package engine

import (
	"fmt"
	"net/netip"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/ctsync"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/filter"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvsnl"
)

// ConntrackSyncPort is conntrack sync between the HA pair (lbcore/ctsync,
// run by vrrpd; udp, admitted on Failover from the peers only).
const ConntrackSyncPort = ctsync.Port

// ConfigSyncPort is where the HA pair offers each other config applies
// (services/cfgpeer; tcp, admitted on Failover from the peers only, and
// only when vrrp.sync_key turns config sync on).
const ConfigSyncPort = 7041

// IfaceResolver turns a NIC given by name or MAC address into its name.
type IfaceResolver func(nameOrMAC string) (string, error)

// Filter translates the config into the input filter's policy: what
// each NIC group (and the management NIC) admits to the appliance itself.
//
//   - External: the external virtual services (VIP, protocol, ports), ping
//     (rate-limited).
//   - Internal: the internal (east-west) virtual services, the API when it
//     listens on internal, ping.
//   - Failover: VRRP, conntrack sync (udp/7040), IPVS connection
//     sync (udp/8848), config sync (tcp/7041, with vrrp.sync_key) and ping
//     (rate-limited) from vrrp's peers only
//     (vrrp.peers and unicast_peers); nothing from any other host.
//   - Management NIC: the API when it listens there, DHCP replies, ping.
//
// Everywhere: replies to the appliance's own connections (health checks,
// DHCP, DNS, syslog), loopback, IPv6 neighbour discovery. resolve turns a
// management NIC given by MAC into its name (nil: names only).
func Filter(cfg *config.Config, resolve IfaceResolver) (*filter.Policy, error) {
	ext := filter.Zone{Name: "external", Iface: cfg.Network.External.Bond, Ping: true}
	in := filter.Zone{Name: "internal", Iface: cfg.Network.Internal.Bond, Ping: true}
	fo := filter.Zone{Name: "failover", Iface: cfg.Network.Failover.Bond}
	for i := range cfg.VirtualServers {
		vs := &cfg.VirtualServers[i]
		if !vs.VIP.IsValid() {
			return nil, fmt.Errorf("virtual server %s: no vip", vs.Name)
		}
		proto := filter.TCP
		if vs.Protocol == config.UDP {
			proto = filter.UDP
		}
		s := filter.Service{Name: vs.Name, Addr: vs.VIP.Unmap(), Proto: proto, From: vs.Port.From, To: vs.Port.To}
		if vs.Internal {
			in.Services = append(in.Services, s)
		} else {
			ext.Services = append(ext.Services, s)
		}
	}
	api := filter.Port{Name: "api", Proto: filter.TCP, Port: uint16(cfg.Access.API.Port)}
	if cfg.Access.API.Listen == config.ListenInternal {
		in.Ports = append(in.Ports, api)
	}
	for _, a := range cfg.VRRP.AcceptFrom() {
		fo.Peers = append(fo.Peers, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	if len(fo.Peers) > 0 {
		fo.PeerPing = true // the heartbeat link can be checked from the peer
		fo.PeerRules = []filter.PeerRule{
			{Name: "vrrp", Proto: filter.VRRP},
			{Name: "conntrack-sync", Proto: filter.UDP, Port: ConntrackSyncPort},
			// The kernel's IPVS sync daemons (lbcore/ipvssync) use their
			// default port on the failover bond.
			{Name: "ipvs-sync", Proto: filter.UDP, Port: ipvsnl.DefaultPort},
		}
		if cfg.VRRP.ConfigSyncOn() {
			fo.PeerRules = append(fo.PeerRules, filter.PeerRule{Name: "config-sync", Proto: filter.TCP, Port: ConfigSyncPort})
		}
	}
	p := &filter.Policy{Zones: []filter.Zone{ext, in, fo}}
	if m := cfg.Network.Management; m != nil {
		name := m.Interface
		if config.IsMAC(name) {
			if resolve == nil {
				return nil, fmt.Errorf("management NIC %s: given by MAC and no resolver", name)
			}
			var err error
			if name, err = resolve(name); err != nil {
				return nil, fmt.Errorf("management NIC %s: %w", m.Interface, err)
			}
		}
		mz := filter.Zone{Name: "management", Iface: name, Ping: true,
			Ports: []filter.Port{{Name: "dhcp-client", Proto: filter.UDP, Port: 68, SrcPort: 67}}}
		if cfg.Access.API.Listen == config.ListenManagement {
			mz.Ports = append(mz.Ports, api)
		}
		p.Zones = append(p.Zones, mz)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}
