package health

import "testing"

func TestMemberSettled(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    MemberStatus
		want bool
	}{
		{"never checked", MemberStatus{State: StateUp}, false},
		{"initial up, first check failed (fall not reached)", MemberStatus{State: StateUp, Checks: 1}, false},
		{"initial down, first check passed (rise not reached)", MemberStatus{State: StateDown, Checks: 1, LastOK: true}, false},
		{"up after a passing check", MemberStatus{State: StateUp, Checks: 1, LastOK: true}, true},
		{"down after a failing check", MemberStatus{State: StateDown, Checks: 2}, true},
		{"unknown", MemberStatus{State: StateUnknown, Checks: 1}, false},
	} {
		if got := tc.m.Settled(); got != tc.want {
			t.Errorf("%s: Settled() = %v, want %v", tc.name, got, tc.want)
		}
	}
}
