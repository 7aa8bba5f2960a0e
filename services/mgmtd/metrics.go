package mgmtd

import (
	"context"
	"strconv"
	"strings"
	"time"

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
	descMemHealth   = prometheus.NewDesc("fulcrum_member_health", "1 for the member's current health state (up, down, unknown, unmonitored).", append(memLabels, "state"), nil)
	descMemDisabled = prometheus.NewDesc("fulcrum_member_disabled", "1 when the member is administratively disabled.", memLabels, nil)

	descVRRPState       = prometheus.NewDesc("fulcrum_vrrp_state", "1 for the instance's current VRRP state.", []string{"instance", "state"}, nil)
	descVRRPPriority    = prometheus.NewDesc("fulcrum_vrrp_priority", "Current VRRP priority.", []string{"instance"}, nil)
	descVRRPTransitions = prometheus.NewDesc("fulcrum_vrrp_transitions_total", "VRRP state changes since vrrpd started.", []string{"instance"}, nil)
	descVRRPCounter     = prometheus.NewDesc("fulcrum_vrrp_packets_total", "VRRP packet counters by kind.", []string{"kind"}, nil)

	descSyncDaemon  = prometheus.NewDesc("fulcrum_ipvs_sync_daemon_up", "1 when the kernel's IPVS sync daemon in that state (master, backup) runs.", []string{"state", "interface", "sync_id"}, nil)
	descSyncConns   = prometheus.NewDesc("fulcrum_ipvs_sync_connections", "IPVS connection entries by origin: local (forwarded here) or synced (from the peer).", []string{"origin"}, nil)
	descSyncChanges = prometheus.NewDesc("fulcrum_ipvs_sync_daemon_changes_total", "Sync daemons started or stopped by vrrpd.", []string{"action"}, nil)
	descSyncErrors  = prometheus.NewDesc("fulcrum_ipvs_sync_errors_total", "Failed sync daemon reconciles (retried).", nil, nil)

	descBondMember    = prometheus.NewDesc("fulcrum_bond_member_up", "1 when the bond member's link (MII) is up.", []string{"bond", "member"}, nil)
	descBondLinkFails = prometheus.NewDesc("fulcrum_bond_member_link_failures_total", "Link failures of the bond member.", []string{"bond", "member"}, nil)
	descBondUp        = prometheus.NewDesc("fulcrum_bond_up", "1 when the bond's MII status is up.", []string{"bond"}, nil)

	descDaemonUp       = prometheus.NewDesc("fulcrum_daemon_up", "1 when the daemon is running.", []string{"daemon"}, nil)
	descDaemonRestarts = prometheus.NewDesc("fulcrum_daemon_restarts_total", "Times init restarted the daemon.", []string{"daemon"}, nil)
	descDaemonWatchdog = prometheus.NewDesc("fulcrum_daemon_watchdog_kills_total", "Times init killed the daemon for missing heartbeats (hung).", []string{"daemon"}, nil)
	descDaemonDropped  = prometheus.NewDesc("fulcrum_daemon_output_lines_dropped_total", "Lines of the daemon's output dropped because the console could not take them.", []string{"daemon"}, nil)

	descScrapeError = prometheus.NewDesc("fulcrum_scrape_source_up", "1 when the source answered this scrape.", []string{"source"}, nil)
)

var vrrpStates = []string{"init", "backup", "master", "fault"}
var healthStates = []string{"up", "down", "unknown", "unmonitored"}

// Describe sends every metric description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descVSConns, descVSPackets, descVSBytes, descMemActive, descMemInactive, descMemConns, descMemPackets, descMemBytes, descMemWeight, descMemHealth, descMemDisabled, descVRRPState, descVRRPPriority, descVRRPTransitions, descVRRPCounter, descSyncDaemon, descSyncConns, descSyncChanges, descSyncErrors, descBondMember, descBondLinkFails, descBondUp, descDaemonUp, descDaemonRestarts, descDaemonWatchdog, descDaemonDropped, descScrapeError} {
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
	source := func(name string, err error) bool {
		if err != nil && c.Log != nil {
			c.Log.WithError(err).WithField("source", name).Debug("metrics source failed")
		}
		ch <- prometheus.MustNewConstMetric(descScrapeError, prometheus.GaugeValue, b2f(err == nil), name)
		return err == nil
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}

	vss, err := c.API.VirtualServers(ctx)
	if source("lbd", err) {
		for _, vs := range vss {
			name := vs.Name
			if name == "" {
				name = vs.Protocol + " " + vs.Address
			}
			l := []string{name, vs.Protocol, vs.Address}
			counter(descVSConns, float64(vs.Stats.Conns), l...)
			counter(descVSPackets, float64(vs.Stats.PacketsIn), append(l, "in")...)
			counter(descVSPackets, float64(vs.Stats.PacketsOut), append(l, "out")...)
			counter(descVSBytes, float64(vs.Stats.BytesIn), append(l, "in")...)
			counter(descVSBytes, float64(vs.Stats.BytesOut), append(l, "out")...)
			for _, m := range vs.Members {
				ml := []string{name, vs.Pool, m.Address}
				gauge(descMemActive, float64(m.Active), ml...)
				gauge(descMemInactive, float64(m.Inactive), ml...)
				gauge(descMemWeight, float64(m.Weight), ml...)
				gauge(descMemDisabled, b2f(m.Disabled), ml...)
				counter(descMemConns, float64(m.Stats.Conns), ml...)
				counter(descMemPackets, float64(m.Stats.PacketsIn), append(ml, "in")...)
				counter(descMemPackets, float64(m.Stats.PacketsOut), append(ml, "out")...)
				counter(descMemBytes, float64(m.Stats.BytesIn), append(ml, "in")...)
				counter(descMemBytes, float64(m.Stats.BytesOut), append(ml, "out")...)
				for _, s := range healthStates {
					gauge(descMemHealth, b2f(m.Health == s), append(ml, s)...)
				}
			}
		}
	}

	st, err := c.API.VRRP(ctx)
	if source("vrrpd", err) {
		for _, in := range st.Instances {
			for _, s := range vrrpStates {
				gauge(descVRRPState, b2f(strings.EqualFold(in.State, s)), in.Instance, s)
			}
			gauge(descVRRPPriority, float64(in.Priority), in.Instance)
			counter(descVRRPTransitions, float64(in.Transitions), in.Instance)
		}
		for k, v := range st.Counters {
			counter(descVRRPCounter, float64(v), k)
		}
	}

	sy, err := c.API.Sync(ctx)
	if source("sync", err) && sy.Enabled {
		for _, state := range []string{"master", "backup"} {
			up, ifn, id := 0.0, sy.Interface, sy.SyncID
			for _, d := range sy.Daemons {
				if d.State == state {
					up, ifn, id = 1, d.Interface, d.SyncID
				}
			}
			gauge(descSyncDaemon, up, state, ifn, strconv.Itoa(id))
		}
		if sy.ConnsError == "" {
			gauge(descSyncConns, float64(sy.ConnsLocal), "local")
			gauge(descSyncConns, float64(sy.ConnsSynced), "synced")
		}
		counter(descSyncChanges, float64(sy.Started), "started")
		counter(descSyncChanges, float64(sy.Stopped), "stopped")
		counter(descSyncErrors, float64(sy.Errors))
	}

	bonds, err := bondstat.Read(c.BondDir)
	if source("bonds", err) {
		for _, b := range bonds {
			gauge(descBondUp, b2f(b.MII == "up"), b.Name)
			for _, m := range b.Members {
				gauge(descBondMember, b2f(m.Up()), b.Name, m.Name)
				counter(descBondLinkFails, float64(m.LinkFailures), b.Name, m.Name)
			}
		}
	}

	svcs, err := c.API.Services(ctx)
	if source("init", err) {
		for _, s := range svcs {
			gauge(descDaemonUp, b2f(s.Running), s.Name)
			counter(descDaemonRestarts, float64(s.Restarts), s.Name)
			counter(descDaemonWatchdog, float64(s.WatchdogKills), s.Name)
			counter(descDaemonDropped, float64(s.OutputDropped), s.Name)
		}
	}
}
