package lbd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nat"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/stage"
	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/fulcrum-lb/fulcrum/services/cfgstore"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	mobyipvs "github.com/moby/ipvs"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
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

// recIPVS records the IPVS states the controller applies.
type recIPVS struct {
	mu   sync.Mutex
	last *ipvs.State
	fail bool
}

func (r *recIPVS) Apply(_ context.Context, st *ipvs.State) (stage.Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return stage.Change{}, errors.New("injected ipvs failure")
	}
	r.last = st
	return stage.Change{}, nil
}

// weights are the web members' weights in the last applied state.
func (r *recIPVS) weights() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := map[string]int{}
	for _, s := range r.last.Services {
		for k, d := range s.Dests {
			w[k.Addr.String()] = d.Weight
		}
	}
	return w
}

type noNAT struct{}

func (noNAT) Apply(context.Context, *nat.Ruleset) (stage.Change, error) { return stage.Change{}, nil }

// server starts the API over a real LB controller (kernel stages faked) that
// has applied the config file, as lbd does at start.
func server(t *testing.T) (*httptest.Server, *recIPVS, string, *Server) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfgDoc), 0o600); err != nil {
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
	if err := ctrl.Apply(context.Background(), path, cfg, engine.Overrides{}); err != nil {
		t.Fatal(err)
	}
	api := New(path, ctrl, noKernel{}, log)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return srv, ip, path, api
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
	srv, ip, path, _ := server(t)
	code, body := post(t, srv, localapi.PathMemberDisable, localapi.MemberRef{Pool: "web", Member: "198.51.100.12:8080"})
	if code != http.StatusOK || !strings.Contains(body, "drain") {
		t.Fatalf("disable: %d %s", code, body)
	}
	if w := ip.weights(); w["198.51.100.12"] != 0 || w["198.51.100.11"] != 1 {
		t.Fatalf("weights after disable %v, want .12 at 0 and .11 untouched", w)
	}
	if b, _ := os.ReadFile(path); string(b) != cfgDoc {
		t.Fatal("disable edited the config file; overrides are a value, not file edits")
	}
	code, body = post(t, srv, localapi.PathMemberDisable, localapi.MemberRef{Pool: "web", Member: "198.51.100.12"})
	if code != http.StatusOK || !strings.Contains(body, "already disabled") {
		t.Fatalf("second disable: %d %s", code, body)
	}
	code, _ = post(t, srv, localapi.PathMemberEnable, localapi.MemberRef{Pool: "web", Member: "198.51.100.12"})
	if w := ip.weights(); code != http.StatusOK || w["198.51.100.12"] != 3 {
		t.Fatalf("enable: %d, weights %v, want .12 back at its configured 3", code, w)
	}
}

func TestUnknownPoolOrMemberChangesNothing(t *testing.T) {
	srv, ip, _, _ := server(t)
	before := ip.last
	for _, ref := range []localapi.MemberRef{{Pool: "api", Member: "198.51.100.11"}, {Pool: "web", Member: "198.51.100.99"}} {
		code, body := post(t, srv, localapi.PathMemberDisable, ref)
		if code != http.StatusNotFound || !strings.Contains(body, "nothing changed") {
			t.Errorf("%+v: %d %s, want 404 saying nothing changed", ref, code, body)
		}
	}
	if ip.last != before {
		t.Fatalf("a refused request applied (weights %v)", ip.weights())
	}
}

// TestConfigApplyWritesTheFileOnlyAfterTheKernel: a config the kernel
// refuses leaves the file, the running view and the kernel as they were; a
// good one is applied, then written 0600, even when the client is gone.
func TestConfigApplyWritesTheFileOnlyAfterTheKernel(t *testing.T) {
	srv, ip, path, api := server(t)
	next := strings.Replace(cfgDoc, "weight: 3}", "weight: 4}", 1)
	ip.mu.Lock()
	ip.fail = true
	ip.mu.Unlock()
	resp, err := http.Post(srv.URL+localapi.PathConfigApply, "application/yaml", strings.NewReader(next))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if b, _ := os.ReadFile(path); resp.StatusCode == http.StatusOK || string(b) != cfgDoc {
		t.Fatalf("refused apply: status %d, file changed %v", resp.StatusCode, string(b) != cfgDoc)
	}
	if w := ip.weights(); w["198.51.100.12"] != 3 {
		t.Fatalf("refused apply changed the kernel: %v", w)
	}
	ip.mu.Lock()
	ip.fail = false
	ip.mu.Unlock()
	// The client is gone before the apply starts: it still runs to the end.
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	cfg, err := config.Parse([]byte(next))
	if err != nil {
		t.Fatal(err)
	}
	if res := api.applyFile(gone, []byte(next), cfg, cfgstore.SourceApply); !res.OK {
		t.Fatalf("apply: %+v", res)
	}
	fi, err := os.Stat(path)
	if b, _ := os.ReadFile(path); err != nil || string(b) != next || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file written %v, mode %v", string(b) == next, fi.Mode())
	}
	if w := ip.weights(); w["198.51.100.12"] != 4 {
		t.Fatalf("good apply not in the kernel: %v", w)
	}
	if running, _ := api.ctrl.Running(); *running.Pools["web"].Members[1].Weight != 4 {
		t.Fatal("the API's view is not the applied config")
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

// countingKernel has one service and one member whose counters are 50
// connections and 100 kB in (the member 10 connections) times n.
type countingKernel struct {
	mu sync.Mutex
	n  uint32
}

func (k *countingKernel) GetServices() ([]*mobyipvs.Service, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return []*mobyipvs.Service{{Address: net.ParseIP("203.0.113.100"), Protocol: unix.IPPROTO_TCP, Port: 80, SchedName: "rr",
		Stats: mobyipvs.SvcStats{Connections: 50 * k.n, BytesIn: 100_000 * uint64(k.n)}}}, nil
}

func (k *countingKernel) GetDestinations(*mobyipvs.Service) ([]*mobyipvs.Destination, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return []*mobyipvs.Destination{{Address: net.ParseIP("198.51.100.11"), Port: 80, Weight: 1,
		Stats: mobyipvs.DstStats{Connections: 10 * k.n}}}, nil
}

// Rates come from counter deltas between samples: /v1/vs carries the
// current rate of each service and member, /v1/rates the history.
func TestRatesFromCounterDeltas(t *testing.T) {
	srv, _, path, base := server(t)
	k := &countingKernel{}
	api := New(path, base.ctrl, k, base.log)
	srv = httptest.NewServer(api.Handler())
	defer srv.Close()
	get := func(p string, out any) {
		t.Helper()
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	sample := func(at time.Time, n uint32) {
		t.Helper()
		k.mu.Lock()
		k.n = n
		k.mu.Unlock()
		if err := api.Sample(at); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	sample(t0, 1)
	var vss []localapi.VirtualServer
	get(localapi.PathVS, &vss)
	if len(vss) != 1 || vss[0].Rate != nil {
		t.Fatalf("one sample gave a rate: %+v", vss)
	}
	// 5 s samples: n = 1, 2, 3, then 5. The current rate spans the
	// 10 s window: n 3 -> 5 in 10 s: 10 conn/s, 20 kB/s; the member 2
	// conn/s.
	sample(t0.Add(5*time.Second), 2)
	sample(t0.Add(10*time.Second), 3)
	sample(t0.Add(15*time.Second), 4)
	sample(t0.Add(20*time.Second), 5)
	get(localapi.PathVS, &vss)
	r := vss[0].Rate
	if r == nil || r.Conns != 10 || r.BytesIn != 20_000 {
		t.Fatalf("service rate %+v, want 10 conn/s and 20000 B/s", r)
	}
	if m := vss[0].Members[0].Rate; m == nil || m.Conns != 2 {
		t.Fatalf("member rate %+v, want 2 conn/s", m)
	}
	var hist []localapi.RateHistory
	get(localapi.PathRates, &hist)
	if len(hist) != 1 || hist[0].Address != "203.0.113.100:80" || len(hist[0].Points) != 4 || hist[0].Points[0].Conns != 10 {
		t.Fatalf("history %+v, want 4 points for the service, 10 conn/s first", hist)
	}
}

// An https virtual server naming a certificate file that is not there is
// refused by validate and apply as a field error; nothing changes.
func TestConfigWithMissingCertificateIsRefused(t *testing.T) {
	srv, _, path, _ := server(t)
	next := strings.Replace(cfgDoc, "pools:\n", "  - {name: shop, vip: 203.0.113.100, port: \"443\", mode: https, pool: web, http: {cookie: {secret: 0123456789abcdef}, certificates: [{cert: /nonexistent/shop.pem, key: /nonexistent/shop.key}]}}\npools:\n", 1)
	for _, p := range []string{localapi.PathConfigCheck, localapi.PathConfigApply} {
		resp, err := http.Post(srv.URL+p, "application/yaml", strings.NewReader(next))
		if err != nil {
			t.Fatal(err)
		}
		var res localapi.ConfigResult
		json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnprocessableEntity || len(res.Errors) != 1 || !strings.HasPrefix(res.Errors[0], "virtual_servers[1].http.certificates[0].cert (line 8): stat /nonexistent/shop.pem") {
			t.Fatalf("%s: %d %+v", p, resp.StatusCode, res)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != cfgDoc {
		t.Fatal("a refused config was written")
	}
}
