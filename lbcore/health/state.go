package health

import (
	"fmt"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// State is a member's health as the pools see it.
type State int

// Member states. Only StateUp serves traffic.
const (
	// StateUnknown: not checked yet. Does not serve; the first check result
	// moves the member to up or down (so a new pool never sends traffic to a
	// dead member, and waits at most one interval for a live one).
	StateUnknown State = iota
	StateUp
	StateDown
)

func (s State) String() string {
	switch s {
	case StateUnknown:
		return "unknown"
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// MarshalText writes the state name (for JSON and logs).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func initialState(s config.InitialState) State {
	switch s {
	case config.InitialUp:
		return StateUp
	case config.InitialDown:
		return StateDown
	}
	return StateUnknown
}

// Tracker is the rise/fall state machine of one member.
//
//	unknown --success--> up          unknown --failure--> down
//	up   --fall consecutive failures--> down
//	down --rise consecutive successes--> up
//
// A success resets the failure run and a failure resets the success run, so
// a flapping target changes state no faster than rise/fall allow.
type Tracker struct {
	Rise, Fall int
	State      State
	OKRun      int // consecutive successes
	FailRun    int // consecutive failures
}

// Observe records one check result and reports whether the state changed,
// and from what.
func (t *Tracker) Observe(ok bool) (changed bool, from State) {
	from = t.State
	if ok {
		t.OKRun++
		t.FailRun = 0
	} else {
		t.FailRun++
		t.OKRun = 0
	}
	switch t.State {
	case StateUnknown:
		if ok {
			t.State = StateUp
		} else {
			t.State = StateDown
		}
	case StateUp:
		if t.FailRun >= t.Fall {
			t.State = StateDown
		}
	case StateDown:
		if t.OKRun >= t.Rise {
			t.State = StateUp
		}
	}
	return t.State != from, from
}
