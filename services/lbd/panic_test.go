package lbd

import (
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// TestPanicWatchSaysSoLoudly: entering panic logs an error, it repeats while
// the panic lasts, and leaving it logs once; a pool not in panic is quiet.
func TestPanicWatchSaysSoLoudly(t *testing.T) {
	l, hook := test.NewNullLogger()
	w := newPanicWatch(logrus.NewEntry(l), 10*time.Second)
	t0 := time.Unix(1000, 0)
	calm := []lbapply.PoolStatus{{Name: "web", Failed: 1, Members: make([]lbapply.MemberStatus, 4)}}
	hot := []lbapply.PoolStatus{{Name: "web", Panic: true, Failed: 4, Members: make([]lbapply.MemberStatus, 4)}}
	steps := []struct {
		at    time.Duration
		pools []lbapply.PoolStatus
		want  string
	}{
		{0, calm, ""},
		{time.Second, hot, "pool in PANIC"},
		{2 * time.Second, hot, ""},
		{11 * time.Second, hot, "pool still in PANIC"},
		{12 * time.Second, calm, "pool out of panic"},
		{13 * time.Second, calm, ""},
	}
	for _, s := range steps {
		hook.Reset()
		w.observe(t0.Add(s.at), s.pools)
		got := ""
		if e := hook.LastEntry(); e != nil {
			got = e.Message
		}
		if (s.want == "") != (got == "") || !strings.HasPrefix(got, s.want) {
			t.Errorf("at %v: logged %q, want %q", s.at, got, s.want)
		}
	}
}
