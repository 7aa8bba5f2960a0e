package engine

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"golang.org/x/sys/unix"
)

const testNetwork = `
version: 1
network:
  failover: {members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {members: [eth2], addresses: [198.51.100.2/24]}
  external: {members: [eth3], addresses: [203.0.113.2/24]}
local_address_pools:
  la: {addresses: [198.51.100.201-209]}
`

const testLB = testNetwork + `
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: web, scheduler: rr}
  - {name: api, vip: 203.0.113.101, port: 443, pool: api, mode: fullnat, local_address_pool: la, persistence: {enabled: false}}
  - {name: range, vip: 203.0.113.102, port: 8000-8010, pool: plain, mode: dr, persistence: {netmask: 255.255.255.0, timeout: 60s}}
  - {name: dns, vip: 203.0.113.103, port: 53, protocol: udp, pool: plain, mode: tun}
pools:
  web:
    members:
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080, weight: 2}
  api:
    members: [{address: 198.51.100.21, port: 8443}, {address: 198.51.100.22, port: 8443}]
  plain:
    members: [{address: 198.51.100.31}, {address: 198.51.100.32}]
`

func parse(t *testing.T, doc string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

func svcKey(proto uint16, vip string, port uint16) ipvs.ServiceKey {
	return ipvs.ServiceKey{Family: unix.AF_INET, Protocol: proto, Addr: netip.MustParseAddr(vip), Port: port}
}

func dk(a string, p uint16) ipvs.DestKey { return ipvs.DestKey{Addr: netip.MustParseAddr(a), Port: p} }

func TestIPVSFromConfig(t *testing.T) {
	c := parse(t, testLB)
	st, err := IPVS(c, Overrides{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 4 {
		t.Fatalf("%d services, want 4", len(st.Services))
	}
	web := st.Services[svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)]
	if web == nil || web.Scheduler != "rr" || web.Flags != ipvs.FlagPersistent || web.Timeout != 600 || web.Netmask != 0xffffffff {
		t.Fatalf("web = %+v", web)
	}
	if d := web.Dests[dk("198.51.100.12", 8080)]; d == nil || d.Weight != 2 || d.Fwd != ipvs.FwdMasq {
		t.Errorf("web member 2 = %+v", d)
	}
	api := st.Services[svcKey(unix.IPPROTO_TCP, "203.0.113.101", 443)]
	if api == nil || api.Flags != 0 || api.Timeout != 0 || api.Scheduler != "wrr" {
		t.Errorf("api (persistence off, default wrr) = %+v", api)
	}
	rangeKey := ipvs.ServiceKey{Family: unix.AF_INET, FWMark: c.VirtualServers[2].Mark()}
	rs := st.Services[rangeKey]
	if rs == nil {
		t.Fatalf("no fwmark service %s in %v", rangeKey, st.SortedServices())
	}
	if rs.Timeout != 60 || rs.Netmask != ipvs.NetmaskV4(24) || ipvs.NetmaskV4(24) == 0xffffffff {
		t.Errorf("range persistence = %d s netmask %#x", rs.Timeout, rs.Netmask)
	}
	if d := rs.Dests[dk("198.51.100.31", 0)]; d == nil || d.Fwd != ipvs.FwdDR {
		t.Errorf("fwmark member (port 0 keeps client port, dr) = %+v in %v", d, rs.SortedDests())
	}
	dns := st.Services[svcKey(unix.IPPROTO_UDP, "203.0.113.103", 53)]
	if d := dns.Dests[dk("198.51.100.31", 53)]; d == nil || d.Fwd != ipvs.FwdTunnel {
		t.Errorf("dns member (port 0 -> VS port, tun) = %+v", dns.SortedDests())
	}
	if st.Timeouts.TCP != 90*time.Second {
		t.Errorf("tcp timeout %v", st.Timeouts.TCP)
	}
}

const sorryDoc = testNetwork + `
virtual_servers:
  - {name: a, vip: 203.0.113.100, port: 80, pool: a}
  - {name: b, vip: 203.0.113.101, port: 80, pool: b}
  - {name: c, vip: 203.0.113.102, port: 80, pool: c}
pools:
  a:
    monitor: m
    members: [{address: 198.51.100.11}, {address: 198.51.100.12}]
  b:
    monitor: m
    inhibit: true
    quorum: 2
    sorry_server: 198.51.100.99:8080
    members: [{address: 198.51.100.21}, {address: 198.51.100.22}]
  c:
    monitor: m
    quorum: 2
    sorry_server: 198.51.100.99:8080
    members: [{address: 198.51.100.31}, {address: 198.51.100.32}]
monitors:
  m: {type: tcp}
`

// down12 says .12, .22 and .32 are down.
func down12(r config.MemberRef) (Verdict, DynamicWeight) {
	switch r.Addr.String() {
	case "198.51.100.12", "198.51.100.22", "198.51.100.32":
		return Down, NoWeight
	}
	return Up, NoWeight
}

func TestIPVSHealthInhibitSorry(t *testing.T) {
	st, err := IPVS(parse(t, sorryDoc), Overrides{}, down12)
	if err != nil {
		t.Fatal(err)
	}
	a := st.Services[svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)]
	if len(a.Dests) != 1 || a.Dests[dk("198.51.100.11", 80)] == nil {
		t.Errorf("pool a: down member not removed: %v", a.SortedDests())
	}
	if !st.Unhealthy[ipvs.DrainRef{Service: a.Key, Dest: dk("198.51.100.12", 80)}] {
		t.Errorf("pool a: the down member is not marked for deletion without drain: %v", st.Unhealthy)
	}
	b := st.Services[svcKey(unix.IPPROTO_TCP, "203.0.113.101", 80)]
	if got := len(b.Dests); got != 3 {
		t.Fatalf("pool b: %d dests, want 2 inhibited/quorum-lost + sorry", got)
	}
	if b.Dests[dk("198.51.100.22", 80)].Weight != 0 || b.Dests[dk("198.51.100.21", 80)].Weight != 0 || b.Dests[dk("198.51.100.99", 8080)].Weight != 1 {
		t.Errorf("pool b below quorum: %+v", b.SortedDests())
	}
}

// TestPoolPolicyStatusAgreesWithIPVS: under an active sorry server (pool c:
// quorum 2, one member up, no inhibit) the status and the IPVS destinations
// come from the same policy: the up member stays in IPVS at weight 0 (its
// connections finish) and the status says it does not serve, the sorry
// server serves. Before engine, status dropped the member that IPVS kept.
func TestPoolPolicyStatusAgreesWithIPVS(t *testing.T) {
	cfg := parse(t, sorryDoc)
	st, err := IPVS(cfg, Overrides{}, down12)
	if err != nil {
		t.Fatal(err)
	}
	for _, vs := range cfg.VirtualServers {
		pool := cfg.Pools[vs.Pool]
		res := PoolPolicy(pool, PoolMembers(vs.Pool, pool, Overrides{}, down12))
		svc := st.Services[ServiceKey(&vs)]
		for _, d := range res.Members {
			k := dk(d.Ref.Addr.String(), 80)
			got, in := svc.Dests[k]
			if in != d.In || (in && got.Weight != d.Weight) {
				t.Errorf("%s %s: ipvs has %v (in=%v), policy says in=%v weight %d", vs.Pool, k, got, in, d.In, d.Weight)
			}
		}
		sorry, in := svc.Dests[dk("198.51.100.99", 8080)]
		if in != res.SorryActive || (in && sorry.Weight != 1) {
			t.Errorf("%s: sorry server in ipvs %v, policy says active %v", vs.Pool, in, res.SorryActive)
		}
	}
	c := PoolPolicy(cfg.Pools["c"], PoolMembers("c", cfg.Pools["c"], Overrides{}, down12))
	if !c.SorryActive || c.Serving != 1 || c.QuorumMet || !c.Members[0].In || c.Members[0].Weight != 0 || c.Members[1].In {
		t.Errorf("pool c = %+v, want the sorry server active, the up member in at weight 0, the down one out", c)
	}
}

func TestPoolPolicy(t *testing.T) {
	ref := func(s string) config.MemberRef { return config.MemberRef{Pool: "p", Addr: netip.MustParseAddr(s)} }
	members := []MemberState{
		{Ref: ref("192.0.2.1"), Weight: 5, Up: true},
		{Ref: ref("192.0.2.2"), Weight: 1},
		{Ref: ref("192.0.2.3"), Weight: 2, Up: true, Disabled: true},
	}
	sorry := &config.AddrPort{AddrPort: netip.MustParseAddrPort("192.0.2.9:80")}
	for _, tc := range []struct {
		name         string
		pool         config.Pool
		in           string
		weights      []int
		serving      int
		quorum, sorr bool
	}{
		{"remove failed", config.Pool{}, "101", []int{5, 0, 0}, 1, true, false},
		{"inhibit", config.Pool{Inhibit: true}, "111", []int{5, 0, 0}, 1, true, false},
		{"quorum met", config.Pool{Quorum: 1, SorryServer: sorry}, "101", []int{5, 0, 0}, 1, true, false},
		{"below quorum, sorry", config.Pool{Quorum: 2, SorryServer: sorry}, "101", []int{0, 0, 0}, 1, false, true},
		{"below quorum, no sorry", config.Pool{Quorum: 2}, "101", []int{5, 0, 0}, 1, false, false},
	} {
		res := PoolPolicy(&tc.pool, members)
		in := ""
		for i, d := range res.Members {
			in += map[bool]string{true: "1", false: "0"}[d.In]
			if d.Weight != tc.weights[i] {
				t.Errorf("%s: member %d weight %d, want %d", tc.name, i, d.Weight, tc.weights[i])
			}
		}
		if in != tc.in || res.Serving != tc.serving || res.QuorumMet != tc.quorum || res.SorryActive != tc.sorr {
			t.Errorf("%s: in %s serving %d quorum %v sorry %v", tc.name, in, res.Serving, res.QuorumMet, res.SorryActive)
		}
	}
}

// TestOverridesAreAValue: disabling a member changes the desired state, not
// the config; enabling it again restores its configured weight.
func TestOverridesAreAValue(t *testing.T) {
	cfg := parse(t, testLB)
	r, err := cfg.FindMember("web", "198.51.100.12:8080")
	if err != nil {
		t.Fatal(err)
	}
	ov := Overrides{}.With(r, true)
	st, _ := IPVS(cfg, ov, nil)
	web := svcKey(unix.IPPROTO_TCP, "203.0.113.100", 80)
	if w := st.Services[web].Dests[dk("198.51.100.12", 8080)].Weight; w != 0 {
		t.Errorf("disabled member weight %d, want 0", w)
	}
	if *cfg.Pools["web"].Members[1].Weight != 2 || len(Overrides{}.Disabled) != 0 {
		t.Error("the override edited the config or the zero overrides")
	}
	st, _ = IPVS(cfg, ov.With(r, false), nil)
	if w := st.Services[web].Dests[dk("198.51.100.12", 8080)].Weight; w != 2 {
		t.Errorf("enabled member weight %d, want 2", w)
	}
	if _, err := cfg.FindMember("web", "198.51.100.99"); err == nil {
		t.Error("unknown member found")
	}
}

// TestPoolPanicThreshold: more than the threshold of enabled members down
// at once overrules health (all enabled members serve at their weights);
// at or below it, down members leave; 0% turns it off; a disabled member
// never comes back through panic; a pool with a sorry server defaults to
// no panic.
func TestPoolPanicThreshold(t *testing.T) {
	ref := func(i int) config.MemberRef {
		return config.MemberRef{Pool: "p", Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})}
	}
	pct := func(v int) *config.Percent { p := config.Percent(v); return &p }
	four := func(up string, disabled int) []MemberState {
		var ms []MemberState
		for i, c := range up {
			ms = append(ms, MemberState{Ref: ref(i + 1), Weight: i + 1, Up: c == '1', Down: c == '0', Disabled: i+1 == disabled})
		}
		return ms
	}
	sorry := &config.AddrPort{AddrPort: netip.MustParseAddrPort("192.0.2.9:80")}
	for _, tc := range []struct {
		name     string
		pool     config.Pool
		up       string
		disabled int
		panic    bool
		weights  []int
		in       string
	}{
		{"default, 2 of 4 down: no panic", config.Pool{}, "1100", 0, false, []int{1, 2, 0, 0}, "1100"},
		{"default, 3 of 4 down: panic", config.Pool{}, "1000", 0, true, []int{1, 2, 3, 4}, "1111"},
		{"default, all down: panic", config.Pool{}, "0000", 0, true, []int{1, 2, 3, 4}, "1111"},
		{"default, all unchecked: no panic", config.Pool{}, "????", 0, false, []int{0, 0, 0, 0}, "0000"},
		{"default, 1 down 3 unchecked: no panic", config.Pool{}, "0???", 0, false, []int{0, 0, 0, 0}, "0000"},
		{"0% off, all down", config.Pool{PanicThreshold: pct(0)}, "0000", 0, false, []int{0, 0, 0, 0}, "0000"},
		{"25%, 2 of 4 down: panic", config.Pool{PanicThreshold: pct(25)}, "1100", 0, true, []int{1, 2, 3, 4}, "1111"},
		{"disabled member stays out", config.Pool{}, "0000", 2, true, []int{1, 0, 3, 4}, "1011"},
		{"disabled not counted: 2 of 3 enabled down", config.Pool{}, "1010", 3, true, []int{1, 2, 0, 4}, "1111"},
		{"sorry server: default off", config.Pool{SorryServer: sorry}, "0000", 0, false, []int{0, 0, 0, 0}, "0000"},
		{"sorry server, threshold set", config.Pool{SorryServer: sorry, PanicThreshold: pct(50)}, "1000", 0, true, []int{1, 2, 3, 4}, "1111"},
	} {
		res := PoolPolicy(&tc.pool, four(tc.up, tc.disabled))
		in := ""
		for i, d := range res.Members {
			in += map[bool]string{true: "1", false: "0"}[d.In]
			if d.Weight != tc.weights[i] {
				t.Errorf("%s: member %d weight %d, want %d", tc.name, i+1, d.Weight, tc.weights[i])
			}
		}
		if res.Panic != tc.panic || in != tc.in {
			t.Errorf("%s: panic %v in %s, want panic %v in %s", tc.name, res.Panic, in, tc.panic, tc.in)
		}
		if res.Panic && res.SorryActive {
			t.Errorf("%s: sorry server active in panic", tc.name)
		}
	}
}

// TestPanicThresholdConfig: panic_threshold reads "N%" or N, 0..100, and a
// bad value is refused as field.path (line N).
func TestPanicThresholdConfig(t *testing.T) {
	for _, tc := range []struct {
		val  string
		want config.Percent
	}{{`"30%"`, 30}, {`0`, 0}, {`100%`, 100}} {
		doc := strings.Replace(sorryDoc, "pools:\n  a:\n", "pools:\n  a:\n    panic_threshold: "+tc.val+"\n", 1)
		cfg := parse(t, doc)
		if got := cfg.Pools["a"].Panic(); got != tc.want {
			t.Errorf("panic_threshold %s: %v, want %v", tc.val, got, tc.want)
		}
	}
	doc := strings.Replace(sorryDoc, "pools:\n  a:\n", "pools:\n  a:\n    panic_threshold: 150%\n", 1)
	_, err := config.Parse([]byte(doc))
	if err == nil || !strings.Contains(err.Error(), "pools.a.panic_threshold (line") {
		t.Errorf("panic_threshold 150%%: %v, want a field error", err)
	}
}
