package engine

import (
	"testing"

	"golang.org/x/sys/unix"
)

const natConfig = `
version: 1
network:
  failover: {bond: lbfo, members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {bond: lbint, members: [eth2], addresses: [198.51.100.2/24]}
  external: {bond: lbext, members: [eth3], addresses: [203.0.113.2/24]}
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: web}
  - {name: api, vip: 203.0.113.101, port: 80, pool: api, mode: fullnat, local_address_pool: la}
  - {name: games, vip: 203.0.113.102, port: 7000-7010, protocol: udp, pool: games, mode: fullnat, local_address_pool: la, fwmark: 0x77}
pools:
  web: {members: [{address: 198.51.100.11, port: 8080}]}
  api: {members: [{address: 198.51.100.21, port: 8080}]}
  games: {members: [{address: 198.51.100.21}]}
local_address_pools:
  la: {addresses: [198.51.100.201-209]}
snat:
  ipools:
    out: {addresses: [203.0.113.200-203.0.113.209]}
  rules:
    - {source: 198.51.100.11/32, ipool: out}
`

func TestNATFromConfig(t *testing.T) {
	c := parse(t, natConfig)
	rs, err := NAT(c)
	if err != nil {
		t.Fatal(err)
	}
	apiMark := c.VirtualServers[1].Mark()
	if len(rs.Marks) != 2 || rs.Marks[0].VS != "api" || rs.Marks[0].Mark != apiMark || rs.Marks[0].From != 80 || rs.Marks[0].To != 80 ||
		rs.Marks[1].Mark != 0x77 || rs.Marks[1].From != 7000 || rs.Marks[1].To != 7010 || rs.Marks[1].Proto != unix.IPPROTO_UDP {
		t.Errorf("marks = %+v (nat VS web must have none)", rs.Marks)
	}
	if len(rs.FullNAT) != 2 || rs.FullNAT[0].VS != "api" || rs.FullNAT[0].Mark != apiMark || rs.FullNAT[1].Mark != 0x77 ||
		rs.FullNAT[0].First.String() != "198.51.100.201" || rs.FullNAT[0].Last.String() != "198.51.100.209" {
		t.Errorf("fullnat = %+v", rs.FullNAT)
	}
	if len(rs.SNAT) != 1 || rs.SNAT[0].OutIface != "lbext" || rs.SNAT[0].First.String() != "203.0.113.200" || rs.SNAT[0].Source.String() != "198.51.100.11/32" {
		t.Errorf("snat = %+v", rs.SNAT)
	}
}
