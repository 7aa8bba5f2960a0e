package engine

import (
	"strings"
	"testing"
)

// An http VS has no IPVS service (l7d serves it) but the filter admits its
// VIP and port on External like any VS.
func TestL7VirtualServerFilterAndIPVS(t *testing.T) {
	doc := strings.Replace(cfgHA, "virtual_servers:\n", "virtual_servers:\n  - {name: shop, vip: 203.0.113.100, port: 443, mode: https, pool: p, http: {cookie: {secret: 0123456789abcdef}, certificates: [{cert: /c.pem, key: /k.pem}]}}\n", 1)
	cfg := parse(t, doc)
	p, err := Filter(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, w := zoneText(p.Zones[0]), "external@ex0 ping=true svc:shop:203.0.113.100:tcp/443-443 svc:web:203.0.113.100:tcp/80-80 svc:games:203.0.113.101:udp/7000-7010"; got != w {
		t.Errorf("external:\n got %s\nwant %s", got, w)
	}
	st, err := IPVS(cfg, Overrides{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, s := range st.Services {
		if s.Name == "shop" {
			t.Errorf("the https VS got an IPVS service %s", k)
		}
	}
	if len(st.Services) != 3 {
		t.Errorf("%d IPVS services, want the 3 L4 ones", len(st.Services))
	}
	rs, err := NAT(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range rs.Marks {
		if m.VS == "shop" {
			t.Errorf("the https VS got a mark: %+v", m)
		}
	}
}
