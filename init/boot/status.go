package boot

import (
	"context"
	"net/http"
	"sort"
	"strconv"

	"github.com/fulcrum-lb/fulcrum/init/supervisor"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/logring"
)

// statusHandler is init's local API: the supervised daemons (restarts for
// the metrics), this boot's phase times, and the console log ring (`show log`, syslog forwarding).
func statusHandler(sup *supervisor.Supervisor, ring *logring.Ring, times *timeline) http.Handler {
	mux := http.NewServeMux()
	localapi.Route(mux, "GET", localapi.PathServices, func(w http.ResponseWriter, r *http.Request) {
		var out []localapi.ServiceStatus
		for _, s := range sup.Statuses() {
			out = append(out, localapi.ServiceStatus{Name: s.Name, PID: s.PID, Running: s.Running, Restarts: s.Restarts, LastExit: s.LastExit, Since: s.Since,
				Ready: s.Ready, WatchdogKills: s.WatchdogKills, OutputCut: s.Cut, OutputDropped: s.Dropped})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		localapi.WriteJSON(w, http.StatusOK, out)
	})
	localapi.Route(mux, "GET", localapi.PathBoot, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, http.StatusOK, times.times())
	})
	localapi.Route(mux, "GET", localapi.PathLog, func(w http.ResponseWriter, r *http.Request) {
		since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
		max, _ := strconv.Atoi(r.URL.Query().Get("max"))
		localapi.WriteJSON(w, http.StatusOK, ring.Since(since, max))
	})
	return mux
}

func (in *Init) serveStatus(ctx context.Context) {
	err := localapi.Serve(ctx, localapi.SocketPath("", localapi.Init), statusHandler(in.sup, in.ring, in.times), nil)
	if err != nil {
		in.Log.WithError(err).Error("init status socket stopped")
	}
}
