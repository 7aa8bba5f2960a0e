package vrrpd

// vrrpd's side of the local API (services/localapi): instance states with
// transition counts, packet counters, switchover and resume-preempt.

import (
	"context"
	"net/http"
	"sync"

	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/node"
	"github.com/fulcrum-lb/fulcrum/services/daemon"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

// vrrpNode is what the API needs of a *node.Node.
type vrrpNode interface {
	Status() []node.Status
	Counters() map[string]uint64
	Switchover(context.Context) error
	ResumePreempt(context.Context) error
}

type api struct {
	n           vrrpNode  // nil: no instances configured
	sync        *connSync // nil: no instances configured
	ct          *ctSync   // nil: no instances configured
	mu          sync.Mutex
	transitions map[string]uint64 // per instance
}

func newAPI(n vrrpNode, cs *connSync, ct *ctSync) *api {
	return &api{n: n, sync: cs, ct: ct, transitions: map[string]uint64{}}
}

// count records a state change (call for every node event).
func (a *api) count(ev node.Event) {
	a.mu.Lock()
	a.transitions[ev.Instance]++
	a.mu.Unlock()
}

func (a *api) handler() http.Handler {
	mux := http.NewServeMux()
	localapi.Route(mux, "GET", localapi.PathVRRP, func(w http.ResponseWriter, r *http.Request) {
		st := localapi.VRRPStatus{Instances: []localapi.VRRPInstance{}, Counters: map[string]uint64{}}
		if a.n != nil {
			st.Enabled = true
			st.Counters = a.n.Counters()
			a.mu.Lock()
			for _, s := range a.n.Status() {
				in := localapi.VRRPInstance{Instance: s.Instance, VRID: s.VRID, Family: s.Family, State: s.State.String(), Priority: s.Priority, Transitions: a.transitions[s.Instance]}
				if s.Master.IsValid() {
					in.Master = s.Master.String()
				}
				st.Instances = append(st.Instances, in)
			}
			a.mu.Unlock()
		}
		localapi.WriteJSON(w, http.StatusOK, st)
	})
	localapi.Route(mux, "GET", localapi.PathSync, func(w http.ResponseWriter, r *http.Request) {
		st := a.sync.status()
		st.Conntrack = a.ct.status()
		localapi.WriteJSON(w, http.StatusOK, st)
	})
	act := func(f func(vrrpNode, context.Context) error, done string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if a.n == nil {
				localapi.WriteError(w, http.StatusConflict, errNoInstances)
				return
			}
			if err := f(a.n, r.Context()); err != nil {
				localapi.WriteError(w, http.StatusConflict, err)
				return
			}
			localapi.WriteJSON(w, http.StatusOK, localapi.Message{Message: done})
		}
	}
	localapi.Route(mux, "POST", localapi.PathSwitchover, act(vrrpNode.Switchover, "switchover started: the peer takes over (this node keeps the addresses until the peer has announced them); this node does not preempt back until 'ha resume' or it becomes master again"))
	localapi.Route(mux, "POST", localapi.PathResume, act(vrrpNode.ResumePreempt, "preemption resumed"))
	return mux
}

type apiError string

func (e apiError) Error() string { return string(e) }

const errNoInstances = apiError("vrrp: no instances configured (standalone node); nothing to switch over")

func serveAPI(ctx context.Context, a *api, log *logrus.Entry) {
	if err := daemon.ServeSocket(ctx, localapi.SocketPath("", localapi.VRRPD), a.handler(), log); err != nil {
		log.WithError(err).Error("local api stopped")
	}
}
