package mgmtd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/power"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestTokenAndPowerNeedTheToken(t *testing.T) {
	h, err := TokenHash(config.APIAccess{Token: "0123456789abcdef-token"})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("0123456789abcdef-token"))
	if h2, _ := TokenHash(config.APIAccess{TokenSHA256: hex.EncodeToString(sum[:])}); h2 != h {
		t.Fatal("token and token_sha256 disagree")
	}
	if _, err := TokenHash(config.APIAccess{}); err == nil {
		t.Fatal("no token accepted")
	}
	var asked []power.Action
	s := &Server{API: localapi.NewAppliance(t.TempDir()), TokenHash: h, Power: func(a power.Action) error { asked = append(asked, a); return nil }}
	hd := s.Handler()
	do := func(tok, body string) int {
		r := httptest.NewRequest("POST", Prefix+"/power", strings.NewReader(body))
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		w := httptest.NewRecorder()
		hd.ServeHTTP(w, r)
		return w.Code
	}
	if c := do("", `{"action":"reboot"}`); c != http.StatusUnauthorized {
		t.Errorf("no token: %d", c)
	}
	if c := do("nope", `{"action":"reboot"}`); c != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", c)
	}
	if len(asked) != 0 {
		t.Fatalf("power asked without a valid token: %v", asked)
	}
	if c := do("0123456789abcdef-token", `{"action":"dance"}`); c != http.StatusBadRequest || len(asked) != 0 {
		t.Errorf("bad action: %d %v", c, asked)
	}
	if c := do("0123456789abcdef-token", `{"action":"reboot"}`); c != http.StatusAccepted || len(asked) != 1 || asked[0] != power.Reboot {
		t.Errorf("reboot: %d %v", c, asked)
	}
}

// With no daemon answering, /metrics still parses and says which sources
// failed.
func TestMetricsParseWithSourcesDown(t *testing.T) {
	h, _ := TokenHash(config.APIAccess{Token: "0123456789abcdef-token"})
	s := &Server{API: localapi.NewAppliance(t.TempDir()), TokenHash: h, BondDir: t.TempDir()}
	r := httptest.NewRequest("GET", PathMetrics, nil)
	r.Header.Set("Authorization", "Bearer 0123456789abcdef-token")
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, r)
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatalf("%v\n%s", err, w.Body.String())
	}
	up := map[string]float64{}
	for _, m := range fams["fulcrum_scrape_source_up"].GetMetric() {
		up[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
	}
	if up["lbd"] != 0 || up["vrrpd"] != 0 || up["init"] != 0 || up["bonds"] != 1 {
		t.Errorf("source up: %v", up)
	}
}

// The dashboard is reached without the bearer token (it has its own
// login); the API still needs the token, and "/" leads to the dashboard.
func TestDashboardBesideTheAPI(t *testing.T) {
	h, _ := TokenHash(config.APIAccess{Token: "0123456789abcdef-token"})
	dash := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("dashboard " + r.URL.Path)) })
	s := &Server{API: localapi.NewAppliance(t.TempDir()), TokenHash: h, Dashboard: dash}
	hd := s.Handler()
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		hd.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w
	}
	if w := get("/ui/api/state"); w.Code != 200 || w.Body.String() != "dashboard /ui/api/state" {
		t.Errorf("/ui/api/state: %d %q", w.Code, w.Body.String())
	}
	if w := get("/"); w.Code != http.StatusFound || w.Header().Get("Location") != "/ui/" {
		t.Errorf("/: %d %q", w.Code, w.Header().Get("Location"))
	}
	for _, p := range []string{Prefix + "/vs", PathMetrics, "/uix", "/api/v1/../ui/"} {
		if w := get(p); w.Code == 200 {
			t.Errorf("%s answered without the token: %q", p, w.Body.String())
		}
	}
}
