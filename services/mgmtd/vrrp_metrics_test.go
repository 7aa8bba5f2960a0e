package mgmtd

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// vrrpd reports states as the state machine names them (MASTER, FAULT):
// /metrics shows 1 for the current one, and the packet counters with the
// drop reasons, e.g. adverts from hosts that are not peers (drop.peer).
func TestMetricsShowVRRPStateAndDrops(t *testing.T) {
	dir := t.TempDir()
	mux := http.NewServeMux()
	localapi.Route(mux, "GET", localapi.PathVRRP, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, localapi.VRRPStatus{Enabled: true,
			Instances: []localapi.VRRPInstance{{Instance: "vrid51", VRID: 51, Family: "ipv4", State: "MASTER", Priority: 200}, {Instance: "v6", VRID: 52, Family: "ipv6", State: "FAULT", Priority: 200}},
			Counters:  map[string]uint64{"rx": 10, "drop.peer": 7}})
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.VRRPD), mux, nil)
	api := localapi.NewAppliance(dir)
	for i := 0; ; i++ {
		if _, err := api.VRRP(ctx); err == nil {
			break
		} else if i == 200 {
			t.Fatalf("fake vrrpd did not come up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h, _ := TokenHash(config.APIAccess{Token: "0123456789abcdef-token"})
	s := &Server{API: api, TokenHash: h, BondDir: t.TempDir()}
	r := httptest.NewRequest("GET", PathMetrics, nil)
	r.Header.Set("Authorization", "Bearer 0123456789abcdef-token")
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatalf("%v\n%s", err, w.Body.String())
	}
	val := func(name string, labels map[string]string) (float64, bool) {
		for _, m := range fams[name].GetMetric() {
			match := 0
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] == l.GetValue() {
					match++
				}
			}
			if match == len(labels) {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue(), true
				}
				return m.GetCounter().GetValue(), true
			}
		}
		return 0, false
	}
	for _, tc := range []struct {
		inst, state string
		want        float64
	}{{"vrid51", "master", 1}, {"vrid51", "backup", 0}, {"v6", "fault", 1}, {"v6", "master", 0}} {
		if v, ok := val("fulcrum_vrrp_state", map[string]string{"instance": tc.inst, "state": tc.state}); !ok || v != tc.want {
			t.Errorf("fulcrum_vrrp_state{instance=%s,state=%s} = %v (present %v), want %v", tc.inst, tc.state, v, ok, tc.want)
		}
	}
	if v, ok := val("fulcrum_vrrp_packets_total", map[string]string{"kind": "drop.peer"}); !ok || v != 7 {
		t.Errorf("fulcrum_vrrp_packets_total{kind=drop.peer} = %v (present %v), want 7", v, ok)
	}
}
