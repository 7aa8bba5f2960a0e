package console

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

// TestShowServicesNamesWatchdogKillsAndDroppedOutput: the supervisor's
// counters reach the operator when they are not zero.
func TestShowServicesNamesWatchdogKillsAndDroppedOutput(t *testing.T) {
	dir := t.TempDir()
	mux := http.NewServeMux()
	localapi.Route(mux, "GET", localapi.PathServices, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, []localapi.ServiceStatus{
			{Name: "lbd", PID: 10, Running: true, Ready: true},
			{Name: "vrrpd", PID: 12, Running: true, Restarts: 1, LastExit: "no heartbeat for 3s (killed by killed)", WatchdogKills: 1, OutputDropped: 7},
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.Init), mux, nil)
	var out bytes.Buffer
	c := &CLI{API: localapi.NewAppliance(dir), Out: &out}
	c.Init()
	testkit.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		out.Reset()
		return c.Run(ctx, "show services")
	})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || strings.Contains(lines[0], "watchdog") || strings.Contains(lines[0], "dropped") {
		t.Fatalf("show services:\n%s\nwant lbd without counters", out.String())
	}
	if !strings.HasSuffix(lines[1], "restarts 1  no heartbeat for 3s (killed by killed)  watchdog kills 1  output lines dropped 7") {
		t.Fatalf("vrrpd line %q lacks its watchdog kill and dropped lines", lines[1])
	}
}

// TestShowBootListsEachPhaseWithItsStep: `show boot` renders init's record,
// each phase with the time since kernel start and the step's own length.
func TestShowBootListsEachPhaseWithItsStep(t *testing.T) {
	dir := t.TempDir()
	mux := http.NewServeMux()
	localapi.Route(mux, "GET", localapi.PathBoot, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, 200, localapi.BootTimes{Complete: true, Marks: []localapi.BootMark{
			{Phase: localapi.PhaseInit, At: 2300 * time.Millisecond}, {Phase: localapi.PhaseModules, At: 3100 * time.Millisecond},
			{Phase: localapi.PhaseVRRP, At: 4000 * time.Millisecond}}})
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go localapi.Serve(ctx, localapi.SocketPath(dir, localapi.Init), mux, nil)
	var out bytes.Buffer
	c := &CLI{API: localapi.NewAppliance(dir), Out: &out}
	c.Init()
	testkit.Eventually(t, 5*time.Second, 10*time.Millisecond, func() error {
		out.Reset()
		return c.Run(ctx, "show boot")
	})
	want := []string{
		"init             2.300s     2.300s",
		"modules          3.100s     0.800s",
		"vrrp             4.000s     0.900s",
		"kernel 2.30s, init 1.70s (kernel start to last phase); complete",
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("show boot:\n%s\nlacks %q", out.String(), w)
		}
	}
}
