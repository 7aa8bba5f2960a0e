package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/power"
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
	localapi.Route(mux, "POST", localapi.PathMemberDisable, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteError(w, 404, errors.New("pool web has no member \"x\"; nothing changed"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.LBD), mux, nil)
	for i := 0; i < 100; i++ {
		if err := localapi.NewClient("lbd", localapi.SocketPath(dir, localapi.LBD)).Get(ctx, localapi.PathHealth, nil); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("fake lbd did not come up")
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
	out.Reset()
	s = &Session{In: strings.NewReader("admin\rexit\r"), Out: &out, Hostname: "lb1", CLI: c}
	s.Serve(context.Background())
	if !strings.Contains(out.String(), NoPasswordWarn) || !strings.Contains(out.String(), LoggedIn) {
		t.Errorf("no-hash session:\n%s", out.String())
	}
}
