package node

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
	"github.com/sirupsen/logrus"
)

// The main loop heartbeats on time even when it has nothing else to do (a
// node in FAULT has no timers), so a supervisor's watchdog kills only a loop
// that is really stuck.
func TestHeartbeatFromTheMainLoop(t *testing.T) {
	l := newLab(t)
	l.nodes[0].setLink(t, "internal", false)
	cfg := labConfig(100, func(c *config.VRRP) { c.Track = []config.VRRPTrack{{Group: config.Internal}} })
	var beats atomic.Int64
	log := logrus.New()
	log.SetOutput(testWriter{t, "lb1"})
	n, err := New(Options{Config: cfg, Interfaces: labIfs, Log: log, NetNS: l.nodes[0].ns,
		Heartbeat: func() { beats.Add(1) }, HeartbeatEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 3*time.Second, "lb1 in FAULT", func() bool { return n.Status()[0].State == fsm.Fault })
	b0 := beats.Load()
	time.Sleep(time.Second)
	if got := beats.Load() - b0; got < 15 || got > 25 {
		t.Errorf("%d heartbeats in 1 s at a 50 ms period, want about 20", got)
	}
}
