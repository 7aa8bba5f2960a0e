package balance

import (
	"net/netip"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

func members(weights ...int) []*Member {
	var out []*Member
	for i, w := range weights {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(11 + i)})
		out = append(out, &Member{Ref: config.MemberRef{Pool: "p", Addr: a, Port: 80}, Addr: a.String() + ":80", Weight: w, Key: [8]byte{byte(i + 1)}})
	}
	return out
}

func count(t *testing.T, b *Balancer, n int, done bool) map[int]int {
	t.Helper()
	got := map[int]int{}
	for range n {
		m, fresh, err := b.Pick([8]byte{}, false)
		if err != nil || !fresh {
			t.Fatalf("pick: %v fresh=%v", err, fresh)
		}
		got[int(m.Key[0])]++
		if done {
			m.Done()
		}
	}
	return got
}

func TestSchedulers(t *testing.T) {
	if got := count(t, New("rr", members(1, 1, 1)), 9, true); got[1] != 3 || got[2] != 3 || got[3] != 3 {
		t.Errorf("rr: %v", got)
	}
	if got := count(t, New("wrr", members(1, 3)), 8, true); got[1] != 2 || got[2] != 6 {
		t.Errorf("wrr 1:3: %v", got)
	}
	// lc with requests left open spreads them evenly; wlc by weight.
	if got := count(t, New("lc", members(1, 5)), 10, false); got[1] != 5 || got[2] != 5 {
		t.Errorf("lc: %v", got)
	}
	if got := count(t, New("wlc", members(1, 4)), 10, false); got[1] != 2 || got[2] != 8 {
		t.Errorf("wlc 1:4: %v", got)
	}
}

func TestPinAndHealth(t *testing.T) {
	ms := members(1, 1)
	b := New("rr", ms)
	for range 5 {
		m, fresh, err := b.Pick(ms[1].Key, true)
		if err != nil || fresh || m != ms[1] {
			t.Fatalf("pinned pick: %v fresh=%v err=%v", m.Ref, fresh, err)
		}
		m.Done()
	}
	b.SetUsable(ms[1].Ref, false)
	m, fresh, err := b.Pick(ms[1].Key, true)
	if err != nil || !fresh || m != ms[0] {
		t.Fatalf("pin to a down member must re-pin to the healthy one: %v fresh=%v err=%v", m, fresh, err)
	}
	if m, _, _ := b.Pick([8]byte{9}, true); m != ms[0] {
		t.Fatal("an unknown pin must be scheduled")
	}
	b.SetUsable(ms[0].Ref, false)
	if _, _, err := b.Pick([8]byte{}, false); err != ErrNoMember {
		t.Fatalf("all down: %v", err)
	}
	// weight 0 (disabled by weight) is not usable either
	z := New("wrr", members(0, 1))
	if got := count(t, z, 4, true); got[1] != 0 {
		t.Errorf("weight-0 member picked: %v", got)
	}
}
