package lbd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

// FuzzRequestBodies posts arbitrary bodies to lbd's local API endpoints
// that read one (config check, member disable and enable), through the
// real handler and an httptest recorder. No body may panic or get a 5xx;
// every answer is JSON; a body that is not JSON is a 400 on the member
// endpoints; the config check answers 200 exactly when the loader accepts
// the body. (Config apply writes the running config file and is left to
// the API tests.) Seeds: valid and refused requests, testdata/fuzz.
func FuzzRequestBodies(f *testing.F) {
	f.Add(uint8(0), []byte(cfgDoc))
	f.Add(uint8(0), []byte("version: 1\nnetwork: {}\n"))
	f.Add(uint8(1), []byte(`{"pool":"web","member":"198.51.100.12:8080"}`))
	f.Add(uint8(2), []byte(`{"pool":"web","member":"198.51.100.12"}`))
	f.Add(uint8(1), []byte(`{"pool":"api","member":"198.51.100.11"}`))
	f.Add(uint8(2), []byte(`{"pool":"web","member":"198.51.100.11","extra":1}`))

	path := filepath.Join(f.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfgDoc), 0o600); err != nil {
		f.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	ctrl := lbapply.NewController(&lbapply.Applier{IPVS: &recIPVS{}, NAT: noNAT{}, Log: log}, nil, log)
	cfg, err := config.Load(path)
	if err != nil {
		f.Fatal(err)
	}
	if err := ctrl.Apply(context.Background(), path, cfg, engine.Overrides{}); err != nil {
		f.Fatal(err)
	}
	a := New(path, ctrl, noKernel{}, log)
	h := a.Handler()
	paths := []string{localapi.PathConfigCheck, localapi.PathMemberDisable, localapi.PathMemberEnable}

	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		p := paths[int(which)%len(paths)]
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, p, bytes.NewReader(body)))
		if w.Code >= 500 {
			t.Fatalf("POST %s %q: %d %s", p, body, w.Code, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("POST %s %q: answer is not JSON: %q", p, body, w.Body)
		}
		switch p {
		case localapi.PathConfigCheck:
			_, err := config.Parse(body)
			if (err == nil) != (w.Code == http.StatusOK) {
				t.Fatalf("config check of %q: %d, loader says %v", body, w.Code, err)
			}
		default:
			if !json.Valid(body) && w.Code != http.StatusBadRequest {
				t.Fatalf("POST %s with a body that is not JSON (%q): %d %s, want 400", p, body, w.Code, w.Body)
			}
		}
	})
}
