package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/services/daemon/notify"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

const base = `version: 1
network:
  failover: {members: [eth0], addresses: [192.0.2.1/25]}
  internal: {members: [eth1], addresses: [198.51.100.2/24]}
  external: {members: [eth2], addresses: [203.0.113.2/24]}
`

func logLine(t *testing.T, cfg string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(p, []byte(cfg), 0o644)
	log, err := Logger("lbd", "info", p)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log.Logger.SetOutput(&buf)
	log.WithField("vs", "web").Info("applied")
	return buf.String()
}

func TestJSONWhenTheConfigAsksForIt(t *testing.T) {
	out := logLine(t, base+"management:\n  log: {format: json}\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("not JSON: %q (%v)", out, err)
	}
	if rec["msg"] != "applied" || rec["daemon"] != "lbd" || rec["vs"] != "web" {
		t.Fatalf("record %v", rec)
	}
}

func TestTextByDefaultAndOnABrokenConfig(t *testing.T) {
	for _, cfg := range []string{base, "version: 99\n"} {
		out := logLine(t, cfg)
		if !strings.Contains(out, `msg=applied`) || !strings.Contains(out, "daemon=lbd") || strings.HasPrefix(out, "{") {
			t.Fatalf("want a text line, got %q", out)
		}
	}
	if _, err := Logger("lbd", "loud", "/nonexistent"); err == nil {
		t.Fatal("a bad level must be an error")
	}
}

func TestReadyAndHeartbeatReachTheSupervisorsPipe(t *testing.T) {
	r, w, env, err := notify.Open(3 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	vars[notify.EnvFD] = strconv.Itoa(int(w.Fd())) // in a child this is fd 3
	n, err := notify.FromEnv(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx := WithNotifier(context.Background(), n)
	if WatchdogInterval(ctx) != 3*time.Second {
		t.Fatalf("watchdog %v, want 3s", WatchdogInterval(ctx))
	}
	Ready(ctx)
	Heartbeat(ctx)
	w.Close()
	var got []notify.Message
	notify.Read(r, func(m notify.Message) { got = append(got, m) })
	if len(got) != 2 || got[0] != notify.Ready || got[1] != notify.Heartbeat {
		t.Fatalf("supervisor read %q, want READY then WATCHDOG", got)
	}
	// without a supervisor every call is a no-op
	Ready(context.Background())
	Heartbeat(context.Background())
	if WatchdogInterval(context.Background()) != 0 {
		t.Fatal("no supervisor: no watchdog")
	}
}

func TestHeartbeatNeverBlocksOnAFullPipe(t *testing.T) {
	r, w, _, err := notify.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	n, err := notify.FromEnv(func(k string) string {
		if k == notify.EnvFD {
			return strconv.Itoa(int(w.Fd()))
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := WithNotifier(context.Background(), n)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 100000; i++ { // 1.1 MB: far beyond a pipe's buffer
			Heartbeat(ctx)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Heartbeat blocked on a pipe nobody reads")
	}
}

func TestNothingToDoExitsWithTheDoNotRestartStatus(t *testing.T) {
	log := logrus.NewEntry(logrus.New())
	log.Logger.SetOutput(io.Discard)
	for err, want := range map[error]int{nil: 0, ErrNothingToDo: notify.DoNotRestart, fmt.Errorf("no DHCP: %w", ErrNothingToDo): notify.DoNotRestart, errors.New("boom"): 1} {
		if got := exitCode(err, "d", log); got != want {
			t.Errorf("exit for %v = %d, want %d", err, got, want)
		}
	}
	if notify.DoNotRestart != 125 {
		t.Fatal("the documented do-not-restart status is 125")
	}
}

func TestServeSocketIsOwnerOnly(t *testing.T) {
	old := unix.Umask(0)
	defer unix.Umask(old)
	path := filepath.Join(t.TempDir(), "d.sock")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ServeSocket(ctx, path, http.NotFoundHandler(), nil) }()
	testkit.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
		}
		return err
	})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want 0600 even with umask 0", fi.Mode().Perm(), err)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
