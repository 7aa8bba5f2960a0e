package lbapply

import (
	"context"
	"fmt"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/sirupsen/logrus"
)

// Adopting a running table.
//
// A daemon that restarts (kill -9, crash, upgrade) finds the IPVS table its
// predecessor left, serving established connections. Its health checker
// starts from nothing: every monitored member is "unknown", and the plain
// desired state would delete every monitored destination until the first
// check results come back. With expire_nodest_conn that resets every
// established connection.
//
// So when the kernel already holds IPVS destinations at the first apply,
// the controller adopts them: the first apply (and any apply until the
// hold ends) programs addresses, nftables and the filter, but leaves the
// IPVS table exactly as it is (destinations, weights, services the config
// no longer has). The hold ends when every monitored member has a settled
// result from this run's checks (health.MemberStatus.Settled), or at the
// latest after AdoptWait of the running config; then the desired state is
// applied with what the checks know, like any health apply. An empty table
// is a cold start: nothing to keep, the first apply is whole, as before.

// ipvsReader is an IPVS stage that can read the kernel's table (an
// *ipvs.Reconciler).
type ipvsReader interface {
	Read() (*ipvs.State, error)
}

// adoptSlack covers the dispatcher's quantum, the check goroutine and the
// poll of the hold, past the last check's timeout.
const adoptSlack = time.Second

// AdoptWait is the longest a restarted daemon holds the adopted IPVS table
// for cfg: for each monitor in use, the checks needed to settle a member
// from the monitor's initial state (1 from unknown; rise for a live member
// starting down; fall for a dead member starting up) times the interval
// (the first check comes within one interval, the member's phase), plus the
// check timeout, plus adoptSlack. A member that flaps keeps no result
// settled; the bound makes the daemon apply what it knows then. 0 when no
// pool has a monitor.
func AdoptWait(cfg *config.Config) time.Duration {
	mons, _, err := HealthMembers(cfg)
	if err != nil || len(mons) == 0 {
		return 0
	}
	var longest time.Duration
	for _, m := range mons {
		m.ApplyDefaults()
		n := 1
		switch m.InitialState {
		case config.InitialDown:
			n = m.Rise
		case config.InitialUp:
			n = m.Fall
		}
		longest = max(longest, time.Duration(n)*m.Interval.D()+m.Timeout.D())
	}
	return longest + adoptSlack
}

// detectAdoption decides, before the first apply, whether the kernel holds
// a previous daemon's IPVS table to adopt.
func (c *Controller) detectAdoption() {
	r, ok := c.a.IPVS.(ipvsReader)
	if !ok {
		return
	}
	st, err := r.Read()
	if err != nil {
		c.log.WithError(err).Warn("cannot read the IPVS table to adopt it; starting cold")
		return
	}
	services, dests := 0, 0
	for _, s := range st.Services {
		services++
		dests += len(s.Dests)
	}
	if dests == 0 {
		return // cold start: nothing serves, nothing to keep
	}
	c.mu.Lock()
	c.adopting = true
	c.mu.Unlock()
	c.log.WithFields(logrus.Fields{"services": services, "destinations": dests}).
		Info("the kernel holds a previous lbd's IPVS table: adopting it unchanged until every monitored member has a fresh health result")
}

// holdIPVS is called by an apply of cfg: whether the IPVS side must be
// left as it is (adopting). Each config applied during the hold may extend
// it to its own AdoptWait from now.
func (c *Controller) holdIPVS(cfg *config.Config) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.adopting {
		return false
	}
	if until := time.Now().Add(AdoptWait(cfg)); until.After(c.adoptUntil) {
		c.adoptUntil = until
	}
	return true
}

// Adopting reports whether the controller still holds an adopted IPVS
// table, and until when at the latest.
func (c *Controller) Adopting() (bool, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.adopting, c.adoptUntil
}

// unsettled counts the monitored members without a settled result.
func (c *Controller) unsettled() int {
	if c.h == nil {
		return 0
	}
	n := 0
	for _, m := range c.h.Snapshot() {
		if !m.Settled() {
			n++
		}
	}
	return n
}

// endAdoption ends the hold when every member has settled or the wait is
// over, applying the desired IPVS table; done is false while the hold goes
// on. An error is a failed IPVS apply (the hold is over all the same; the
// caller retries as for a health apply).
func (c *Controller) endAdoption(ctx context.Context) (done bool, err error) {
	c.applyMu.Lock()
	defer c.applyMu.Unlock()
	adopting, until := c.Adopting()
	if !adopting {
		return true, nil
	}
	n := c.unsettled()
	now := time.Now()
	if n > 0 && now.Before(until) {
		return false, nil
	}
	c.mu.Lock()
	c.adopting = false
	c.mu.Unlock()
	if n == 0 {
		c.log.Info("adopted IPVS table: every monitored member has a fresh health result; applying the desired state")
	} else {
		c.log.WithField("unsettled", n).Warn("adopted IPVS table: hold over before every member settled; applying what the checks know")
	}
	if err := c.applyIPVSLocked(ctx); err != nil {
		return true, fmt.Errorf("after adopting: %w", err)
	}
	return true, nil
}
