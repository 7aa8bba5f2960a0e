package lbd

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

// A member the operator re-enables through the API ramps in a pool with
// slow start: its IPVS weight starts at a tenth of its weight on the ramp
// scale (3 of 30, next to the other member's 10), and the health API says
// where it is in the ramp.
func TestEnabledMemberSlowStartsThroughTheAPI(t *testing.T) {
	doc := strings.Replace(cfgDoc, "  web:\n    members:", "  web:\n    slow_start: 30s\n    members:", 1)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	ip := &recIPVS{}
	ctrl := lbapply.NewController(&lbapply.Applier{IPVS: ip, NAT: noNAT{}, Log: log}, nil, log)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Pools["web"].SlowStart.D() == 0 {
		t.Fatal("the test config has no slow start")
	}
	if err := ctrl.Apply(context.Background(), path, cfg, engine.Overrides{}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(path, ctrl, noKernel{}, log).Handler())
	defer srv.Close()
	if w := ip.weights(); w["198.51.100.11"] != 1 || w["198.51.100.12"] != 3 {
		t.Fatalf("members at start ramp: %v", w)
	}
	ref := localapi.MemberRef{Pool: "web", Member: "198.51.100.12:8080"}
	if code, body := post(t, srv, localapi.PathMemberDisable, ref); code != http.StatusOK {
		t.Fatalf("disable: %d %s", code, body)
	}
	if code, body := post(t, srv, localapi.PathMemberEnable, ref); code != http.StatusOK {
		t.Fatalf("enable: %d %s", code, body)
	}
	if w := ip.weights(); w["198.51.100.11"] != 10 || w["198.51.100.12"] != 3 {
		t.Fatalf("re-enabled member: weights %v, want .12 at 3 (a tenth of 3x10) next to .11 at 10", w)
	}
	resp, err := http.Get(srv.URL + localapi.PathHealth)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var hs []localapi.MemberHealth
	if err := json.NewDecoder(resp.Body).Decode(&hs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, h := range hs {
		switch h.Member {
		case "198.51.100.12:8080":
			found = true
			if s := h.SlowStart; s == nil || s.Percent != 10 || s.LeftSeconds < 29 || s.LeftSeconds > 30 {
				t.Errorf("health of the ramping member: %+v (slow start %+v)", h, s)
			}
		default:
			if h.SlowStart != nil {
				t.Errorf("member %s not ramping shows a ramp: %+v", h.Member, h.SlowStart)
			}
		}
	}
	if !found || len(hs) != 2 {
		t.Fatalf("health lists %+v, want both members", hs)
	}
}
