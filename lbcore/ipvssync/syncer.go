package ipvssync

import (
	"context"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvsnl"
	"github.com/sirupsen/logrus"
)

// Status is what `lbctl show sync` and /metrics show.
type Status struct {
	Role      string          `json:"role"`
	Interface string          `json:"interface"`
	SyncID    uint8           `json:"sync_id"`
	Daemons   []ipvsnl.Daemon `json:"daemons"`
	// Counters since the daemon started.
	Reconciles uint64 `json:"reconciles"`
	Started    uint64 `json:"started"`
	Stopped    uint64 `json:"stopped"`
	Errors     uint64 `json:"errors"`
	LastError  string `json:"last_error,omitempty"`
	// LastChange is when a daemon was last started or stopped.
	LastChange time.Time `json:"last_change,omitzero"`
}

// Syncer applies VRRP roles to the kernel in its own goroutine: SetRole
// never waits for the kernel, so a failing or slow sync never holds up
// VRRP. A failed reconcile is retried every Retry, and the kernel is
// checked every Recheck (a daemon stopped behind its back is restarted).
type Syncer struct {
	k       Kernel
	s       Settings
	log     logrus.FieldLogger
	Retry   time.Duration // default 5 s
	Recheck time.Duration // default 30 s

	kick  chan struct{}
	mu    sync.Mutex
	role  Role
	known bool // SetRole was called
	st    Status
}

// New returns a Syncer for settings s; Run starts it.
func New(k Kernel, s Settings, log logrus.FieldLogger) *Syncer {
	return &Syncer{k: k, s: s, log: log, Retry: 5 * time.Second, Recheck: 30 * time.Second,
		kick: make(chan struct{}, 1),
		st:   Status{Role: Stopped.String(), Interface: s.Interface, SyncID: s.SyncID, Daemons: []ipvsnl.Daemon{}}}
}

// SetRole records the node's role and wakes Run if it changed; it never
// blocks, so callers may also repeat it periodically.
func (y *Syncer) SetRole(r Role) {
	y.mu.Lock()
	same := y.known && y.role == r
	y.role, y.known = r, true
	y.mu.Unlock()
	if same {
		return
	}
	select {
	case y.kick <- struct{}{}:
	default: // a wake-up is already pending; it will read the latest role
	}
}

// Status is a copy of the current status.
func (y *Syncer) Status() Status {
	y.mu.Lock()
	defer y.mu.Unlock()
	st := y.st
	st.Daemons = append([]ipvsnl.Daemon{}, y.st.Daemons...)
	return st
}

// Run reconciles from the first SetRole on until ctx ends. It leaves the
// daemons running when it returns: a restarted vrrpd on a master resumes
// without a gap in sync, and reconciles them as soon as it knows its role
// again (until then it does not touch them).
func (y *Syncer) Run(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-y.kick:
	}
	next := time.NewTimer(0)
	defer next.Stop()
	<-next.C
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-y.kick:
			case <-next.C:
			}
		}
		y.mu.Lock()
		r := y.role
		y.mu.Unlock()
		wait := y.Recheck
		if !y.reconcile(r) {
			wait = y.Retry
		}
		if !next.Stop() {
			select {
			case <-next.C:
			default:
			}
		}
		next.Reset(wait)
	}
}

func (y *Syncer) reconcile(r Role) bool {
	ch, daemons, err := Reconcile(y.k, r, y.s)
	y.mu.Lock()
	defer y.mu.Unlock()
	y.st.Role = r.String()
	y.st.Reconciles++
	y.st.Started += uint64(ch.Started)
	y.st.Stopped += uint64(ch.Stopped)
	if daemons != nil || err == nil {
		y.st.Daemons = append([]ipvsnl.Daemon{}, daemons...)
	}
	log := y.log.WithFields(logrus.Fields{"role": r.String(), "sync_id": y.s.SyncID, "interface": y.s.Interface})
	if ch.Started+ch.Stopped > 0 {
		y.st.LastChange = time.Now()
		log.WithFields(logrus.Fields{"started": ch.Started, "stopped": ch.Stopped}).Info("ipvs sync: daemons changed")
	}
	if err != nil {
		y.st.Errors++
		y.st.LastError = err.Error()
		log.WithError(err).Warn("ipvs sync: reconcile failed; retrying")
		return false
	}
	y.st.LastError = ""
	return true
}
