package vrrpd

// A returning master preempts only once it holds the master's
// connections (node.Options.WaitSync). Two syncs fill its tables, and
// the gate opens when both have: conntrack sync says so itself (it asks
// the master for its whole table), while the kernel's IPVS sync has no
// bulk transfer: a master resends a connection only when the connection
// has traffic and sync_refresh_period has passed since it last sent it.
// So the IPVS side counts as caught up once the backup daemon has run for
// one refresh period and a margin; connections idle for that long are
// not carried (they are not on the master's wire either).

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// refreshPeriodPath is the kernel's IPVS sync refresh period (seconds).
const refreshPeriodPath = "/proc/sys/net/ipv4/vs/sync_refresh_period"

// catchUpMargin is added to the refresh period: a sync message is sent
// when a connection's next packet arrives and the sync buffer is flushed
// (at most a second later).
const catchUpMargin = 3 * time.Second

// noRefreshCatchUp is the IPVS wait when sync_refresh_period is 0 (the
// kernel then resends a connection only every sync_period packets): a
// fixed grace, since nothing bounds the catch-up.
const noRefreshCatchUp = 10 * time.Second

// ipvsCatchUp is how long the IPVS backup daemon must have run before this
// node holds the master's IPVS connections, from the kernel's refresh
// period in the file at path.
func ipvsCatchUp(path string) time.Duration {
	b, err := os.ReadFile(path)
	if err != nil {
		return noRefreshCatchUp
	}
	s, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || s <= 0 {
		return noRefreshCatchUp
	}
	return time.Duration(s)*time.Second + catchUpMargin
}

// syncGate combines the two syncs' readiness into the one flag VRRP
// reads. A sync that does not run counts as ready (nothing to wait for).
type syncGate struct {
	mu        sync.Mutex
	conntrack bool
	ipvs      bool
	set       func(bool) // node.SetSynced; never blocks
}

func newSyncGate(set func(bool), conntrackRuns, ipvsRuns bool) *syncGate {
	g := &syncGate{conntrack: !conntrackRuns, ipvs: !ipvsRuns, set: set}
	set(g.conntrack && g.ipvs)
	return g
}

// conntrackSynced is conntrack sync's OnSynced.
func (g *syncGate) conntrackSynced(s bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.conntrack = s
	g.set(g.conntrack && g.ipvs)
}

// ipvsSynced records whether the IPVS backup daemon has caught up.
func (g *syncGate) ipvsSynced(s bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ipvs = s
	g.set(g.conntrack && g.ipvs)
}

// backupClock follows how long the IPVS backup daemon has run.
type backupClock struct {
	catchUp time.Duration
	since   time.Time // zero while no backup daemon runs
}

// observe records whether a backup daemon runs at now and says whether
// it has run for catchUp.
func (c *backupClock) observe(running bool, now time.Time) bool {
	switch {
	case !running:
		c.since = time.Time{}
	case c.since.IsZero():
		c.since = now
	}
	return !c.since.IsZero() && now.Sub(c.since) >= c.catchUp
}
