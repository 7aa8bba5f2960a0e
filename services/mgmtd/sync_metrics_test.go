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

// The sync daemons, their changes and the connection entries by origin,
// as vrrpd reports them, appear in /metrics.
func TestMetricsShowSync(t *testing.T) {
	dir := t.TempDir()
	mux := http.NewServeMux()
	localapi.Route(mux, "GET", localapi.PathSync, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, localapi.SyncStatus{Enabled: true, Role: "backup", Interface: "failover", SyncID: 51,
			Daemons: []localapi.SyncDaemon{{State: "backup", Interface: "failover", SyncID: 51, Group: "224.0.0.81", Port: 8848, TTL: 1, MaxLen: 1472}},
			Started: 3, Stopped: 1, Errors: 2, ConnsLocal: 4, ConnsSynced: 120})
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.VRRPD), mux, nil)
	api := localapi.NewAppliance(dir)
	for i := 0; ; i++ {
		if _, err := api.Sync(ctx); err == nil {
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
	val := func(name, label, value string) float64 {
		t.Helper()
		for _, m := range fams[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.GetGauge() != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
		t.Fatalf("no %s{%s=%q} in\n%s", name, label, value, w.Body.String())
		return 0
	}
	for _, c := range []struct {
		name, label, value string
		want               float64
	}{
		{"fulcrum_ipvs_sync_daemon_up", "state", "backup", 1},
		{"fulcrum_ipvs_sync_daemon_up", "state", "master", 0},
		{"fulcrum_ipvs_sync_connections", "origin", "local", 4},
		{"fulcrum_ipvs_sync_connections", "origin", "synced", 120},
		{"fulcrum_ipvs_sync_daemon_changes_total", "action", "started", 3},
		{"fulcrum_ipvs_sync_daemon_changes_total", "action", "stopped", 1},
		{"fulcrum_scrape_source_up", "source", "sync", 1},
	} {
		if got := val(c.name, c.label, c.value); got != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.value, got, c.want)
		}
	}
	if got := fams["fulcrum_ipvs_sync_errors_total"].GetMetric(); len(got) != 1 || got[0].GetCounter().GetValue() != 2 {
		t.Errorf("fulcrum_ipvs_sync_errors_total: %v", got)
	}
}
