package console

import (
	"bytes"
	"context"
	"errors"
	"go.yaml.in/yaml/v3"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/power"
	"golang.org/x/crypto/bcrypt"
)

func TestEditorKeys(t *testing.T) {
	var out bytes.Buffer
	e := NewEditor(strings.NewReader("shoX\x7fw v\t\r\n\x03abc\r\x1b[A\r"), &out)
	e.Complete = func(line string) ([]string, int) {
		if strings.HasSuffix(line, " v") {
			return []string{"vs", "vrrp"}, len(line) - 1
		}
		return nil, 0
	}
	l, err := e.ReadLine("> ")
	if err != nil || l != "show v" {
		t.Fatalf("line %q %v", l, err)
	}
	if !strings.Contains(out.String(), "vrrp  vs\n> show v") {
		t.Errorf("ambiguous completion not listed: %q", out.String())
	}
	if _, err := e.ReadLine("> "); !errors.Is(err, ErrInterrupted) {
		t.Errorf("Ctrl-C: %v", err)
	}
	if l, _ := e.ReadLine("> "); l != "abc" {
		t.Errorf("after CR LF and Ctrl-C: %q", l)
	}
	if l, _ := e.ReadLine("> "); l != "abc" {
		t.Errorf("history up: %q", l)
	}
}

func TestSecretIsNotEchoed(t *testing.T) {
	var out bytes.Buffer
	e := NewEditor(strings.NewReader("hunter2\r"), &out)
	l, err := e.ReadSecret("Password: ")
	if err != nil || l != "hunter2" || strings.Contains(out.String(), "hunter2") {
		t.Fatalf("%q %v echoed %q", l, err, out.String())
	}
}

// fakeLBD serves canned local-API answers on a unix socket in dir.
func fakeLBD(t *testing.T, dir string) {
	mux := http.NewServeMux()
	localapi.Route(mux, "GET", localapi.PathVS, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, []localapi.VirtualServer{{Name: "web", Pool: "web", Protocol: "TCP", Address: "203.0.113.100:80", Scheduler: "wrr", Persistent: 600,
			Stats:   localapi.Stats{Conns: 5, PacketsIn: 50, BytesIn: 3000},
			Members: []localapi.Member{{Address: "198.51.100.11:80", Forward: "Masq", Weight: 1, Active: 2, Inactive: 7, Health: "up"}}}})
	})
	localapi.Route(mux, "GET", localapi.PathHealth, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, []localapi.MemberHealth{{Pool: "web", Member: "198.51.100.11:80", Health: "up"}, {Pool: "web", Member: "198.51.100.12:80", Health: "down"}})
	})
	localapi.Route(mux, "GET", localapi.PathConfig, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(SecretConfig))
	})
	localapi.Route(mux, "GET", localapi.PathConfigSync, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, FakeSync)
	})
	localapi.Route(mux, "POST", localapi.PathConfigRevert, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, localapi.ConfigResult{OK: true, Message: "rolled back; back=" + r.URL.Query().Get("back") + " force_local=" + r.URL.Query().Get(localapi.ForceLocal)})
	})
	localapi.Route(mux, "POST", localapi.PathConfigApply, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, localapi.ConfigResult{OK: true, Message: "applied; force_local=" + r.URL.Query().Get(localapi.ForceLocal)})
	})
	localapi.Route(mux, "POST", localapi.PathMemberDisable, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteError(w, 404, errors.New("pool web has no member \"x\"; nothing changed"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.LBD), mux, nil)
	testkit.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		return localapi.NewClient("lbd", localapi.SocketPath(dir, localapi.LBD)).Get(ctx, localapi.PathHealth, nil)
	})
}

func newCLI(t *testing.T) (*CLI, *bytes.Buffer) {
	dir := t.TempDir()
	fakeLBD(t, dir)
	var out bytes.Buffer
	c := &CLI{API: localapi.NewAppliance(dir), Out: &out, IPVSProc: filepath.Join(dir, "none"), BondDir: filepath.Join(dir, "none")}
	c.Init()
	return c, &out
}

func TestShowVSHasTheIpvsadmLayout(t *testing.T) {
	c, out := newCLI(t)
	if err := c.Run(context.Background(), "show vs"); err != nil {
		t.Fatal(err)
	}
	want := IPVSHeader + `
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  203.0.113.100:80 wrr persistent 600
  -> 198.51.100.11:80             Masq    1      2          7         

Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  203.0.113.100:80                    5       50        0     3000        0
  -> 198.51.100.11:80                    0        0        0        0        0
`
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestCLIErrorsAndCompletion(t *testing.T) {
	c, _ := newCLI(t)
	ctx := context.Background()
	for line, want := range map[string]string{
		"frob":                           `unknown command "frob"`,
		"show":                           "show what? one of: interfaces, vs",
		"member disable web":             "usage: member disable POOL MEMBER",
		"member disable web x":           `pool web has no member "x"; nothing changed`,
		"show log many":                  `"many" is not a number`,
		"show vrrp":                      "vrrpd is not answering",
		"config validate ftp://x/y.yaml": "only http:// and https://",
	} {
		err := c.Run(ctx, line)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", line, err, want)
		}
	}
	if got, _ := c.Complete("member disable web 198.51.100.1"); len(got) != 2 {
		t.Errorf("member completion: %v", got)
	}
	if got, start := c.Complete("show v"); len(got) != 2 || start != 5 {
		t.Errorf("show v: %v %d", got, start)
	}
	if got, _ := c.Complete("member disable w"); len(got) != 1 || got[0] != "web" {
		t.Errorf("pool completion: %v", got)
	}
}

func TestPowerAndPastedConfig(t *testing.T) {
	c, out := newCLI(t)
	var asked power.Action
	c.Power = func(a power.Action) error { asked = a; return nil }
	if err := c.Run(context.Background(), "poweroff"); err != nil || asked != power.PowerOff {
		t.Errorf("poweroff: %v %v", err, asked)
	}
	lines := []string{"version: 1", "hostname: bad_host", "."}
	c.ReadLine = func(string) (string, error) {
		l := lines[0]
		lines = lines[1:]
		return l, nil
	}
	err := c.Run(context.Background(), "config validate")
	if err == nil || !strings.Contains(err.Error(), "hostname (line 2)") || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("pasted invalid config: %v\n%s", err, out)
	}
}

// TestSessionLogin: a wrong password is refused, the right one gets the
// CLI; without a hash the console warns.
func TestSessionLogin(t *testing.T) {
	hash, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	in := strings.NewReader("admin\rwrong\radmin\rs3cret\rexit\r")
	var out bytes.Buffer
	c, _ := newCLI(t)
	s := &Session{In: in, Out: &out, Hostname: "lb1", Hash: hash, CLI: c, FailDelay: time.Millisecond}
	if err := s.Serve(context.Background()); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	o := out.String()
	if strings.Count(o, "Login incorrect") != 1 || strings.Count(o, LoggedIn) != 1 || strings.Contains(o, "s3cret") || strings.Contains(o, "wrong") {
		t.Errorf("session output:\n%s", o)
	}
}

// Login fails closed: whatever is wrong with the config, nobody logs in
// (before, an empty or missing hash opened the console, and `shell` is
// root); only recovery mode lets admin in without a password.
func TestLoginFailsClosed(t *testing.T) {
	dir := t.TempDir()
	base := "version: 1\nnetwork:\n  failover: {members: [eth0]}\n  internal: {members: [eth1], addresses: [198.51.100.2/24]}\n  external: {members: [eth2]}\n"
	good := "$2a$10$oNRa3xwoTZDbKXuGAXWJDOf2fNO3b545OnrK75alM.qhaXk9zGCZm"
	cases := map[string]string{
		"missing":       "",
		"yaml error":    base + "management: [\n",
		"no hash":       base,
		"empty hash":    base + "management:\n  console: {password_hash: \"\"}\n",
		"cost 4":        base + "management:\n  console: {password_hash: \"" + strings.Replace(good, "$10$", "$04$", 1) + "\"}\n",
		"cost 31":       base + "management:\n  console: {password_hash: \"" + strings.Replace(good, "$10$", "$31$", 1) + "\"}\n",
		"garbled":       base + "management:\n  console: {password_hash: \"" + strings.Replace(good, "$10$", "$1x$", 1) + "\"}\n",
		"not a hash":    base + "management:\n  console: {password_hash: secret}\n",
		"invalid + bad": base + "  mtu: 70000\nmanagement:\n  console: {password_hash: \"\"}\n",
	}
	c, _ := newCLI(t)
	for name, cfg := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		if cfg != "" {
			os.WriteFile(path, []byte(cfg), 0o600)
		}
		hash, _, err := ConsoleHash(path)
		if err == nil || hash != "" {
			t.Errorf("%s: hash %q, error %v; want no hash and the reason", name, hash, err)
			continue
		}
		var out bytes.Buffer
		s := &Session{In: strings.NewReader("admin\r\radmin\rfulcrum-lab\rshell\r"), Out: &out, Hostname: "lb1", Hash: hash, Locked: err.Error(), CLI: c, FailDelay: time.Millisecond}
		s.Serve(context.Background())
		if o := out.String(); strings.Contains(o, LoggedIn) || !strings.Contains(o, LoginDisabled+": "+err.Error()) {
			t.Errorf("%s: console session:\n%s", name, o)
		}
	}
	// A config that parses but does not validate keeps its (good) hash:
	// the admin can log in to fix it.
	path := filepath.Join(dir, "maintenance.yaml")
	os.WriteFile(path, []byte(base+"  mtu: 70000\nmanagement:\n  console: {password_hash: \""+good+"\"}\n"), 0o600)
	if hash, notice, err := ConsoleHash(path); err != nil || hash != good || !strings.Contains(notice, "mtu") {
		t.Errorf("maintenance config: hash %q notice %q error %v", hash, notice, err)
	}

	var out bytes.Buffer
	s := &Session{In: strings.NewReader("admin\rexit\r"), Out: &out, Hostname: "lb1", Locked: "no hash", Recovery: true, CLI: c}
	s.Serve(context.Background())
	if o := out.String(); !strings.Contains(o, RecoveryWarn) || !strings.Contains(o, LoggedIn) || strings.Contains(o, PasswordPrompt) {
		t.Errorf("recovery session:\n%s", o)
	}
}

// Failed logins back off (2, 2, 2, 4, 8 ... up to the maximum), and a
// restarted console (a new session on the same fail file) keeps waiting.
func TestFailedLoginsBackOffAcrossRestarts(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newCLI(t)
	file := filepath.Join(t.TempDir(), "run", "console-failures")
	unit := 50 * time.Millisecond
	var out bytes.Buffer
	s := &Session{In: strings.NewReader(strings.Repeat("admin\rwrong\r", 5)), Out: &out, Hostname: "lb1", Hash: string(hash), CLI: c,
		FailDelay: unit, MaxFailDelay: 8 * unit, FailFile: file}
	start := time.Now()
	s.Serve(context.Background())
	// 1+1+1+2+4 units of back-off.
	if took := time.Since(start); took < 9*unit {
		t.Errorf("5 failed logins took %v, want at least %v", took, 9*unit)
	}
	if b, err := os.ReadFile(file); err != nil || !strings.HasPrefix(string(b), "5 ") {
		t.Fatalf("fail file: %q %v", b, err)
	}
	// The restarted console: the 5th failure's back-off (4 units) is still
	// running, then the 6th failure waits 8 (the maximum), as does the 7th.
	out.Reset()
	s = &Session{In: strings.NewReader("admin\rwrong\r"), Out: &out, Hostname: "lb1", Hash: string(hash), CLI: c,
		FailDelay: unit, MaxFailDelay: 8 * unit, FailFile: file}
	start = time.Now()
	s.Serve(context.Background())
	if took := time.Since(start); took < 8*unit {
		t.Errorf("after a restart, a 6th failure took %v, want at least %v", took, 8*unit)
	}
	if s.backoff(7) != 8*unit || s.backoff(2) != unit || s.backoff(4) != 2*unit {
		t.Errorf("back-off 2nd %v 4th %v 7th %v", s.backoff(2), s.backoff(4), s.backoff(7))
	}
	// A good login clears the count.
	out.Reset()
	s = &Session{In: strings.NewReader("admin\rs3cret\rexit\r"), Out: &out, Hostname: "lb1", Hash: string(hash), CLI: c, FailFile: file, MaxFailDelay: 8 * unit}
	s.Serve(context.Background())
	if !strings.Contains(out.String(), LoggedIn) {
		t.Fatalf("good login after the back-off:\n%s", out.String())
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("fail file kept after a good login: %v", err)
	}
}

// FakeSync is the fake lbd's config sync view: the peer runs another
// config.
var FakeSync = localapi.ConfigSync{On: true, Self: "192.0.2.1", Generation: 4, Hash: "aaaaaaaaaaaaaaaaaaaa", Peers: []localapi.ConfigSyncPeer{
	{Address: "192.0.2.2", Reachable: true, Generation: 3, Hash: "bbbbbbbbbbbbbbbbbbbb"}}, Dropped: map[string]uint64{"unauthenticated": 2, "stale": 0}}

// show config leads with each node's config generation and hash and
// whether they agree, as comment lines (the rest stays YAML).
func TestShowConfigSaysWhetherNodesAgree(t *testing.T) {
	c, out := newCLI(t)
	if err := c.Run(context.Background(), "show config"); err != nil {
		t.Fatal(err)
	}
	o := out.String()
	for _, want := range []string{
		"# config: this node 192.0.2.1 generation 4 hash aaaaaaaaaaaaaaaa\n",
		"# config: peer 192.0.2.2 generation 3 hash bbbbbbbbbbbbbbbb: DIFFERENT config\n",
		"# config sync: the nodes DISAGREE\n",
		"# config sync: messages dropped: unauthenticated 2\n",
	} {
		if !strings.Contains(o, want) {
			t.Errorf("show config lacks %q:\n%s", want, o)
		}
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(o), &doc); err != nil || doc["version"] != 1 {
		t.Errorf("show config is no longer YAML: %v", err)
	}
	// config apply --force-local sends the flag; plain apply does not.
	for _, tc := range []struct{ cmd, want string }{{"config apply --force-local", "force_local=true"}, {"config apply", "force_local=\n"}} {
		lines := []string{"version: 1", "."}
		c.ReadLine = func(string) (string, error) {
			l := lines[0]
			lines = lines[1:]
			return l, nil
		}
		out.Reset()
		if err := c.Run(context.Background(), tc.cmd); err != nil || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%s: %v %q", tc.cmd, err, out.String())
		}
	}
}

// SecretConfig is what the fake lbd returns as the running config.
const SecretConfig = "version: 1\nmanagement:\n  console: {password_hash: \"$2a$10$oNRa3xwoTZDbKXuGAXWJDOf2fNO3b545OnrK75alM.qhaXk9zGCZm\"}\n  api: {token: \"s3cret-token-0123456789\"}\n"

// show config printed the API token and the password hash to whoever
// watches the console.
func TestShowConfigRedactsSecrets(t *testing.T) {
	c, out := newCLI(t)
	if err := c.Run(context.Background(), "show config"); err != nil {
		t.Fatal(err)
	}
	if o := out.String(); strings.Contains(o, "s3cret-token") || strings.Contains(o, "oNRa3xwoTZDb") || strings.Count(o, "<redacted>") != 2 {
		t.Errorf("show config:\n%s", o)
	}
}

// config rollback [N] sends N (default 1) and --force-local; a bad N is
// refused before anything is sent.
func TestConfigRollbackN(t *testing.T) {
	c, out := newCLI(t)
	for _, tc := range []struct{ cmd, want string }{
		{"config rollback", "back=1 force_local=\n"},
		{"config rollback 3", "back=3 force_local=\n"},
		{"config rollback --force-local 2", "back=2 force_local=true\n"},
	} {
		out.Reset()
		if err := c.Run(context.Background(), tc.cmd); err != nil || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%s: %v %q, want %q", tc.cmd, err, out.String(), tc.want)
		}
	}
	for _, bad := range []string{"config rollback 0", "config rollback x"} {
		out.Reset()
		if err := c.Run(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "nothing changed") || strings.Contains(out.String(), "rolled back") {
			t.Errorf("%s: %v %q, want a refusal", bad, err, out.String())
		}
	}
}
