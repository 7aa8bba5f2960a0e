package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"golang.org/x/crypto/bcrypt"
)

// fakeDaemons serves canned lbd and vrrpd answers and records the changes
// asked of them.
type fakeDaemons struct {
	mu      sync.Mutex
	changes []string
}

func (f *fakeDaemons) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changes = append(f.changes, s)
}

func (f *fakeDaemons) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.changes...)
}

func startFakes(t *testing.T) (*localapi.Appliance, *fakeDaemons) {
	t.Helper()
	dir := t.TempDir()
	f := &fakeDaemons{}
	lbd := http.NewServeMux()
	localapi.Route(lbd, "GET", localapi.PathVS, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, []localapi.VirtualServer{{Name: "web", Pool: "webpool", Protocol: "TCP", Address: "203.0.113.100:80", Scheduler: "rr",
			Rate:    &localapi.Rate{Conns: 3},
			Members: []localapi.Member{{Pool: "webpool", Address: "198.51.100.11:80", Forward: "Masq", Weight: 1, Active: 2, Health: "up"}}}})
	})
	localapi.Route(lbd, "GET", localapi.PathHealth, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, []localapi.MemberHealth{
			{Pool: "webpool", Member: "198.51.100.11", Monitor: "http", Health: "up", Check: localapi.Check{LastOK: true, LastReason: "HTTP 200", LastCheck: time.Now()}},
			{Pool: "webpool", Member: "198.51.100.12", Monitor: "http", Health: "down", Check: localapi.Check{LastReason: "connection refused", LastCheck: time.Now()}},
		})
	})
	localapi.Route(lbd, "GET", localapi.PathRates, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, []localapi.RateHistory{{Protocol: "TCP", Address: "203.0.113.100:80", Points: []localapi.RatePoint{{Time: time.Now(), Rate: localapi.Rate{Conns: 3}}}}})
	})
	localapi.Route(lbd, "POST", localapi.PathMemberDisable, func(w http.ResponseWriter, r *http.Request) {
		var ref localapi.MemberRef
		localapi.ReadJSON(r, &ref)
		f.record("disable " + ref.Pool + "/" + ref.Member)
		localapi.WriteJSON(w, 200, localapi.Message{Message: "member disabled"})
	})
	localapi.Route(lbd, "POST", localapi.PathMemberEnable, func(w http.ResponseWriter, r *http.Request) {
		var ref localapi.MemberRef
		localapi.ReadJSON(r, &ref)
		f.record("enable " + ref.Pool + "/" + ref.Member)
		localapi.WriteJSON(w, 200, localapi.Message{Message: "member enabled"})
	})
	localapi.Route(lbd, "POST", localapi.PathConfigDiff, func(w http.ResponseWriter, r *http.Request) {
		f.record("diff")
		localapi.WriteJSON(w, 200, localapi.ConfigDiff{OK: true, Message: "1 change", Sections: []localapi.DiffSection{{Title: "IPVS", Live: true, Lines: []string{"+ TCP 203.0.113.100:80"}}}})
	})
	localapi.Route(lbd, "POST", localapi.PathConfigApply, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.record("apply " + string(b))
		localapi.WriteJSON(w, 200, localapi.ConfigResult{OK: true, Message: "config applied"})
	})
	vrrpd := http.NewServeMux()
	localapi.Route(vrrpd, "GET", localapi.PathVRRP, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, localapi.VRRPStatus{Enabled: true, Instances: []localapi.VRRPInstance{{Instance: "ext", VRID: 51, State: "MASTER", Master: "192.0.2.1"}}})
	})
	localapi.Route(vrrpd, "POST", localapi.PathSwitchover, func(w http.ResponseWriter, r *http.Request) {
		f.record("switchover")
		localapi.WriteJSON(w, 200, localapi.Message{Message: "switching over"})
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.LBD), lbd, nil)
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.VRRPD), vrrpd, nil)
	api := localapi.NewAppliance(dir)
	for i := 0; ; i++ {
		_, err1 := api.VirtualServers(ctx)
		_, err2 := api.VRRP(ctx)
		if err1 == nil && err2 == nil {
			break
		} else if i == 200 {
			t.Fatalf("fake daemons did not come up: %v %v", err1, err2)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return api, f
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type rig struct {
	t      *testing.T
	h      http.Handler
	clk    *clock
	fakes  *fakeDaemons
	hashOK bool
}

func newRig(t *testing.T, tls bool) *rig {
	api, fakes := startFakes(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, clk: &clock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}, fakes: fakes, hashOK: true}
	s := &Server{API: api, TLS: tls, Now: r.clk.now, BondDir: t.TempDir(),
		Check: func(h, pw string) bool { return bcrypt.CompareHashAndPassword([]byte(h), []byte(pw)) == nil },
		Hash: func() (string, error) {
			if !r.hashOK {
				return "", errors.New("no console password set (management.console.password_hash)")
			}
			return string(hash), nil
		}}
	r.h = s.Handler()
	return r
}

// do sends a request with an optional session cookie and CSRF token.
func (r *rig) do(method, path, body, cookie, csrf string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = "192.0.2.254:40000"
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
	}
	if csrf != "" {
		req.Header.Set(CSRFHeader, csrf)
	}
	w := httptest.NewRecorder()
	r.h.ServeHTTP(w, req)
	return w
}

func (r *rig) login(pw string) (cookie *http.Cookie, csrf string, code int) {
	w := r.do("POST", PathLogin, `{"user":"admin","password":"`+pw+`"}`, "", "")
	if w.Code != 200 {
		return nil, "", w.Code
	}
	var a LoginAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil {
		r.t.Fatal(err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == CookieName {
			cookie = c
		}
	}
	if cookie == nil {
		r.t.Fatal("login set no session cookie")
	}
	return cookie, a.CSRF, 200
}

func TestLoginCookieAndRateLimit(t *testing.T) {
	for _, tls := range []bool{false, true} {
		r := newRig(t, tls)
		if _, _, code := r.login("wrong"); code != http.StatusUnauthorized {
			t.Fatalf("wrong password: %d", code)
		}
		// The next attempt, even with the right password, waits.
		if _, _, code := r.login("correct horse"); code != http.StatusTooManyRequests {
			t.Fatalf("attempt right after a failure: %d, want 429", code)
		}
		r.clk.advance(2 * time.Second)
		c, csrf, code := r.login("correct horse")
		if code != 200 {
			t.Fatalf("right password after the pause: %d", code)
		}
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure != tls || c.Path != Prefix || csrf == "" {
			t.Errorf("cookie %+v (tls %v), csrf %q: want HttpOnly, SameSite=Strict, Secure only under TLS, path %s", c, tls, csrf, Prefix)
		}
		if w := r.do("POST", PathLogin, `{"user":"root","password":"correct horse"}`, "", ""); w.Code != http.StatusUnauthorized {
			t.Errorf("another user name: %d", w.Code)
		}
	}
	// Failures in a row back off like the console: 2 s three times, then
	// doubling.
	r := newRig(t, false)
	for i := 1; i <= 4; i++ {
		if _, _, code := r.login("wrong"); code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, code)
		}
		if i < 4 {
			r.clk.advance(2 * time.Second)
		}
	}
	r.clk.advance(2 * time.Second)
	if _, _, code := r.login("correct horse"); code != http.StatusTooManyRequests {
		t.Fatalf("after 4 failures, 2 s is not enough: %d", code)
	}
	r.clk.advance(2 * time.Second)
	if _, _, code := r.login("correct horse"); code != 200 {
		t.Fatalf("after 4 failures and 4 s: %d", code)
	}
}

func TestLoginFailsClosedWithoutAHash(t *testing.T) {
	r := newRig(t, false)
	r.hashOK = false
	w := r.do("POST", PathLogin, `{"user":"admin","password":"correct horse"}`, "", "")
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "password_hash") {
		t.Fatalf("no usable hash: %d %s, want 403 naming the reason", w.Code, w.Body.String())
	}
}

// Actions need the session and its CSRF token; without either nothing
// reaches the daemons.
func TestActionsNeedSessionAndCSRF(t *testing.T) {
	r := newRig(t, false)
	c, csrf, code := r.login("correct horse")
	if code != 200 {
		t.Fatal(code)
	}
	body := `{"pool":"webpool","member":"198.51.100.11","action":"disable"}`
	if w := r.do("POST", PathMember, body, "", csrf); w.Code != http.StatusUnauthorized {
		t.Errorf("no session: %d", w.Code)
	}
	if w := r.do("POST", PathMember, body, "forged-session", csrf); w.Code != http.StatusUnauthorized {
		t.Errorf("unknown session: %d", w.Code)
	}
	if w := r.do("POST", PathMember, body, c.Value, ""); w.Code != http.StatusForbidden {
		t.Errorf("no CSRF token: %d", w.Code)
	}
	if w := r.do("POST", PathMember, body, c.Value, csrf+"x"); w.Code != http.StatusForbidden {
		t.Errorf("wrong CSRF token: %d", w.Code)
	}
	if w := r.do("POST", PathHA, `{"action":"switchover"}`, c.Value, ""); w.Code != http.StatusForbidden {
		t.Errorf("switchover without CSRF: %d", w.Code)
	}
	if got := r.fakes.got(); len(got) != 0 {
		t.Fatalf("refused requests reached the daemons: %v", got)
	}
	if w := r.do("POST", PathMember, body, c.Value, csrf); w.Code != 200 {
		t.Fatalf("with session and CSRF: %d %s", w.Code, w.Body.String())
	}
	if w := r.do("POST", PathMember, `{"pool":"webpool","member":"198.51.100.11","action":"drain"}`, c.Value, csrf); w.Code != 200 {
		t.Fatalf("drain: %d %s", w.Code, w.Body.String())
	}
	if w := r.do("POST", PathMember, `{"pool":"webpool","member":"198.51.100.11","action":"enable"}`, c.Value, csrf); w.Code != 200 {
		t.Fatalf("enable: %d", w.Code)
	}
	if w := r.do("POST", PathMember, `{"pool":"webpool","member":"198.51.100.11","action":"explode"}`, c.Value, csrf); w.Code != http.StatusBadRequest {
		t.Fatalf("unknown action: %d", w.Code)
	}
	if w := r.do("POST", PathHA, `{"action":"switchover"}`, c.Value, csrf); w.Code != 200 {
		t.Fatalf("switchover: %d", w.Code)
	}
	want := []string{"disable webpool/198.51.100.11", "disable webpool/198.51.100.11", "enable webpool/198.51.100.11", "switchover"}
	if got := r.fakes.got(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("daemons were asked %v, want %v", got, want)
	}
}

func TestStateLogoutAndExpiry(t *testing.T) {
	r := newRig(t, false)
	if w := r.do("GET", PathState, "", "", ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("state without a session: %d", w.Code)
	}
	c, csrf, _ := r.login("correct horse")
	w := r.do("GET", PathState, "", c.Value, "")
	if w.Code != 200 {
		t.Fatalf("state: %d %s", w.Code, w.Body.String())
	}
	var st State
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.CSRF != csrf || len(st.VirtualServers) != 1 || st.VRRP == nil || st.VRRP.Instances[0].State != "MASTER" {
		t.Fatalf("state %+v", st)
	}
	vs := st.VirtualServers[0]
	if len(vs.Pool) != 2 || vs.Pool[0].Kernel == nil || vs.Pool[0].Kernel.Weight != 1 || vs.Pool[1].Kernel != nil ||
		vs.Pool[1].Health != "down" || vs.Pool[1].Check.LastReason != "connection refused" || len(vs.History) != 1 {
		t.Fatalf("pool members not joined with the kernel's view: %+v", vs)
	}
	if st.Errors["snat"] == "" || st.Errors["log"] == "" {
		t.Errorf("daemons that do not answer are not named: %v", st.Errors)
	}
	// Idle past the timeout: the session is gone.
	r.clk.advance(31 * time.Minute)
	if w := r.do("GET", PathState, "", c.Value, ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("state after 31 idle minutes: %d", w.Code)
	}
	// Used every 20 minutes, a session still ends after 12 hours.
	c, _, _ = r.login("correct horse")
	for i := 0; i < 35; i++ {
		r.clk.advance(20 * time.Minute)
		if w := r.do("GET", PathState, "", c.Value, ""); w.Code != 200 {
			t.Fatalf("active session refused after %d min", (i+1)*20)
		}
	}
	r.clk.advance(21 * time.Minute)
	if w := r.do("GET", PathState, "", c.Value, ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("session older than 12 h accepted")
	}
	// Logout needs the CSRF token and ends the session.
	c, csrf, _ = r.login("correct horse")
	if w := r.do("POST", PathLogout, "{}", c.Value, ""); w.Code != http.StatusForbidden {
		t.Fatalf("logout without CSRF: %d", w.Code)
	}
	if w := r.do("POST", PathLogout, "{}", c.Value, csrf); w.Code != 200 {
		t.Fatalf("logout: %d", w.Code)
	}
	if w := r.do("GET", PathState, "", c.Value, ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("state after logout: %d", w.Code)
	}
}

// The page works offline: no file refers to another origin, and the
// answers forbid framing and foreign scripts.
func TestPageIsSelfContained(t *testing.T) {
	r := newRig(t, false)
	w := r.do("GET", Prefix, "", "", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `<script src="app.js"`) {
		t.Fatalf("index: %d %s", w.Code, w.Body.String())
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	n := 0
	fs.WalkDir(webFS, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, _ := webFS.ReadFile(p)
		for _, bad := range []string{"http://", "https://", "//cdn", "@import"} {
			if strings.Contains(string(b), bad) && !strings.Contains(string(b), "http://www.w3.org/2000/svg") {
				t.Errorf("%s refers to %q", p, bad)
			}
		}
		if p == "web/index.html" {
			return nil // served as Prefix itself
		}
		if w := r.do("GET", Prefix+strings.TrimPrefix(p, "web/"), "", "", ""); w.Code != 200 {
			t.Errorf("GET %s: %d", p, w.Code)
		}
		return nil
	})
	if n < 3 {
		t.Fatalf("embedded %d files", n)
	}
}

// Config apply takes only a config whose diff was shown (its digest), with
// the session and CSRF token.
func TestConfigDiffThenApply(t *testing.T) {
	r := newRig(t, false)
	c, csrf, _ := r.login("correct horse")
	body := func(yaml, digest string) string {
		b, _ := json.Marshal(ConfigRequest{YAML: yaml, Digest: digest})
		return string(b)
	}
	yaml := "version: 1\nhostname: lb1\n"
	if w := r.do("POST", PathConfigDiff, body(yaml, ""), c.Value, ""); w.Code != http.StatusForbidden {
		t.Fatalf("diff without CSRF: %d", w.Code)
	}
	w := r.do("POST", PathConfigDiff, body(yaml, ""), c.Value, csrf)
	if w.Code != 200 {
		t.Fatalf("diff: %d %s", w.Code, w.Body.String())
	}
	var d DiffAnswer
	json.Unmarshal(w.Body.Bytes(), &d)
	if !d.OK || len(d.Sections) != 1 || d.Digest == "" {
		t.Fatalf("diff answer %+v", d)
	}
	if w := r.do("POST", PathConfigApply, body(yaml+"# edited after the diff\n", d.Digest), c.Value, csrf); w.Code != http.StatusConflict {
		t.Fatalf("apply of a text other than the diffed one: %d", w.Code)
	}
	if w := r.do("POST", PathConfigApply, body(yaml, d.Digest), "", csrf); w.Code != http.StatusUnauthorized {
		t.Fatalf("apply without a session: %d", w.Code)
	}
	if got := r.fakes.got(); len(got) != 1 || got[0] != "diff" {
		t.Fatalf("refused applies reached lbd: %v", got)
	}
	if w := r.do("POST", PathConfigApply, body(yaml, d.Digest), c.Value, csrf); w.Code != 200 {
		t.Fatalf("apply: %d %s", w.Code, w.Body.String())
	}
	if got := r.fakes.got(); strings.Join(got, ",") != "diff,apply "+yaml {
		t.Fatalf("lbd was asked %q", got)
	}
}
