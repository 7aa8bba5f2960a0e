package boot

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/init/supervisor"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/logring"
	"github.com/sirupsen/logrus/hooks/test"
)

// TestServicesReportReadinessAndOutputCounters: init's local API tells
// lbctl and mgmtd which daemons have reported ready, and the supervisor's
// counters (watchdog kills, output lines cut).
func TestServicesReportReadinessAndOutputCounters(t *testing.T) {
	logger, _ := test.NewNullLogger()
	r := supervisor.NewReaper()
	done := make(chan struct{})
	go r.Run(done)
	defer close(done)
	sup := supervisor.New(logger, r)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); sup.Wait() }()
	sup.StartAll(ctx,
		supervisor.Service{Name: "lbd", Path: "/bin/sh", Args: []string{"-c", "head -c 5000 /dev/zero | tr '\\0' z; echo; echo READY=1 >&3; exec sleep 60"}},
		supervisor.Service{Name: "mgmtd", Path: "/bin/sh", Args: []string{"-c", "exec sleep 60"}})
	h := statusHandler(sup, logring.New(10), newTimeline(bootClock))
	testkit.Eventually(t, 5*time.Second, 20*time.Millisecond, func() error {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", localapi.PathServices, nil))
		var got []localapi.ServiceStatus
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			return err
		}
		if len(got) != 2 || got[0].Name != "lbd" || !got[0].Ready || got[0].OutputCut != 1 || got[1].Ready || !got[1].Running {
			return fmt.Errorf("services %+v: want lbd ready with 1 cut line, mgmtd running and not ready", got)
		}
		return nil
	})
}
