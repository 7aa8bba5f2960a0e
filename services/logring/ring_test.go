package logring

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

func TestRingKeepsTheLastLinesAndSplitsSources(t *testing.T) {
	r := New(3)
	fmt.Fprint(r, "lbd| one\ninit line\nvrrpd| thr")
	fmt.Fprint(r, "ee\nlbd| four\n")
	page := r.Since(0, 0)
	if len(page.Lines) != 3 || page.Dropped != 1 {
		t.Fatalf("lines %+v dropped %d, want the last 3 and 1 dropped", page.Lines, page.Dropped)
	}
	want := []struct{ src, text string }{{"init", "init line"}, {"vrrpd", "three"}, {"lbd", "four"}}
	for i, w := range want {
		if page.Lines[i].Source != w.src || page.Lines[i].Text != w.text {
			t.Errorf("line %d = %+v, want %v", i, page.Lines[i], w)
		}
	}
	if page.Next != 4 {
		t.Errorf("next %d, want 4", page.Next)
	}
	if p := r.Since(page.Next, 0); len(p.Lines) != 0 || p.Next != 4 {
		t.Errorf("nothing new expected, got %+v", p)
	}
	if p := r.Since(2, 1); len(p.Lines) != 1 || p.Lines[0].Text != "three" {
		t.Errorf("max 1 after 2: %+v", p)
	}
}

func TestFormatIsRFC5424(t *testing.T) {
	l := localapi.LogLine{Time: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), Source: "lbd", Text: `time="x" level=error msg="boom"`}
	got := Format(l, "lb1")
	want := `<27>1 2026-01-02T03:04:05.000006Z lb1 lbd - - - time="x" level=error msg="boom"`
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	if s := Format(localapi.LogLine{Source: "", Text: "hi"}, "my host"); !strings.HasPrefix(s, "<30>1 ") || !strings.Contains(s, " myhost - - - - hi") {
		t.Errorf("empty app / spaces in host: %q", s)
	}
}

func TestParseTargetRejectsBadTargets(t *testing.T) {
	for _, bad := range []string{"http://x:1", "udp://", "tcp://h:1/path", "x"} {
		if _, _, err := ParseTarget(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	n, a, err := ParseTarget("udp://192.0.2.200")
	if err != nil || n != "udp" || a != "192.0.2.200:514" {
		t.Errorf("default port: %s %s %v", n, a, err)
	}
}

type fakeSource struct{ r *Ring }

func (f fakeSource) Log(_ context.Context, since uint64, max int) (localapi.LogPage, error) {
	return f.r.Since(since, max), nil
}

// TestFollowForwardsOverTCP sends ring lines to a TCP collector with
// octet-counting framing.
func TestFollowForwardsOverTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var all strings.Builder
		b := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for strings.Count(all.String(), "<30>1") < 2 {
			n, err := c.Read(b)
			all.Write(b[:n])
			if err != nil {
				break
			}
		}
		got <- all.String()
	}()
	r := New(10)
	fmt.Fprint(r, "lbd| first\nvrrpd| second\n")
	f, err := NewForwarder("tcp://"+l.Addr().String(), "lb1", 10)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Run(ctx)
	go Follow(ctx, fakeSource{r}, f, 10*time.Millisecond)
	s := <-got
	re := regexp.MustCompile(`^(\d+) (<30>1 \S+ lb1 lbd - - - first)(\d+) (<30>1 \S+ lb1 vrrpd - - - second)$`)
	m := re.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("collector got %q", s)
	}
	if m[1] != fmt.Sprint(len(m[2])) || m[3] != fmt.Sprint(len(m[4])) {
		t.Errorf("octet counts wrong: %q", s)
	}
}
