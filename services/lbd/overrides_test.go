package lbd

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

// TestDisabledMemberSurvivesRestart: a disable is saved next to the config
// (0600); a new controller (lbd restarted) starts with it, so the member
// stays at weight 0; enabling it again removes the file.
func TestDisabledMemberSurvivesRestart(t *testing.T) {
	srv, _, path, _ := server(t)
	if code, body := post(t, srv, localapi.PathMemberDisable, localapi.MemberRef{Pool: "web", Member: "198.51.100.12:8080"}); code != http.StatusOK || strings.Contains(body, "not saved") {
		t.Fatalf("disable: %d %s", code, body)
	}
	fi, err := os.Stat(OverridesPath(path))
	if err != nil {
		t.Fatalf("disable not saved: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("overrides file mode %v, want 0600", fi.Mode().Perm())
	}

	// lbd restarts: a new controller restores the overrides at its first apply.
	log := logrus.New()
	log.SetOutput(io.Discard)
	ip := &recIPVS{}
	ctrl := lbapply.NewController(&lbapply.Applier{IPVS: ip, NAT: noNAT{}, Log: log}, nil, log)
	var dropped []string
	ctrl.Restore = func(cfg *config.Config) engine.Overrides {
		ov, d, err := LoadOverrides(OverridesPath(path), cfg)
		if err != nil {
			t.Errorf("LoadOverrides: %v", err)
		}
		dropped = d
		return ov
	}
	ready := make(chan struct{})
	ctrl.Ready = func() { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ctrl.Run(ctx, path, config.Load, nil)
	select {
	case <-ready:
	case <-time.After(2 * time.Second):
		t.Fatal("restarted controller: no first apply")
	}
	if w := ip.weights(); w["198.51.100.12"] != 0 || w["198.51.100.11"] != 1 {
		t.Fatalf("after the restart weights %v: the disabled member must stay at 0", w)
	}
	if len(dropped) != 0 {
		t.Errorf("dropped %v", dropped)
	}

	if code, body := post(t, srv, localapi.PathMemberEnable, localapi.MemberRef{Pool: "web", Member: "198.51.100.12:8080"}); code != http.StatusOK {
		t.Fatalf("enable: %d %s", code, body)
	}
	if _, err := os.Stat(OverridesPath(path)); !os.IsNotExist(err) {
		t.Fatalf("nothing overridden, yet the file is there (%v)", err)
	}
}

// TestSavedOverridesOfGoneMembersAreDropped: a member the config lost is
// not restored, and is named.
func TestSavedOverridesOfGoneMembersAreDropped(t *testing.T) {
	cfg, err := config.Parse([]byte(cfgDoc))
	if err != nil {
		t.Fatal(err)
	}
	path := OverridesPath(t.TempDir() + "/config.yaml")
	gone := config.MemberRef{Pool: "web", Addr: netip.MustParseAddr("198.51.100.99"), Port: 8080}
	kept := cfg.Pools["web"].Members[0].Ref("web")
	if err := SaveOverrides(path, engine.Overrides{Disabled: map[config.MemberRef]bool{gone: true, kept: true}}); err != nil {
		t.Fatal(err)
	}
	ov, dropped, err := LoadOverrides(path, cfg)
	if err != nil || !ov.Disabled[kept] || ov.Disabled[gone] || len(dropped) != 1 || dropped[0] != gone.String() {
		t.Fatalf("LoadOverrides: %v, dropped %v, err %v", ov, dropped, err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOverrides(path, cfg); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("a corrupt file: %v, want an error naming it", err)
	}
}
