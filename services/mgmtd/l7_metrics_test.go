package mgmtd

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

// The L7 proxy's per-VS and per-member counters, as l7d reports them on its
// socket, appear in /metrics.
func TestMetricsShowL7(t *testing.T) {
	dir := t.TempDir()
	mux := http.NewServeMux()
	localapi.Route(mux, "GET", localapi.PathL7, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, []localapi.L7VirtualServer{{
			Name: "shop", Mode: "https", Address: "203.0.113.100:443", Pool: "web",
			Requests: map[string]uint64{"2xx": 41, "5xx": 2}, BytesOut: 9000, BadCookies: 3, ConnsOpen: 7, ConnsEvicted: 1,
			Members: []localapi.L7Member{{Pool: "web", Member: "198.51.100.11:8080", Usable: true, Active: 2, Requests: 30, Errors: 1}},
		}})
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.L7D), mux, nil)
	api := localapi.NewAppliance(dir)
	for i := 0; ; i++ {
		if _, err := api.L7(ctx); err == nil {
			break
		} else if i == 200 {
			t.Fatalf("fake l7d did not come up: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	h, _ := TokenHash(config.APIAccess{Token: "0123456789abcdef-token"})
	s := &Server{API: api, TokenHash: h, BondDir: t.TempDir()}
	r := httptest.NewRequest("GET", PathMetrics, nil)
	r.Header.Set("Authorization", "Bearer 0123456789abcdef-token")
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	body := w.Body.String()
	for _, want := range []string{
		`fulcrum_l7_requests_total{address="203.0.113.100:443",class="2xx",vs="shop"} 41`,
		`fulcrum_l7_requests_total{address="203.0.113.100:443",class="5xx",vs="shop"} 2`,
		`fulcrum_l7_bad_cookies_total{address="203.0.113.100:443",vs="shop"} 3`,
		`fulcrum_l7_connections{address="203.0.113.100:443",vs="shop"} 7`,
		`fulcrum_l7_member_requests_total{member="198.51.100.11:8080",pool="web",vs="shop"} 30`,
		`fulcrum_l7_member_errors_total{member="198.51.100.11:8080",pool="web",vs="shop"} 1`,
		`fulcrum_l7_member_active_requests{member="198.51.100.11:8080",pool="web",vs="shop"} 2`,
		`fulcrum_l7_member_usable{member="198.51.100.11:8080",pool="web",vs="shop"} 1`,
		`fulcrum_scrape_source_up{source="l7d"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}
