package l7

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/l7/balance"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

// The proxy follows lbd's one health state through the local API: down or
// disabled members take no new requests; up and unmonitored ones do.
func TestFollowHealthFromLBD(t *testing.T) {
	dir := t.TempDir()
	var down atomic.Bool
	mux := http.NewServeMux()
	localapi.Route(mux, "GET", localapi.PathHealth, func(w http.ResponseWriter, r *http.Request) {
		h := "up"
		if down.Load() {
			h = "down"
		}
		localapi.WriteJSON(w, 200, []localapi.MemberHealth{
			{Pool: "web", Member: "198.51.100.11:8080", Monitor: "http", Health: h},
			{Pool: "web", Member: "198.51.100.12", Health: "unmonitored", Disabled: true},
			{Pool: "web", Member: "198.51.100.13", Health: "unmonitored"},
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.LBD), mux, nil)

	a := netip.MustParseAddr("198.51.100.11")
	refs := []config.MemberRef{{Pool: "web", Addr: a, Port: 8080}, {Pool: "web", Addr: netip.MustParseAddr("198.51.100.12")}, {Pool: "web", Addr: netip.MustParseAddr("198.51.100.13")}}
	var ms []*balance.Member
	for i, r := range refs {
		ms = append(ms, &balance.Member{Ref: r, Weight: 1, Key: [8]byte{byte(i)}})
	}
	p := New(logrus.NewEntry(logrus.New()))
	p.listeners[netip.MustParseAddrPort("203.0.113.100:80")] = &listener{}
	l := p.listeners[netip.MustParseAddrPort("203.0.113.100:80")]
	l.vs.swap(&vsState{bal: balance.New("rr", ms)})
	go FollowHealth(ctx, localapi.NewAppliance(dir), p, 50*time.Millisecond, logrus.NewEntry(logrus.New()))
	want := func(u0, u1, u2 bool) func() error {
		return func() error {
			if ms[0].Usable() != u0 || ms[1].Usable() != u1 || ms[2].Usable() != u2 {
				return fmt.Errorf("usable %v %v %v", ms[0].Usable(), ms[1].Usable(), ms[2].Usable())
			}
			return nil
		}
	}
	testkit.Eventually(t, 3*time.Second, 20*time.Millisecond, want(true, false, true))
	down.Store(true)
	testkit.Eventually(t, 3*time.Second, 20*time.Millisecond, want(false, false, true))
}
