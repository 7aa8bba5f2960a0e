package cookie

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRoundTripAndTamper(t *testing.T) {
	a, _ := New("0123456789abcdef")
	b, _ := New("0123456789abcdef") // the other HA node
	other, _ := New("another-secret-16")
	now := time.Unix(1_800_000_000, 0)
	id := a.MemberID("web", "pool/198.51.100.11:8080")
	if id == a.MemberID("web", "pool/198.51.100.12:8080") || id == a.MemberID("shop", "pool/198.51.100.11:8080") {
		t.Fatal("member IDs collide across members or virtual servers")
	}
	v := a.Encode(id, now.Add(time.Hour))
	if strings.Contains(v, "198.51") {
		t.Fatalf("cookie is not opaque: %s", v)
	}
	got, err := b.Decode(v, now)
	if err != nil || got != id {
		t.Fatalf("peer node decode: %v %v", got, err)
	}
	if _, err := other.Decode(v, now); !errors.Is(err, ErrForged) {
		t.Errorf("another secret accepted the cookie: %v", err)
	}
	if _, err := a.Decode(v, now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("expired cookie: %v", err)
	}
	// Flip every character in turn: each edit must be refused.
	for i := range v {
		for _, c := range []byte{'A', 'z', '0', '_'} {
			if v[i] == c {
				continue
			}
			e := v[:i] + string(c) + v[i+1:]
			if got, err := a.Decode(e, now); err == nil && got != id {
				t.Fatalf("edited cookie %q decoded to another member", e)
			} else if err == nil && e != v {
				// base64 slack bits in the last character may decode to
				// the same bytes; anything else must fail
				if i != len(v)-1 {
					t.Fatalf("edited cookie %q accepted", e)
				}
			}
		}
	}
	for _, bad := range []string{"", "x", strings.Repeat("A", len(v)), v + "A", "%%%" + v[3:]} {
		if _, err := a.Decode(bad, now); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	c, _ := New("0123456789abcdef")
	f.Add(c.Encode(c.MemberID("v", "m"), time.Unix(2e9, 0)))
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = c.Decode(s, time.Unix(1e9, 0))
	})
}
