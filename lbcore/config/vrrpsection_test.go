package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
)

func parse(t *testing.T, doc string) *VRRP {
	t.Helper()
	c, err := decodeVRRP(doc)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return c
}

func decodeVRRP(doc string) (*VRRP, error) {
	var c VRRP
	if _, err := decode([]byte(doc), &c); err != nil {
		return nil, err
	}
	c.ApplyDefaults()
	return &c, nil
}

func TestDefaults(t *testing.T) {
	c := parse(t, `
instances:
  - vrid: 51
    external: [203.0.113.100/24, "2001:db8::100"]
  - vrid: 52
    internal: ["2001:db8:1::1/64"]
track:
  - group: internal
  - group: external
    action: decrement
`)
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	if c.Version != 3 || c.Priority != 100 || c.AdvertInterval != 20 || !c.PreemptEnabled() {
		t.Errorf("defaults: version=%d priority=%d advert=%d preempt=%v", c.Version, c.Priority, c.AdvertInterval, c.PreemptEnabled())
	}
	if c.GARP.Repeat != 5 || c.GARP.RefreshInterval() != time.Minute {
		t.Errorf("garp defaults: %+v refresh=%s", c.GARP, c.GARP.RefreshInterval())
	}
	if c.Instances[0].Family != IPv4 || c.Instances[1].Family != IPv6 || c.Instances[0].Name != "vrid51" {
		t.Errorf("instance defaults: %+v", c.Instances)
	}
	if got := c.Instances[0].HeartbeatAddrs(); len(got) != 1 || got[0].String() != "203.0.113.100" {
		t.Errorf("heartbeat addrs = %v", got)
	}
	if c.Track[0].Action != TrackFault || c.Track[1].Weight != DefaultTrackWeight {
		t.Errorf("track defaults: %+v", c.Track)
	}
	// Default timing meets the 1 s failure-detection target.
	adv := AdvertDuration(c.AdvertInterval)
	skew := time.Duration(256-c.Priority) * adv / 256
	if down := 3*adv + skew; down >= time.Second {
		t.Errorf("default master-down interval %s is not under 1 s", down)
	}
}

func TestRefreshOff(t *testing.T) {
	c := parse(t, "garp: {refresh: 0s}\ninstances: [{vrid: 1, external: [203.0.113.100]}]\n")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.GARP.RefreshInterval() != 0 {
		t.Errorf("refresh = %s, want off", c.GARP.RefreshInterval())
	}
}

func TestValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		name, doc, path, msg string
	}{
		{"version", "version: 4\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "version", "not supported"},
		{"priority", "priority: 256\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "priority", "out of range"},
		{"instance priority", "instances: [{vrid: 1, priority: -1, external: [203.0.113.100]}]", "instances[0].priority", "out of range"},
		{"advert", "advert_interval: 5000\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "advert_interval", "out of range"},
		{"v2 advert", "version: 2\nadvert_interval: 150\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "advert_interval", "whole seconds"},
		{"v2 ipv6", "version: 2\ninstances: [{vrid: 1, external: ['2001:db8::1']}]", "instances[0].family", "IPv4 only"},
		{"vrid", "instances: [{vrid: 0, external: [203.0.113.100]}]", "instances[0].vrid", "out of range"},
		{"dup vrid", "instances: [{vrid: 7, external: [203.0.113.100]}, {vrid: 7, external: [203.0.113.101]}]", "instances[1].vrid", "already used"},
		{"dup addr", "instances: [{vrid: 7, external: [203.0.113.100]}, {vrid: 8, external: [203.0.113.100/24]}]", "instances[1].external[0]", "already a virtual address"},
		{"bad addr", "instances: [{vrid: 7, internal: [198.51.100.300]}]", "instances[0].internal[0]", "not an IP address"},
		{"multicast addr", "instances: [{vrid: 7, internal: [224.0.0.18]}]", "instances[0].internal[0]", "cannot float"},
		{"no addrs", "instances: [{vrid: 7}]", "instances[0]", "no virtual addresses"},
		{"family mismatch", "instances: [{vrid: 7, family: ipv6, external: [203.0.113.100]}]", "instances[0].family", "needs at least one ipv6"},
		{"bad family", "instances: [{vrid: 7, family: ipx, external: [203.0.113.100]}]", "instances[0].family", "unknown family"},
		{"preempt both", "preempt: true\nnopreempt: true\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "nopreempt", "contradicts"},
		{"preempt delay", "nopreempt: true\npreempt_delay: 10s\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "preempt_delay", "no effect"},
		{"peer", "unicast_peers: [192.0.2.2, foo]\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "unicast_peers[1]", "not an IP address"},
		{"dup peer", "unicast_peers: [192.0.2.2, 192.0.2.2]\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "unicast_peers[1]", "twice"},
		{"garp", "garp: {repeat: 1000}\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "garp.repeat", "out of range"},
		{"refresh", "garp: {refresh: 10ms}\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "garp.refresh", "out of range"},
		{"track group", "track: [{group: failover}]\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "track[0].group", "not a trackable"},
		{"track action", "track: [{group: internal, action: reboot}]\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "track[0].action", "unknown track action"},
		{"track weight", "track: [{group: internal, action: decrement, weight: 300}]\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "track[0].weight", "out of range"},
		{"track dup", "track: [{group: internal}, {group: internal}]\ninstances: [{vrid: 1, external: [203.0.113.100]}]", "track[1].group", "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := decodeVRRP(tc.doc)
			if err == nil {
				err = c.Validate()
			}
			var list *cfgerr.List
			if !errors.As(err, &list) {
				t.Fatalf("want a *cfgerr.List, got %v", err)
			}
			for _, fe := range list.Errors() {
				if fe.Path == tc.path && strings.Contains(fe.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("no error at %s containing %q; got: %v", tc.path, tc.msg, err)
		})
	}
}
