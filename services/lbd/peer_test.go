package lbd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/services/cfgpeer"
	"github.com/fulcrum-lb/fulcrum/services/cfgstore"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

const syncKeyLine = "  sync_key: \"lab-sync-key-0123456789\"\n"

// withSyncKey adds vrrp.sync_key after the vrrp.peers line.
func withSyncKey(t *testing.T, b []byte) string {
	t.Helper()
	s := string(b)
	if strings.Contains(s, "\n  sync_key: ") {
		return s // the lab configs have one
	}
	i := strings.Index(s, "  peers: [")
	if i < 0 {
		t.Fatal("config has no vrrp.peers")
	}
	j := i + strings.Index(s[i:], "\n") + 1
	return s[:j] + syncKeyLine + s[j:]
}

type syncNode struct {
	srv  *httptest.Server
	api  *Server
	node *cfgpeer.Node
	path string
	ip   *recIPVS
	cfg  *config.Config
}

// syncServer is lbd's API over a faked kernel, running the lab config
// file of node (1 or 2), with config sync to the other over loopback
// (127.0.0.N stands in for the failover address).
func syncServer(t *testing.T, ctx context.Context, node int, port int) *syncNode {
	t.Helper()
	self, peer := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	if node == 2 {
		self, peer = peer, self
	}
	return syncServerAt(t, ctx, node, port, self, peer, nil)
}

// syncServerAt is syncServer with config sync from self to peer, inside
// ns when ns is not nil.
func syncServerAt(t *testing.T, ctx context.Context, node, port int, self, peer netip.Addr, ns *testkit.NS) *syncNode {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "qemu", "configs", []string{"", "ha-lb1.yaml", "ha-lb2.yaml"}[node]))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(withSyncKey(t, src)), 0o600); err != nil {
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
	if err := ctrl.Apply(ctx, path, cfg, engine.Overrides{}); err != nil {
		t.Fatal(err)
	}
	api := New(path, ctrl, noKernel{}, log)
	s := syncSetup(cfg)
	if s.Off != "" || len(s.Key) == 0 {
		t.Fatalf("sync off for the lab config: %s", s.Off)
	}
	o := cfgpeer.Options{Self: self, Peers: []netip.Addr{peer}, Key: s.Key, Port: port, Interval: time.Hour, Timeout: 2 * time.Second, Local: syncLocal{api}, Log: log}
	if ns != nil {
		o.Dial = func(ctx context.Context, addr string) (c net.Conn, err error) {
			err = ns.Do(func() error {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: self.AsSlice()}}
				c, err = d.DialContext(ctx, "tcp", addr)
				return err
			})
			return c, err
		}
	}
	n, err := cfgpeer.New(o)
	if err != nil {
		t.Fatal(err)
	}
	api.sync = n
	var l net.Listener
	listen := func() (err error) {
		l, err = n.Listen(ctx)
		return err
	}
	if ns != nil {
		err = ns.Do(listen)
	} else {
		err = listen()
	}
	if err != nil {
		t.Fatal(err)
	}
	go n.Run(ctx, l)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return &syncNode{srv: srv, api: api, node: n, path: path, ip: ip, cfg: cfg}
}

func applyVia(t *testing.T, n *syncNode, body string, query string) (int, localapi.ConfigResult) {
	t.Helper()
	resp, err := http.Post(n.srv.URL+localapi.PathConfigApply+query, "application/yaml", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res localapi.ConfigResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, res
}

func syncStatusOf(t *testing.T, n *syncNode) localapi.ConfigSync {
	t.Helper()
	n.node.SyncNow(context.Background())
	resp, err := http.Get(n.srv.URL + localapi.PathConfigSync)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s localapi.ConfigSync
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func loopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

const extraVS = `  - name: web-new
    vip: 203.0.113.103
    port: "80"
    mode: nat
    scheduler: rr
    persistence: {enabled: false}
    pool: web
`

// The lab pair: an apply on lb1 runs on lb2 with lb2's own node sections;
// a config lb2 refuses (a local address pool only lb1 has) changes
// neither; a forced apply shows as disagreement.
func TestApplyOfferedToPeer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	port := loopbackPort(t)
	lb1, lb2 := syncServer(t, ctx, 1, port), syncServer(t, ctx, 2, port)
	s1, s2 := syncStatusOf(t, lb1), syncStatusOf(t, lb2)
	if !s1.Agree || !s2.Agree || s1.Hash != s2.Hash {
		t.Fatalf("the lab nodes start disagreeing: %+v / %+v", s1, s2)
	}
	orig1, _ := os.ReadFile(lb1.path)
	next := strings.Replace(string(orig1), "\npools:", "\n"+extraVS+"\npools:", 1)
	n := labVirtualServers(t, orig1) + 1 // the lab's and web-new, last
	code, res := applyVia(t, lb1, next, "")
	if code != http.StatusOK || !res.OK || !strings.Contains(res.Message, "127.0.0.2") {
		t.Fatalf("apply: %d %+v", code, res)
	}
	f2, _ := os.ReadFile(lb2.path)
	cfg2, err := config.Parse(f2)
	if err != nil {
		t.Fatalf("lb2's file after the apply: %v", err)
	}
	if cfg2.Hostname != "lb2" || cfg2.VRRP.Priority != 100 || len(cfg2.VirtualServers) != n || cfg2.VirtualServers[n-1].Name != "web-new" {
		t.Fatalf("lb2 runs host %s priority %d with %d virtual servers", cfg2.Hostname, cfg2.VRRP.Priority, len(cfg2.VirtualServers))
	}
	if running, _ := lb2.api.ctrl.Running(); len(running.VirtualServers) != n {
		t.Fatalf("lb2's controller runs %d virtual servers", len(running.VirtualServers))
	}
	if cfg2.LocalAddressPools["la"].Addresses[0].String() != "198.51.100.201-198.51.100.204" {
		t.Errorf("lb2's local addresses changed: %v", cfg2.LocalAddressPools["la"].Addresses)
	}
	s1, s2 = syncStatusOf(t, lb1), syncStatusOf(t, lb2)
	if !s1.Agree || !s2.Agree || s1.Hash != s2.Hash || s1.Generation != 1 || s2.Generation != 1 {
		t.Fatalf("after the apply: %+v / %+v", s1, s2)
	}
	// Both config stores hold the new config: lb1's as its apply, lb2's as
	// taken from the peer (each after the config it booted with).
	for _, n := range []struct {
		node *syncNode
		src  cfgstore.Source
	}{{lb1, cfgstore.SourceApply}, {lb2, cfgstore.SourcePeer}} {
		l, err := n.node.api.Store.List()
		if err != nil || len(l) != 2 || l[0].Source != n.src || l[1].Source != cfgstore.SourceBoot {
			t.Fatalf("config store after the apply: %+v %v, want %s then boot", l, err, n.src)
		}
	}
	stored1, _ := lb1.api.Store.List()

	// lb2 refuses: web-new uses a local address pool only lb1 defines.
	before1, _ := os.ReadFile(lb1.path)
	before2, _ := os.ReadFile(lb2.path)
	onlyLB1 := strings.Replace(next, "  la: {addresses: [198.51.100.201-204]}\n", "  la: {addresses: [198.51.100.201-204]}\n  la1: {addresses: [198.51.100.209]}\n", 1)
	onlyLB1 = strings.Replace(onlyLB1, "198.51.100.204]\n", "198.51.100.204, 198.51.100.209]\n", 1) // local addresses float
	onlyLB1 = strings.Replace(onlyLB1, "  - name: web-new\n    vip: 203.0.113.103\n    port: \"80\"\n    mode: nat\n", "  - name: web-new\n    vip: 203.0.113.103\n    port: \"80\"\n    mode: fullnat\n    local_address_pool: la1\n", 1)
	if _, err := config.Parse([]byte(onlyLB1)); err != nil {
		t.Fatalf("the lb1-only config is invalid on lb1 too: %v", err)
	}
	code, res = applyVia(t, lb1, onlyLB1, "")
	if code == http.StatusOK || !strings.Contains(res.Message, "peer 127.0.0.2 refused") || !strings.Contains(res.Message, "local_address_pool") {
		t.Fatalf("config lb2 refuses: %d %+v", code, res)
	}
	after1, _ := os.ReadFile(lb1.path)
	after2, _ := os.ReadFile(lb2.path)
	if !bytes.Equal(before1, after1) || !bytes.Equal(before2, after2) {
		t.Fatal("a config the peer refused changed a file")
	}
	if r1, _ := lb1.api.ctrl.Running(); r1.VirtualServers[n-1].Mode != config.ModeNAT {
		t.Fatal("a config the peer refused runs on lb1")
	}
	if l, _ := lb1.api.Store.List(); len(l) != len(stored1) || l[0].Gen != stored1[0].Gen {
		t.Fatalf("a config the peer refused is in lb1's config store: %+v", l)
	}

	// Forced on lb1 only: the nodes disagree, loudly in the status.
	code, res = applyVia(t, lb1, onlyLB1, "?"+localapi.ForceLocal+"=true")
	if code != http.StatusOK || !strings.Contains(res.Message, "this node only") {
		t.Fatalf("forced apply: %d %+v", code, res)
	}
	s1, s2 = syncStatusOf(t, lb1), syncStatusOf(t, lb2)
	if s1.Agree || s2.Agree || s1.Hash == s2.Hash || s1.Generation != 2 || s2.Generation != 1 {
		t.Fatalf("after a forced apply the nodes agree: %+v / %+v", s1, s2)
	}
}

// labVirtualServers counts the virtual servers of a lab config.
func labVirtualServers(t *testing.T, src []byte) int {
	t.Helper()
	c, err := config.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	return len(c.VirtualServers)
}
