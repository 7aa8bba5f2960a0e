package mgmtd

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/ctsync"
	"github.com/fulcrum-lb/fulcrum/services/bondstat"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// Collector turns the daemons' state into Prometheus metrics at scrape time.
type Collector struct {
	API     *localapi.Appliance
	BondDir string
	Log     logrus.FieldLogger
}

var (
	vsLabels  = []string{"vs", "protocol", "address"}
	memLabels = []string{"vs", "pool", "member"}

	descVSConns   = prometheus.NewDesc("fulcrum_vs_connections_total", "Connections the virtual server scheduled.", vsLabels, nil)
	descVSPackets = prometheus.NewDesc("fulcrum_vs_packets_total", "Packets through the virtual server.", append(vsLabels, "direction"), nil)
	descVSBytes   = prometheus.NewDesc("fulcrum_vs_bytes_total", "Bytes through the virtual server.", append(vsLabels, "direction"), nil)

	descMemActive   = prometheus.NewDesc("fulcrum_member_active_connections", "Active connections of the member.", memLabels, nil)
	descMemInactive = prometheus.NewDesc("fulcrum_member_inactive_connections", "Inactive connections of the member.", memLabels, nil)
	descMemConns    = prometheus.NewDesc("fulcrum_member_connections_total", "Connections scheduled to the member.", memLabels, nil)
	descMemPackets  = prometheus.NewDesc("fulcrum_member_packets_total", "Packets to/from the member.", append(memLabels, "direction"), nil)
	descMemBytes    = prometheus.NewDesc("fulcrum_member_bytes_total", "Bytes to/from the member.", append(memLabels, "direction"), nil)
	descMemWeight   = prometheus.NewDesc("fulcrum_member_weight", "IPVS weight of the member (0: drained or disabled).", memLabels, nil)
	descPoolPanic   = prometheus.NewDesc("fulcrum_pool_panic", "1 while the pool is in panic: more than its panic_threshold of members failed at once, so all enabled members serve regardless of health.", []string{"pool"}, nil)
	descMemHealth   = prometheus.NewDesc("fulcrum_member_health", "1 for the member's current health state (up, down, unknown, unmonitored).", append(memLabels, "state"), nil)
	descMemDisabled = prometheus.NewDesc("fulcrum_member_disabled", "1 when the member is administratively disabled.", memLabels, nil)
	descMemSlow     = prometheus.NewDesc("fulcrum_member_slow_start_percent", "Percent of its weight the member has in its slow-start ramp (100 when not ramping); fulcrum_member_weight is the IPVS weight itself.", memLabels, nil)

	descVRRPState       = prometheus.NewDesc("fulcrum_vrrp_state", "1 for the instance's current VRRP state.", []string{"instance", "state"}, nil)
	descVRRPPriority    = prometheus.NewDesc("fulcrum_vrrp_priority", "Current VRRP priority.", []string{"instance"}, nil)
	descVRRPTransitions = prometheus.NewDesc("fulcrum_vrrp_transitions_total", "VRRP state changes since vrrpd started.", []string{"instance"}, nil)
	descVRRPCounter     = prometheus.NewDesc("fulcrum_vrrp_packets_total", "VRRP packet counters by kind.", []string{"kind"}, nil)

	descSyncDaemon  = prometheus.NewDesc("fulcrum_ipvs_sync_daemon_up", "1 when the kernel's IPVS sync daemon in that state (master, backup) runs.", []string{"state", "interface", "sync_id"}, nil)
	descSyncConns   = prometheus.NewDesc("fulcrum_ipvs_sync_connections", "IPVS connection entries by origin: local (forwarded here) or synced (from the peer).", []string{"origin"}, nil)
	descSyncChanges = prometheus.NewDesc("fulcrum_ipvs_sync_daemon_changes_total", "Sync daemons started or stopped by vrrpd.", []string{"action"}, nil)
	descSyncErrors  = prometheus.NewDesc("fulcrum_ipvs_sync_errors_total", "Failed sync daemon reconciles (retried).", nil, nil)

	descCTSyncUp     = prometheus.NewDesc("fulcrum_conntrack_sync_up", "1 when conntrack sync runs, with its role (sending on the master, receiving elsewhere).", []string{"role"}, nil)
	descCTSynced     = prometheus.NewDesc("fulcrum_conntrack_sync_synced", "1 when this node holds the peer's conntrack table (the last resync is complete).", nil, nil)
	descCTMessages   = prometheus.NewDesc("fulcrum_conntrack_sync_messages_total", "Conntrack sync data messages by direction.", []string{"direction"}, nil)
	descCTEntries    = prometheus.NewDesc("fulcrum_conntrack_sync_entries_total", "Conntrack entries in sync messages by direction.", []string{"direction"}, nil)
	descCTInstalled  = prometheus.NewDesc("fulcrum_conntrack_sync_installed_total", "Entries from the peer by outcome (installed, deleted, refused).", []string{"outcome"}, nil)
	descCTDropped    = prometheus.NewDesc("fulcrum_conntrack_sync_dropped_total", "Sync messages dropped by reason.", []string{"reason"}, nil)
	descCTRecovery   = prometheus.NewDesc("fulcrum_conntrack_sync_recovery_total", "Reliable delivery at work: gaps seen, NACKs sent, messages resent, resyncs asked, table dumps sent.", []string{"kind"}, nil)
	descCTEvents     = prometheus.NewDesc("fulcrum_conntrack_sync_events_total", "Conntrack events taken while master.", nil, nil)
	descCTSendErrors = prometheus.NewDesc("fulcrum_conntrack_sync_send_errors_total", "Sync messages that could not be sent.", nil, nil)

	descBondMember    = prometheus.NewDesc("fulcrum_bond_member_up", "1 when the bond member's link (MII) is up.", []string{"bond", "member"}, nil)
	descBondLinkFails = prometheus.NewDesc("fulcrum_bond_member_link_failures_total", "Link failures of the bond member.", []string{"bond", "member"}, nil)
	descBondUp        = prometheus.NewDesc("fulcrum_bond_up", "1 when the bond's MII status is up.", []string{"bond"}, nil)

	descDaemonUp       = prometheus.NewDesc("fulcrum_daemon_up", "1 when the daemon is running.", []string{"daemon"}, nil)
	descDaemonRestarts = prometheus.NewDesc("fulcrum_daemon_restarts_total", "Times init restarted the daemon.", []string{"daemon"}, nil)
	descDaemonWatchdog = prometheus.NewDesc("fulcrum_daemon_watchdog_kills_total", "Times init killed the daemon for missing heartbeats (hung).", []string{"daemon"}, nil)
	descDaemonDropped  = prometheus.NewDesc("fulcrum_daemon_output_lines_dropped_total", "Lines of the daemon's output dropped because the console could not take them.", []string{"daemon"}, nil)

	descConfigAgree      = prometheus.NewDesc("fulcrum_config_peer_agree", "1 when the HA peer answers config sync and runs this node's config (hash of the cluster sections); 0 when it does not.", []string{"peer"}, nil)
	descConfigGeneration = prometheus.NewDesc("fulcrum_config_generation", "Generation of the running config (raised by every synced apply).", nil, nil)
	descConfigSyncDrops  = prometheus.NewDesc("fulcrum_config_sync_dropped_total", "Config sync messages dropped, by reason (oversized, malformed, unauthenticated, stale, replayed, not_a_peer).", []string{"reason"}, nil)

	l7Labels      = []string{"vs", "address"}
	l7MemLabels   = []string{"vs", "pool", "member"}
	descL7Reqs    = prometheus.NewDesc("fulcrum_l7_requests_total", "Requests the L7 virtual server answered, by status class.", append(l7Labels, "class"), nil)
	descL7Bytes   = prometheus.NewDesc("fulcrum_l7_response_bytes_total", "Response body bytes the L7 virtual server sent.", l7Labels, nil)
	descL7Conns   = prometheus.NewDesc("fulcrum_l7_connections", "Open client connections of the L7 virtual server.", l7Labels, nil)
	descL7Evict   = prometheus.NewDesc("fulcrum_l7_connections_evicted_total", "Idle client connections closed at the connection cap.", l7Labels, nil)
	descL7Cookies = prometheus.NewDesc("fulcrum_l7_bad_cookies_total", "Persistence cookies refused (forged, expired or malformed).", l7Labels, nil)
	descL7MemReqs = prometheus.NewDesc("fulcrum_l7_member_requests_total", "Requests the L7 proxy sent to the member.", l7MemLabels, nil)
	descL7MemErrs = prometheus.NewDesc("fulcrum_l7_member_errors_total", "Requests the member failed to answer (502/504).", l7MemLabels, nil)
	descL7MemAct  = prometheus.NewDesc("fulcrum_l7_member_active_requests", "Requests in flight to the member.", l7MemLabels, nil)
	descL7MemUp   = prometheus.NewDesc("fulcrum_l7_member_usable", "1 when the L7 proxy sends new requests to the member (healthy and enabled).", l7MemLabels, nil)

	descScrapeError = prometheus.NewDesc("fulcrum_scrape_source_up", "1 when the source answered this scrape.", []string{"source"}, nil)
)

var vrrpStates = []string{"init", "backup", "master", "fault"}
var healthStates = []string{"up", "down", "unknown", "unmonitored"}

// Describe sends every metric description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVSConns, descVSPackets, descVSBytes, descMemActive, descMemInactive, descMemConns, descMemPackets, descMemBytes, descMemWeight, descMemHealth, descPoolPanic, descMemDisabled, descMemSlow, descVRRPState, descVRRPPriority, descVRRPTransitions, descVRRPCounter, descSyncDaemon, descSyncConns, descSyncChanges, descSyncErrors, descCTSyncUp, descCTSynced, descCTMessages, descCTEntries, descCTInstalled, descCTDropped, descCTRecovery, descCTEvents, descCTSendErrors, descBondMember, descBondLinkFails, descBondUp, descDaemonUp, descDaemonRestarts, descDaemonWatchdog, descDaemonDropped, descConfigAgree, descConfigGeneration, descConfigSyncDrops, descScrapeError,
		descL7Reqs, descL7Bytes, descL7Conns, descL7Evict, descL7Cookies, descL7MemReqs, descL7MemErrs, descL7MemAct, descL7MemUp} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect asks the daemons and reports.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e := emitter(ch)
	source := func(name string, err error) bool {
		if err != nil && c.Log != nil {
			c.Log.WithError(err).WithField("source", name).Debug("metrics source failed")
		}
		e.gauge(descScrapeError, b2f(err == nil), name)
		return err == nil
	}
	if vss, err := c.API.VirtualServers(ctx); source("lbd", err) {
		e.virtualServers(vss)
	}
	if st, err := c.API.VRRP(ctx); source("vrrpd", err) {
		e.vrrp(st)
	}
	if sy, err := c.API.Sync(ctx); source("sync", err) && sy.Enabled {
		e.sync(sy)
	}
	if cs, err := c.API.ConfigSync(ctx); source("config-sync", err) && cs.On {
		e.configSync(cs)
	}
	if l7, err := c.API.L7(ctx); source("l7d", err) {
		e.l7(l7)
	}
	if bonds, err := bondstat.Read(c.BondDir); source("bonds", err) {
		e.bonds(bonds)
	}
	if svcs, err := c.API.Services(ctx); source("init", err) {
		for _, s := range svcs {
			e.gauge(descDaemonUp, b2f(s.Running), s.Name)
			e.counter(descDaemonRestarts, float64(s.Restarts), s.Name)
			e.counter(descDaemonWatchdog, float64(s.WatchdogKills), s.Name)
			e.counter(descDaemonDropped, float64(s.OutputDropped), s.Name)
		}
	}
}

// emitter sends constant metrics to a scrape's channel.
type emitter chan<- prometheus.Metric

func (e emitter) gauge(d *prometheus.Desc, v float64, l ...string) {
	e <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
}

func (e emitter) counter(d *prometheus.Desc, v float64, l ...string) {
	e <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
}

// virtualServers reports lbd's virtual servers and their members.
func (e emitter) virtualServers(vss []localapi.VirtualServer) {
	panicked := map[string]bool{} // one series per pool, from its members
	defer func() {
		for _, p := range slices.Sorted(maps.Keys(panicked)) {
			e.gauge(descPoolPanic, b2f(panicked[p]), p)
		}
	}()
	for _, vs := range vss {
		name := vs.Name
		if name == "" {
			name = vs.Protocol + " " + vs.Address
		}
		l := []string{name, vs.Protocol, vs.Address}
		e.counter(descVSConns, float64(vs.Stats.Conns), l...)
		e.counter(descVSPackets, float64(vs.Stats.PacketsIn), append(l, "in")...)
		e.counter(descVSPackets, float64(vs.Stats.PacketsOut), append(l, "out")...)
		e.counter(descVSBytes, float64(vs.Stats.BytesIn), append(l, "in")...)
		e.counter(descVSBytes, float64(vs.Stats.BytesOut), append(l, "out")...)
		for _, m := range vs.Members {
			ml := []string{name, vs.Pool, m.Address}
			e.gauge(descMemActive, float64(m.Active), ml...)
			e.gauge(descMemInactive, float64(m.Inactive), ml...)
			e.gauge(descMemWeight, float64(m.Weight), ml...)
			e.gauge(descMemDisabled, b2f(m.Disabled), ml...)
			slow := 100.0
			if m.SlowStart != nil {
				slow = float64(m.SlowStart.Percent)
			}
			e.gauge(descMemSlow, slow, ml...)
			e.counter(descMemConns, float64(m.Stats.Conns), ml...)
			e.counter(descMemPackets, float64(m.Stats.PacketsIn), append(ml, "in")...)
			e.counter(descMemPackets, float64(m.Stats.PacketsOut), append(ml, "out")...)
			e.counter(descMemBytes, float64(m.Stats.BytesIn), append(ml, "in")...)
			e.counter(descMemBytes, float64(m.Stats.BytesOut), append(ml, "out")...)
			if m.Pool != "" {
				panicked[m.Pool] = panicked[m.Pool] || m.PoolPanic
			}
			for _, s := range healthStates {
				e.gauge(descMemHealth, b2f(m.Health == s), append(ml, s)...)
			}
		}
	}
}

// vrrp reports vrrpd's instances and counters.
func (e emitter) vrrp(st localapi.VRRPStatus) {
	for _, in := range st.Instances {
		for _, s := range vrrpStates {
			e.gauge(descVRRPState, b2f(strings.EqualFold(in.State, s)), in.Instance, s)
		}
		e.gauge(descVRRPPriority, float64(in.Priority), in.Instance)
		e.counter(descVRRPTransitions, float64(in.Transitions), in.Instance)
	}
	for k, v := range st.Counters {
		e.counter(descVRRPCounter, float64(v), k)
	}
}

// sync reports the connection sync daemons.
func (e emitter) sync(sy localapi.SyncStatus) {
	for _, state := range []string{"master", "backup"} {
		up, ifn, id := 0.0, sy.Interface, sy.SyncID
		for _, d := range sy.Daemons {
			if d.State == state {
				up, ifn, id = 1, d.Interface, d.SyncID
			}
		}
		e.gauge(descSyncDaemon, up, state, ifn, strconv.Itoa(id))
	}
	if sy.ConnsError == "" {
		e.gauge(descSyncConns, float64(sy.ConnsLocal), "local")
		e.gauge(descSyncConns, float64(sy.ConnsSynced), "synced")
	}
	e.counter(descSyncChanges, float64(sy.Started), "started")
	e.counter(descSyncChanges, float64(sy.Stopped), "stopped")
	e.counter(descSyncErrors, float64(sy.Errors))
	e.conntrackSync(sy.Conntrack)
}

// conntrackSync reports conntrack sync (nothing while it is off).
func (e emitter) conntrackSync(c localapi.ConntrackSync) {
	if !c.Enabled {
		return
	}
	e.gauge(descCTSyncUp, 1, c.Role)
	e.gauge(descCTSynced, b2f(c.Synced))
	e.counter(descCTMessages, float64(c.Sent.Messages), "sent")
	e.counter(descCTMessages, float64(c.Received.Messages), "received")
	e.counter(descCTEntries, float64(c.Sent.Entries), "sent")
	e.counter(descCTEntries, float64(c.Received.Entries), "received")
	e.counter(descCTInstalled, float64(c.Installed), "installed")
	e.counter(descCTInstalled, float64(c.Deleted), "deleted")
	e.counter(descCTInstalled, float64(c.InstallErr), "refused")
	for _, r := range []string{ctsync.DropMalformed, ctsync.DropWrongPeer, ctsync.DropForeign, ctsync.DropReplay, ctsync.DropDuplicate, ctsync.DropUnexpected} {
		e.counter(descCTDropped, float64(c.Dropped[r]), r)
	}
	e.counter(descCTRecovery, float64(c.Gaps), "gap")
	e.counter(descCTRecovery, float64(c.Nacks), "nack")
	e.counter(descCTRecovery, float64(c.Resent), "resent")
	e.counter(descCTRecovery, float64(c.Resyncs), "resync")
	e.counter(descCTRecovery, float64(c.Dumps), "dump")
	e.counter(descCTEvents, float64(c.Events))
	e.counter(descCTSendErrors, float64(c.SendErr))
}

// configSync reports whether the HA nodes agree on the config.
func (e emitter) configSync(cs localapi.ConfigSync) {
	e.gauge(descConfigGeneration, float64(cs.Generation))
	for _, p := range cs.Peers {
		e.gauge(descConfigAgree, b2f(p.Agree), p.Address)
	}
	for r, n := range cs.Dropped {
		e.counter(descConfigSyncDrops, float64(n), r)
	}
}

// bonds reports the bonds and their members' links.
func (e emitter) bonds(bonds []bondstat.Bond) {
	for _, b := range bonds {
		e.gauge(descBondUp, b2f(b.MII == "up"), b.Name)
		for _, m := range b.Members {
			e.gauge(descBondMember, b2f(m.Up()), b.Name, m.Name)
			e.counter(descBondLinkFails, float64(m.LinkFailures), b.Name, m.Name)
		}
	}
}

// l7 reports the L7 proxy's virtual servers and members.
func (e emitter) l7(vss []localapi.L7VirtualServer) {
	for _, v := range vss {
		l := []string{v.Name, v.Address}
		for class, n := range v.Requests {
			e.counter(descL7Reqs, float64(n), append(l, class)...)
		}
		e.counter(descL7Bytes, float64(v.BytesOut), l...)
		e.gauge(descL7Conns, float64(v.ConnsOpen), l...)
		e.counter(descL7Evict, float64(v.ConnsEvicted), l...)
		e.counter(descL7Cookies, float64(v.BadCookies), l...)
		for _, m := range v.Members {
			ml := []string{v.Name, m.Pool, m.Member}
			e.counter(descL7MemReqs, float64(m.Requests), ml...)
			e.counter(descL7MemErrs, float64(m.Errors), ml...)
			e.gauge(descL7MemAct, float64(m.Active), ml...)
			e.gauge(descL7MemUp, b2f(m.Usable), ml...)
		}
	}
}
