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

// Whether the HA peer runs this node's config is a metric (0 when it
// does not), with the generation and the dropped sync messages by reason.
func TestMetricsShowConfigAgreement(t *testing.T) {
	dir := t.TempDir()
	mux := http.NewServeMux()
	var forced []string
	localapi.Route(mux, "POST", localapi.PathConfigApply, func(w http.ResponseWriter, r *http.Request) {
		forced = append(forced, r.URL.Query().Get(localapi.ForceLocal))
		localapi.WriteJSON(w, 200, localapi.ConfigResult{OK: true, Message: "applied"})
	})
	localapi.Route(mux, "GET", localapi.PathConfigSync, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, localapi.ConfigSync{On: true, Self: "192.0.2.1", Generation: 7, Hash: "aa",
			Peers:   []localapi.ConfigSyncPeer{{Address: "192.0.2.2", Reachable: true, Generation: 6, Hash: "bb"}},
			Dropped: map[string]uint64{"replayed": 3, "unauthenticated": 0}})
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.LBD), mux, nil)
	api := localapi.NewAppliance(dir)
	for i := 0; ; i++ {
		if _, err := api.ConfigSync(ctx); err == nil {
			break
		} else if i == 200 {
			t.Fatalf("fake lbd did not come up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h, _ := TokenHash(config.APIAccess{Token: "0123456789abcdef-token"})
	s := &Server{API: api, TokenHash: h, BondDir: t.TempDir()}
	r := httptest.NewRequest("GET", PathMetrics, nil)
	r.Header.Set("Authorization", "Bearer 0123456789abcdef-token")
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatalf("%v\n%s", err, w.Body.String())
	}
	one := func(name string) float64 {
		t.Helper()
		ms := fams[name].GetMetric()
		if len(ms) != 1 {
			t.Fatalf("%s: %d series in\n%s", name, len(ms), w.Body.String())
		}
		if ms[0].GetGauge() != nil {
			return ms[0].GetGauge().GetValue()
		}
		return ms[0].GetCounter().GetValue()
	}
	if v := one("fulcrum_config_peer_agree"); v != 0 {
		t.Errorf("fulcrum_config_peer_agree = %v for a peer on another config", v)
	}
	if l := fams["fulcrum_config_peer_agree"].GetMetric()[0].GetLabel(); len(l) != 1 || l[0].GetValue() != "192.0.2.2" {
		t.Errorf("peer label: %v", l)
	}
	if v := one("fulcrum_config_generation"); v != 7 {
		t.Errorf("generation %v", v)
	}
	drops := map[string]float64{}
	for _, m := range fams["fulcrum_config_sync_dropped_total"].GetMetric() {
		drops[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
	}
	if drops["replayed"] != 3 || len(drops) != 2 {
		t.Errorf("drops %v", drops)
	}

	// The API: GET /config/sync, and apply passes ?force_local=true on
	// (and only when asked).
	do := func(method, path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, bytes.NewReader([]byte("version: 1\n")))
		r.Header.Set("Authorization", "Bearer 0123456789abcdef-token")
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, r)
		return w
	}
	if w := do("GET", Prefix+"/config/sync"); w.Code != 200 || !bytes.Contains(w.Body.Bytes(), []byte(`"generation": 7`)) {
		t.Errorf("GET /config/sync: %d %s", w.Code, w.Body.String())
	}
	do("POST", Prefix+"/config/apply")
	do("POST", Prefix+"/config/apply?force_local=true")
	if len(forced) != 2 || forced[0] != "" || forced[1] != "true" {
		t.Errorf("force_local passed to lbd as %q", forced)
	}
}
