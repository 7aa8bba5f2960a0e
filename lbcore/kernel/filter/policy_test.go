package filter

import (
	"net/netip"
	"strings"
	"testing"
)

func TestValidateNamesEveryProblem(t *testing.T) {
	if err := labPolicy().Validate(); err != nil {
		t.Fatalf("lab policy: %v", err)
	}
	p := &Policy{Zones: []Zone{
		{Name: "External", Iface: "lbext"},
		{Name: "a", Iface: "lo"},
		{Name: "b", Iface: "lbint", Services: []Service{{Name: "s", Addr: netip.MustParseAddr("203.0.113.1"), Proto: TCP, From: 90, To: 80}}},
		{Name: "b", Iface: "lbint", Ports: []Port{{Name: "x", Proto: VRRP, Port: 1}}},
		{Name: "c", Iface: "averyveryverylongifname", PeerRules: []PeerRule{{Name: "vrrp", Proto: VRRP}}},
	}}
	err := p.Validate()
	if err == nil {
		t.Fatal("invalid policy accepted")
	}
	for _, want := range []string{
		`zone 0: name "External"`,
		"zone a: loopback is always accepted",
		"zone b: service s: port range 90-80",
		"zone b: defined twice",
		"interface lbint is in two zones",
		"port x: vrrp/1 is not a tcp or udp port",
		`interface "averyveryverylongifname" is not an interface name`,
		"zone c: peer rules but no peers",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
