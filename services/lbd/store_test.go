package lbd

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/services/cfgstore"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"golang.org/x/sys/unix"
)

func withWeight(w string) string {
	return strings.Replace(cfgDoc, "weight: 3}", "weight: "+w+"}", 1)
}

func postYAML(t *testing.T, srv *httptest.Server, path, body string) (int, localapi.ConfigResult) {
	t.Helper()
	resp, err := http.Post(srv.URL+path, "application/yaml", strings.NewReader(body))
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

// TestRollbackNThroughTheStore: apply A, apply B; history lists B, A and
// the boot config; rollback 1 runs A again (kernel, file, store), rollback
// 3 from there reaches the boot config; a rollback too far back, a bad N and a
// damaged stored file are refused naming the problem, and change nothing.
func TestRollbackNThroughTheStore(t *testing.T) {
	srv, ip, path, api := server(t)
	root := t.TempDir()
	api.Store = cfgstore.NewDir(root, 5, true, "test partition")
	a, b := withWeight("4"), withWeight("5")
	for _, c := range []string{a, b} {
		if code, res := postYAML(t, srv, localapi.PathConfigApply, c); code != 200 || !res.OK {
			t.Fatalf("apply: %d %+v", code, res)
		}
	}
	var h localapi.ConfigHistory
	resp, err := http.Get(srv.URL + localapi.PathConfigHistory)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if len(h.Configs) != 3 || !h.Configs[0].Running || h.Configs[2].Source != "boot" || !h.Persistent {
		t.Fatalf("history %+v, want B (running), A, boot", h)
	}

	code, res := postYAML(t, srv, localapi.PathConfigRevert, "")
	if code != 200 || !strings.Contains(res.Message, "rolled back 1") {
		t.Fatalf("rollback: %d %+v", code, res)
	}
	if w := ip.weights(); w["198.51.100.12"] != 4 {
		t.Fatalf("after rollback weights %v, want A's 4", w)
	}
	if f, _ := os.ReadFile(path); string(f) != a {
		t.Error("config file is not A after the rollback")
	}
	if got, _, _ := api.Store.Load(0); string(got) != a {
		t.Error("store's newest is not A after the rollback")
	}
	// Now: A (the rollback), B, A, boot. Three back is the boot config.
	if code, _ := postYAML(t, srv, localapi.PathConfigRevert+"?back=3", ""); code != 200 || ip.weights()["198.51.100.12"] != 3 {
		t.Fatalf("rollback 3: %d, weights %v, want the boot config's 3", code, ip.weights())
	}

	before := ip.last
	for q, want := range map[string]string{"?back=9": "no stored config 9 back", "?back=0": "1 or more", "?back=x": "1 or more"} {
		code, res := postYAML(t, srv, localapi.PathConfigRevert+q, "")
		if code == 200 || !strings.Contains(res.Message, want) || !strings.Contains(res.Message, "nothing changed") {
			t.Errorf("rollback%s: %d %q, want refusal with %q", q, code, res.Message, want)
		}
	}
	l, _ := api.Store.List()
	storeFile := filepath.Join(root, cfgstore.Dir, l[1].File)
	if err := os.WriteFile(storeFile, []byte("# fulcrum-store v1 gen=1 size=3 sha256=00\nabc"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, res = postYAML(t, srv, localapi.PathConfigRevert, "")
	if code == 200 || !strings.Contains(res.Message, "damaged") || !strings.Contains(res.Message, "nothing changed") {
		t.Errorf("rollback to a damaged file: %d %q", code, res.Message)
	}
	if ip.last != before || ip.weights()["198.51.100.12"] != 3 {
		t.Errorf("a refused rollback changed the kernel: %v", ip.weights())
	}
}

// TestApplyOnAFullStoreChangesNothing: when the store cannot take the
// config (a full partition) the apply is refused saying so, and the
// kernel, the config file and the store hold the old config.
func TestApplyOnAFullStoreChangesNothing(t *testing.T) {
	testkit.Require(t, testkit.Root)
	srv, ip, path, api := server(t)
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(root, 0) })
	api.Store = cfgstore.NewDir(root, 5, true, "test partition")
	big := withWeight("4") + "# " + strings.Repeat("x", 200<<10) + "\n"
	code, res := postYAML(t, srv, localapi.PathConfigApply, big)
	if code == 200 || !strings.Contains(res.Message, "no space left") || !strings.Contains(res.Message, "nothing changed") {
		t.Fatalf("apply to a full store: %d %q", code, res.Message)
	}
	if w := ip.weights(); w["198.51.100.12"] != 3 {
		t.Errorf("kernel weights %v after a refused apply, want the old 3", w)
	}
	if f, _ := os.ReadFile(path); string(f) != cfgDoc {
		t.Error("config file changed by a refused apply")
	}
	if l, _ := api.Store.List(); len(l) != 0 {
		t.Errorf("store holds %+v after a refused apply, want nothing", l)
	}
}

// TestApplyReplySaysWhetherItOutlivesAReboot: without a persistent store
// the reply says the change lasts until reboot and points at export, and
// names network changes as not in effect; with one it says they take
// effect at the next boot; an LB-only change says it is all in effect.
func TestApplyReplySaysWhetherItOutlivesAReboot(t *testing.T) {
	srv, _, _, api := server(t)
	netChange := strings.Replace(withWeight("4"), "203.0.113.2/24", "203.0.113.3/24", 1)
	_, res := postYAML(t, srv, localapi.PathConfigApply, netChange)
	if !res.OK || !strings.Contains(res.Message, "lasts until the appliance reboots") || !strings.Contains(res.Message, "lbctl config export") ||
		!strings.Contains(res.Message, "network changes are NOT in effect") || strings.Contains(res.Message, "next boot") {
		t.Errorf("RAM store reply: %q", res.Message)
	}
	api.Store = cfgstore.NewDir(t.TempDir(), 5, true, "config partition TEST")
	_, res = postYAML(t, srv, localapi.PathConfigApply, withWeight("5"))
	if !res.OK || !strings.Contains(res.Message, "saved to the config partition TEST") || !strings.Contains(res.Message, "network changes take effect at the next boot") {
		t.Errorf("persistent store, network change: %q", res.Message)
	}
	_, res = postYAML(t, srv, localapi.PathConfigApply, withWeight("6"))
	if !res.OK || !strings.Contains(res.Message, "all of it is in effect now") {
		t.Errorf("persistent store, LB-only change: %q", res.Message)
	}
}

// TestDisableIsSavedInTheStore: a member disable is saved as overrides in
// the store (what the next boot restores), an enable saves none disabled.
func TestDisableIsSavedInTheStore(t *testing.T) {
	srv, _, _, api := server(t)
	api.Store = cfgstore.NewDir(t.TempDir(), 5, true, "test partition")
	if code, body := post(t, srv, localapi.PathMemberDisable, localapi.MemberRef{Pool: "web", Member: "198.51.100.12:8080"}); code != 200 || strings.Contains(body, "NOT saved") {
		t.Fatalf("disable: %d %s", code, body)
	}
	b, err := api.Store.Overrides()
	if err != nil || !strings.Contains(string(b), "198.51.100.12") {
		t.Fatalf("stored overrides %q %v", b, err)
	}
	post(t, srv, localapi.PathMemberEnable, localapi.MemberRef{Pool: "web", Member: "198.51.100.12:8080"})
	if b, _ := api.Store.Overrides(); strings.Contains(string(b), "198.51.100.12") {
		t.Errorf("after enable the store still disables it: %s", b)
	}
}

// TestRecordRunningStoresTheBootConfigOnce: at start lbd records the
// config it runs when the store's newest is not it (so rollback counts
// from what runs), once, and takes the config's history length.
func TestRecordRunningStoresTheBootConfigOnce(t *testing.T) {
	_, _, _, api := server(t)
	api.Store = cfgstore.NewDir(t.TempDir(), 9, true, "test partition")
	api.RecordRunning()
	api.RecordRunning()
	l, err := api.Store.List()
	if err != nil || len(l) != 1 || l[0].Source != cfgstore.SourceBoot {
		t.Fatalf("store after two starts: %+v %v, want one boot entry", l, err)
	}
	if api.Store.Keep() != 5 {
		t.Errorf("keep %d, want the config's default 5", api.Store.Keep())
	}
}

// TestPeerUndoRemovesTheStoredApply: when the HA peer refuses after this
// node committed, the undo runs the old config and takes the undone
// config out of the store, so the next boot and rollback never see it.
func TestPeerUndoRemovesTheStoredApply(t *testing.T) {
	_, ip, _, api := server(t)
	api.Store = cfgstore.NewDir(t.TempDir(), 5, true, "test partition")
	p, refused := api.newPlan([]byte(withWeight("4")))
	if refused != nil {
		t.Fatal(refused)
	}
	l := syncLocal{api}
	if err := l.Commit(p, 1); err != nil {
		t.Fatal(err)
	}
	if st, _ := api.Store.List(); len(st) != 2 || ip.weights()["198.51.100.12"] != 4 {
		t.Fatalf("after commit: store %+v, weights %v", st, ip.weights())
	}
	if err := l.Undo(p); err != nil {
		t.Fatal(err)
	}
	st, _ := api.Store.List()
	b, _, _ := api.Store.Load(0)
	if len(st) != 1 || string(b) != cfgDoc || ip.weights()["198.51.100.12"] != 3 {
		t.Fatalf("after undo: store %+v (newest %q), weights %v; want only the boot config", st, b, ip.weights())
	}
}
