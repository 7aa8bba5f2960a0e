package health

import (
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
