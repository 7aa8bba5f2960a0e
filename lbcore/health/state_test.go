package health

import (
	"reflect"
	"testing"
)

func TestTrackerRiseFall(t *testing.T) {
	tr := Tracker{Rise: 2, Fall: 3, State: StateUp}
	// fall-1 failures keep it up, the fall-th takes it down.
	for i := 1; i <= 2; i++ {
		if changed, _ := tr.Observe(false); changed || tr.State != StateUp {
			t.Fatalf("failure %d: state %s changed=%v", i, tr.State, changed)
		}
	}
	if changed, from := tr.Observe(false); !changed || from != StateUp || tr.State != StateDown {
		t.Fatalf("3rd failure: state %s changed=%v from %s", tr.State, changed, from)
	}
	if changed, _ := tr.Observe(true); changed {
		t.Fatal("one success brought it up with rise 2")
	}
	if changed, _ := tr.Observe(true); !changed || tr.State != StateUp {
		t.Fatalf("2nd success: %s", tr.State)
	}
}

func TestTrackerFlapping(t *testing.T) {
	for _, start := range []State{StateUp, StateDown} {
		tr := Tracker{Rise: 2, Fall: 2, State: start}
		for i := 0; i < 50; i++ {
			if changed, _ := tr.Observe(i%2 == 0); changed {
				t.Fatalf("start %s: alternating results changed state at %d", start, i)
			}
		}
	}
	// Two failures, one success, two failures: with fall 3 never down.
	tr := Tracker{Rise: 1, Fall: 3, State: StateUp}
	for _, ok := range []bool{false, false, true, false, false, true, false, false} {
		tr.Observe(ok)
	}
	if tr.State != StateUp {
		t.Errorf("interrupted failures took it down")
	}
}

func TestTrackerUnknown(t *testing.T) {
	tr := Tracker{Rise: 5, Fall: 5}
	if changed, from := tr.Observe(true); !changed || from != StateUnknown || tr.State != StateUp {
		t.Errorf("first success from unknown: %s", tr.State)
	}
	tr = Tracker{Rise: 5, Fall: 5}
	if changed, _ := tr.Observe(false); !changed || tr.State != StateDown {
		t.Errorf("first failure from unknown: %s", tr.State)
	}
}

func TestPoolEffect(t *testing.T) {
	members := []PoolMember{
		{ID: "a", Weight: 5, State: StateUp},
		{ID: "b", Weight: 1, State: StateDown},
		{ID: "c", Weight: 2, State: StateUnknown},
		{ID: "d", Weight: 0, State: StateUp}, // drained
	}
	for _, tc := range []struct {
		name string
		p    PoolPolicy
		want PoolState
	}{
		{"remove failed", PoolPolicy{}, PoolState{
			Destinations: []Destination{{"a", 5}, {"d", 0}}, Serving: 1, QuorumMet: true}},
		{"inhibit", PoolPolicy{Inhibit: true}, PoolState{
			Destinations: []Destination{{"a", 5}, {"b", 0}, {"c", 0}, {"d", 0}}, Serving: 1, QuorumMet: true}},
		{"quorum met", PoolPolicy{Quorum: 1, SorryServer: "sorry"}, PoolState{
			Destinations: []Destination{{"a", 5}, {"d", 0}}, Serving: 1, QuorumMet: true}},
		{"below quorum, sorry", PoolPolicy{Quorum: 2, SorryServer: "sorry"}, PoolState{
			Destinations: []Destination{{"sorry", 1}}, Serving: 1, SorryActive: true}},
		{"below quorum, sorry, inhibit", PoolPolicy{Quorum: 2, SorryServer: "sorry", Inhibit: true}, PoolState{
			Destinations: []Destination{{"a", 0}, {"b", 0}, {"c", 0}, {"d", 0}, {"sorry", 1}}, Serving: 1, SorryActive: true}},
		{"below quorum, no sorry", PoolPolicy{Quorum: 2}, PoolState{
			Destinations: []Destination{{"a", 5}, {"d", 0}}, Serving: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PoolEffect(members, tc.p)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	// All down, sorry set, quorum unset: the sorry server takes over.
	down := []PoolMember{{ID: "a", Weight: 1, State: StateDown}}
	if got := PoolEffect(down, PoolPolicy{SorryServer: "s"}); !got.SorryActive || len(got.Destinations) != 1 || got.Destinations[0].ID != "s" {
		t.Errorf("all down: %+v", got)
	}
	// All down, no sorry: nothing serves.
	if got := PoolEffect(down, PoolPolicy{}); len(got.Destinations) != 0 || got.SorryActive {
		t.Errorf("all down without sorry: %+v", got)
	}
}
