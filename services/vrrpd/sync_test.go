package vrrpd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/ipvssync"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvsnl"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/node"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

// kernel keeps daemons like the kernel's table (one per state).
type kernel struct {
	mu sync.Mutex
	d  map[ipvsnl.State]ipvsnl.Daemon
}

func (k *kernel) Start(d ipvsnl.Daemon) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.d[d.State]; ok {
		return ipvsnl.ErrRunning
	}
	d.Port, d.Group, d.TTL = ipvsnl.DefaultPort, ipvsnl.DefaultGroup, 1
	k.d[d.State] = d
	return nil
}

func (k *kernel) Stop(s ipvsnl.State) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.d[s]; !ok {
		return ipvsnl.ErrNotRunning
	}
	delete(k.d, s)
	return nil
}

func (k *kernel) List() ([]ipvsnl.Daemon, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []ipvsnl.Daemon
	for _, s := range []ipvsnl.State{ipvsnl.Master, ipvsnl.Backup} {
		if d, ok := k.d[s]; ok {
			out = append(out, d)
		}
	}
	return out, nil
}

type statuses []node.Status

func (s statuses) Status() []node.Status { return s }

func TestRoleOf(t *testing.T) {
	for s, want := range map[fsm.State]ipvssync.Role{fsm.Init: ipvssync.Stopped, fsm.Backup: ipvssync.Backup, fsm.Master: ipvssync.Master, fsm.Fault: ipvssync.Fault} {
		if got := roleOf(s); got != want {
			t.Errorf("roleOf(%s) = %s, want %s", s, got, want)
		}
	}
}

// The sync instance's state drives the daemons and GET /v1/sync shows
// them; another instance's events do not count.
func TestSyncFollowsTheInstanceAndShowsInTheAPI(t *testing.T) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	k := &kernel{d: map[ipvsnl.State]ipvsnl.Daemon{}}
	cs := &connSync{instance: "vrid51", y: ipvssync.New(k, ipvssync.Settings{Interface: "failover", SyncID: 51}, log)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cs.y.Run(ctx)
	a := newAPI(nil, cs, nil)
	get := func() localapi.SyncStatus {
		w := httptest.NewRecorder()
		a.handler().ServeHTTP(w, httptest.NewRequest("GET", localapi.PathSync, nil))
		var st localapi.SyncStatus
		if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
			t.Fatalf("%v: %s", err, w.Body.String())
		}
		return st
	}
	cs.event("vrid52", fsm.Master) // not the sync instance
	time.Sleep(50 * time.Millisecond)
	if st := get(); len(st.Daemons) != 0 || st.Role != "stopped" {
		t.Fatalf("another instance's event changed the daemons: %+v", st)
	}
	cs.event("vrid51", fsm.Fault)
	testkit.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		st := get()
		if !st.Enabled || st.Role != "fault" || len(st.Daemons) != 1 || st.Daemons[0].State != "backup" || st.Daemons[0].SyncID != 51 || st.Daemons[0].Port != 8848 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	// A missed event is corrected from the node's status.
	var synced atomic.Bool
	gate := newSyncGate(synced.Store, false, true)
	go cs.follow(ctx, statuses{{Instance: "vrid51", VRID: 51, State: fsm.Master}}, gate, 10*time.Millisecond)
	testkit.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := get(); st.Role != "master" || len(st.Daemons) != 2 {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
}

func TestSyncOffIsShown(t *testing.T) {
	w := httptest.NewRecorder()
	newAPI(nil, &connSync{err: "no IPVS generic netlink family"}, nil).handler().ServeHTTP(w, httptest.NewRequest("GET", localapi.PathSync, nil))
	var st localapi.SyncStatus
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.Enabled || st.LastError != "no IPVS generic netlink family" {
		t.Fatalf("%+v %v", st, err)
	}
}
