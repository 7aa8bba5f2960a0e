package lbd

import (
	"context"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/sirupsen/logrus"
)

// panicWatch tells of pools entering and leaving panic (engine.PoolPolicy:
// too many members failed at once, so all of them serve): a warning on
// entry, repeated every repeat while it lasts, and a line when it ends.
type panicWatch struct {
	log    *logrus.Entry
	repeat time.Duration
	since  map[string]time.Time // pool → panic start
	told   map[string]time.Time // pool → last warning
}

func newPanicWatch(log *logrus.Entry, repeat time.Duration) *panicWatch {
	return &panicWatch{log: log, repeat: repeat, since: map[string]time.Time{}, told: map[string]time.Time{}}
}

// observe compares the pools' status with the last one seen.
func (w *panicWatch) observe(now time.Time, pools []lbapply.PoolStatus) {
	seen := map[string]bool{}
	for _, p := range pools {
		seen[p.Name] = true
		start, was := w.since[p.Name]
		switch {
		case p.Panic && !was:
			w.since[p.Name], w.told[p.Name] = now, now
			w.log.WithFields(logrus.Fields{"pool": p.Name, "failed": p.Failed, "members": len(p.Members)}).
				Error("pool in PANIC: more than its panic_threshold of members fail their checks at once; balancing over all enabled members regardless of health")
		case p.Panic && now.Sub(w.told[p.Name]) >= w.repeat:
			w.told[p.Name] = now
			w.log.WithFields(logrus.Fields{"pool": p.Name, "failed": p.Failed, "members": len(p.Members), "for": now.Sub(start).Round(time.Second)}).
				Error("pool still in PANIC: balancing over all enabled members regardless of health")
		case !p.Panic && was:
			delete(w.since, p.Name)
			delete(w.told, p.Name)
			w.log.WithFields(logrus.Fields{"pool": p.Name, "failed": p.Failed, "lasted": now.Sub(start).Round(time.Millisecond)}).
				Warn("pool out of panic: health decides again which members serve")
		}
	}
	for name := range w.since {
		if !seen[name] {
			delete(w.since, name)
			delete(w.told, name)
		}
	}
}

// run polls status every interval until ctx ends.
func (w *panicWatch) run(ctx context.Context, status func() lbapply.Status, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.observe(now, status().Pools)
		}
	}
}
