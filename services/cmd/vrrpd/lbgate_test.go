package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

type fakeProbe struct {
	supervised    bool
	supervisedErr error
	appliedAfter  int // lbApplied answers true from this call on (0: never)
	applyCalls    atomic.Int32
}

func (f *fakeProbe) lbSupervised(context.Context) (bool, error) { return f.supervised, f.supervisedErr }
func (f *fakeProbe) lbApplied(context.Context) (bool, error) {
	n := int(f.applyCalls.Add(1))
	if f.appliedAfter > 0 && n >= f.appliedAfter {
		return true, nil
	}
	return false, errors.New("lbd has not applied a config yet")
}

func testLog() (*logrus.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	return l, &buf
}

func TestWaitForLB(t *testing.T) {
	g := gateTimes{initGrace: 50 * time.Millisecond, poll: 5 * time.Millisecond, max: 300 * time.Millisecond}
	for _, tc := range []struct {
		name       string
		probe      *fakeProbe
		minWait    time.Duration
		maxWait    time.Duration
		applyCalls int32 // -1: any
		log        string
	}{
		{"no init at all", &fakeProbe{supervisedErr: errNoInit}, 0, 40 * time.Millisecond, 0, "not under the appliance's init"},
		{"init not answering", &fakeProbe{supervisedErr: errors.New("connection refused")}, 50 * time.Millisecond, 250 * time.Millisecond, 0, "init's service list not available"},
		{"lbd not a service", &fakeProbe{supervised: false}, 0, 40 * time.Millisecond, 0, "lbd is not one of this appliance's services"},
		{"lbd applies on the 4th look", &fakeProbe{supervised: true, appliedAfter: 4}, 15 * time.Millisecond, 250 * time.Millisecond, 4, "lbd has applied its config: starting VRRP"},
		{"lbd never applies", &fakeProbe{supervised: true}, 300 * time.Millisecond, 600 * time.Millisecond, -1, "lbd has not applied its config: starting VRRP anyway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, buf := testLog()
			start := time.Now()
			if err := waitForLB(context.Background(), tc.probe, g, log); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if took < tc.minWait || took > tc.maxWait {
				t.Errorf("waited %s, want %s..%s", took, tc.minWait, tc.maxWait)
			}
			if n := tc.probe.applyCalls.Load(); tc.applyCalls >= 0 && n != tc.applyCalls {
				t.Errorf("asked lbd %d times, want %d", n, tc.applyCalls)
			}
			if !strings.Contains(buf.String(), tc.log) {
				t.Errorf("log %q lacks %q", buf.String(), tc.log)
			}
		})
	}
}

// Stopping the daemon while it waits ends the wait at once.
func TestWaitForLBCancelled(t *testing.T) {
	log, _ := testLog()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	err := waitForLB(ctx, &fakeProbe{supervised: true}, gateTimes{poll: 5 * time.Millisecond, max: time.Minute}, log)
	if !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Fatalf("got %v after %s", err, time.Since(start))
	}
}

// localProbe against real unix-socket servers shaped like init's and lbd's.
func TestLocalProbe(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	p := newLocalProbe(dir)
	if _, err := p.lbSupervised(ctx); !errors.Is(err, errNoInit) {
		t.Fatalf("no init socket: %v, want errNoInit", err)
	}
	services := []localapi.ServiceStatus{{Name: "vrrpd"}}
	initMux := http.NewServeMux()
	localapi.Route(initMux, "GET", localapi.PathServices, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, http.StatusOK, services)
	})
	go localapi.Serve(ctx, filepath.Join(dir, "init.sock"), initMux, nil)
	var applied atomic.Bool
	lbdMux := http.NewServeMux()
	lbdMux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		st := map[string]any{"config_path": "/etc/fulcrum/config.yaml", "applied_at": time.Time{}}
		if applied.Load() {
			st["applied_at"] = time.Now()
		}
		localapi.WriteJSON(w, http.StatusOK, st)
	})
	go localapi.Serve(ctx, filepath.Join(dir, "lbd.sock"), lbdMux, nil)

	var sup bool
	var err error
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if sup, err = p.lbSupervised(ctx); err == nil {
			break
		}
	}
	if err != nil || sup {
		t.Fatalf("services without lbd: supervised=%v err=%v", sup, err)
	}
	services = append(services, localapi.ServiceStatus{Name: "lbd"})
	if sup, err = p.lbSupervised(ctx); err != nil || !sup {
		t.Fatalf("services with lbd: supervised=%v err=%v", sup, err)
	}
	if ok, err := p.lbApplied(ctx); err != nil || ok {
		t.Fatalf("before apply: applied=%v err=%v", ok, err)
	}
	applied.Store(true)
	if ok, err := p.lbApplied(ctx); err != nil || !ok {
		t.Fatalf("after apply: applied=%v err=%v", ok, err)
	}
}
