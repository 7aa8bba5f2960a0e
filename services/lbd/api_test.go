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
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	mobyipvs "github.com/moby/ipvs"
	"github.com/sirupsen/logrus"
)

const cfgDoc = `version: 1
network:
  failover: {members: [eth0], addresses: [192.0.2.1/25]}
  internal: {members: [eth1], addresses: [198.51.100.2/24]}
  external: {members: [eth2], addresses: [203.0.113.2/24]}
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: "80", pool: web}
pools:
  web:
    members:
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080, weight: 3}
`

type noKernel struct{}

func (noKernel) GetServices() ([]*mobyipvs.Service, error) { return nil, nil }
func (noKernel) GetDestinations(*mobyipvs.Service) ([]*mobyipvs.Destination, error) {
	return nil, nil
}

// server starts the API with a stand-in for lbd's apply loop: every reload
// request loads the config through Loader, as the real loop does, and the
// weights it loaded are recorded.
func server(t *testing.T) (*httptest.Server, func() map[string]int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfgDoc), 0o644); err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	reload := make(chan struct{})
	a := New(path, config.Load, reload, noKernel{}, log)
	if _, err := a.Loader(path); err != nil { // lbd's first apply
		t.Fatal(err)
	}
	weights := make(chan map[string]int, 16)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-reload:
				cfg, err := a.Loader(path)
				if err != nil {
					continue
				}
				w := map[string]int{}
				for _, m := range cfg.Pools["web"].Members {
					w[m.Address.String()] = 1 // the schema's default weight
					if m.Weight != nil {
						w[m.Address.String()] = *m.Weight
					}
				}
				weights <- w
			}
		}
	}()
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	last := func() map[string]int {
		select {
		case w := <-weights:
			return w
		default:
			return nil
		}
	}
	return srv, last
}

func post(t *testing.T, srv *httptest.Server, path string, ref localapi.MemberRef) (int, string) {
	t.Helper()
	b, _ := json.Marshal(ref)
	resp, err := http.Post(srv.URL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestDisableDrainsAtWeightZeroAndEnableRestoresWeight(t *testing.T) {
	srv, last := server(t)
	code, body := post(t, srv, localapi.PathMemberDisable, localapi.MemberRef{Pool: "web", Member: "198.51.100.12:8080"})
	if code != http.StatusOK || !strings.Contains(body, "drain") {
		t.Fatalf("disable: %d %s", code, body)
	}
	if w := last(); w["198.51.100.12"] != 0 || w["198.51.100.11"] != 1 {
		t.Fatalf("weights after disable %v, want .12 at 0 and .11 untouched", w)
	}
	code, body = post(t, srv, localapi.PathMemberDisable, localapi.MemberRef{Pool: "web", Member: "198.51.100.12"})
	if code != http.StatusOK || !strings.Contains(body, "already disabled") {
		t.Fatalf("second disable: %d %s", code, body)
	}
	code, _ = post(t, srv, localapi.PathMemberEnable, localapi.MemberRef{Pool: "web", Member: "198.51.100.12"})
	if w := last(); code != http.StatusOK || w["198.51.100.12"] != 3 {
		t.Fatalf("enable: %d, weights %v, want .12 back at its configured 3", code, w)
	}
}

func TestUnknownPoolOrMemberChangesNothing(t *testing.T) {
	srv, last := server(t)
	for _, ref := range []localapi.MemberRef{{Pool: "api", Member: "198.51.100.11"}, {Pool: "web", Member: "198.51.100.99"}} {
		code, body := post(t, srv, localapi.PathMemberDisable, ref)
		if code != http.StatusNotFound || !strings.Contains(body, "nothing changed") {
			t.Errorf("%+v: %d %s, want 404 saying nothing changed", ref, code, body)
		}
	}
	if w := last(); w != nil {
		t.Fatalf("a refused request triggered a reload (weights %v)", w)
	}
}

// The applied config (and its .new and the rollback copy) held the API
// token and the password hash world-readable (0644).
func TestConfigWrittenOwnerOnly(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(p+".new", []byte("old"), 0o644) // a leftover
	if err := writeAtomic(p, []byte("version: 1\n")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config written %v, want -rw-------", fi.Mode().Perm())
	}
}
