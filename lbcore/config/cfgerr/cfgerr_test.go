package cfgerr

import (
	"errors"
	"strings"
	"testing"
)

func TestMergePrefixesPathsAndKeepsLines(t *testing.T) {
	var inner List
	inner.Add("priority", "must be 1..254")
	inner.Add("", "section missing")
	var outer List
	outer.Merge("vrrp.instances[0]", inner.Err())
	outer.Merge("monitors.web", errors.New("plain error"))
	outer.Merge("x", nil)
	var got []string
	for _, e := range outer.Errors() {
		got = append(got, e.Path)
	}
	if strings.Join(got, ",") != "vrrp.instances[0].priority,vrrp.instances[0],monitors.web" {
		t.Fatalf("paths %v", got)
	}
	outer.SetLines(func(p string) int { return len(p) })
	outer.Sort()
	if first := outer.Errors()[0]; first.Path != "monitors.web" || first.Line != 12 {
		t.Fatalf("after sort first = %+v", first)
	}
	msg := outer.Error()
	if !strings.HasPrefix(msg, "invalid config: 3 problems:") || !strings.Contains(msg, "vrrp.instances[0].priority (line 26): must be 1..254") {
		t.Fatalf("message %q", msg)
	}
}

func TestJoinAndIndex(t *testing.T) {
	for _, c := range [][3]string{{"a", "b", "a.b"}, {"a", "[2]", "a[2]"}, {"", "b", "b"}, {"a", "", "a"}} {
		if got := Join(c[0], c[1]); got != c[2] {
			t.Errorf("Join(%q,%q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
	if Index("members", 3) != "members[3]" {
		t.Error("Index")
	}
	var empty *List
	if empty.Err() != nil || (&List{}).Err() != nil {
		t.Error("empty list must be a nil error")
	}
}
