package health_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/health"
	"github.com/fulcrum-lb/fulcrum/lbcore/health/internal/nslab"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
)

// behaviour is how the scripted test server answers one connection.
type behaviour int32

const (
	answerOK        behaviour = iota // HTTP 200 "ok"
	answer500                        // HTTP 500
	answerWrongBody                  // HTTP 200 "maintenance"
	answerHang                       // accept, never answer
	answerGarbage                    // non-HTTP bytes
	answerReset                      // read the request, then RST
	answerClose                      // read the request, then FIN without answer
	answerAccept                     // accept and close at once (TCP checks)
)

// scriptServer is a plain Go server in the server namespace whose answers a
// test can change at any time.
type scriptServer struct {
	mode    atomic.Int32
	pattern []behaviour // if set, answers in turn instead of mode (under mu)
	n       atomic.Int64
	mu      sync.Mutex
	remotes []string
	conns   []net.Conn
	ln      net.Listener
	lab     *nslab.Lab
	addr    string
}

func startServer(t *testing.T, lab *nslab.Lab, addr string, mode behaviour) *scriptServer {
	s := &scriptServer{lab: lab, addr: addr}
	s.mode.Store(int32(mode))
	s.listen(t)
	t.Cleanup(s.stop)
	return s
}

func (s *scriptServer) listen(t *testing.T) {
	s.ln = s.lab.Listen(t, s.addr)
	go func(ln net.Listener) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.remotes = append(s.remotes, c.RemoteAddr().String())
			s.mu.Unlock()
			go s.answer(c)
		}
	}(s.ln)
}

// stop closes the listener and every open connection (the server "dies").
func (s *scriptServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
}

func (s *scriptServer) setPattern(p ...behaviour) {
	s.mu.Lock()
	s.pattern = p
	s.mu.Unlock()
}

func (s *scriptServer) answer(c net.Conn) {
	i := s.n.Add(1) - 1
	b := behaviour(s.mode.Load())
	s.mu.Lock()
	if len(s.pattern) > 0 {
		b = s.pattern[int(i)%len(s.pattern)]
	}
	s.mu.Unlock()
	if b == answerHang {
		return // held open until stop()
	}
	defer c.Close()
	if b == answerAccept {
		return
	}
	c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil || line == "\r\n" {
			break
		}
	}
	switch b {
	case answerOK:
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
	case answer500:
		fmt.Fprint(c, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbad\n")
	case answerWrongBody:
		fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nmaintenance\n")
	case answerGarbage:
		c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n\x00\xff\xfe garbage\r\n\r\n"))
	case answerReset:
		c.(*net.TCPConn).SetLinger(0)
	case answerClose:
	}
}

// run drives a scheduler until ctx ends and records what it saw.
type recorder struct {
	mu     sync.Mutex
	obs    map[string][]health.Observation
	events map[string][]health.Event
}

func runScheduler(t *testing.T, lab *nslab.Lab, mons config.Monitors, members []health.Member) (*health.Scheduler, *recorder, context.CancelFunc) {
	t.Helper()
	return runSchedulerEnv(t, lab.InChecker, mons, members)
}

// runSchedulerEnv is runScheduler with sockets made in env (nil: here).
func runSchedulerEnv(t *testing.T, env health.SocketEnv, mons config.Monitors, members []health.Member) (*health.Scheduler, *recorder, context.CancelFunc) {
	t.Helper()
	rec := &recorder{obs: map[string][]health.Observation{}, events: map[string][]health.Event{}}
	s := health.NewScheduler(health.Options{
		SocketEnv: env,
		OnResult: func(o health.Observation) {
			rec.mu.Lock()
			rec.obs[o.Member] = append(rec.obs[o.Member], o)
			rec.mu.Unlock()
		},
		OnTransition: func(e health.Event) {
			rec.mu.Lock()
			rec.events[e.Member] = append(rec.events[e.Member], e)
			rec.mu.Unlock()
		},
	})
	if err := s.Configure(mons, members); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, rec, cancel
}

// waitEvent waits until member has n events.
func (r *recorder) waitEvent(t *testing.T, member string, n int, timeout time.Duration) health.Event {
	t.Helper()
	var got health.Event
	testkit.Eventually(t, timeout, 10*time.Millisecond, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		ev := r.events[member]
		if len(ev) < n {
			return fmt.Errorf("%s: no event %d (events %+v)", member, n, ev)
		}
		got = ev[n-1]
		return nil
	})
	return got
}

func (r *recorder) observations(member string) []health.Observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]health.Observation(nil), r.obs[member]...)
}

// checkRunBefore asserts that the event came on the check that completed a
// run of exactly n results with ok == want, and that the result before the
// run was the opposite (so it did not need fewer than n).
func checkRunBefore(t *testing.T, obs []health.Observation, ev health.Event, n int, want bool) {
	t.Helper()
	bySeq := map[uint64]health.Observation{}
	for _, o := range obs {
		bySeq[o.Seq] = o
	}
	for i := 0; i < n; i++ {
		o, ok := bySeq[ev.Check-uint64(i)]
		if !ok || o.Result.OK != want {
			t.Fatalf("event %s→%s at check %d: check %d is %+v, want ok=%v", ev.From, ev.To, ev.Check, ev.Check-uint64(i), o.Result, want)
		}
	}
	if prev, ok := bySeq[ev.Check-uint64(n)]; ok && prev.Result.OK == want {
		t.Fatalf("event at check %d came after more than %d results of ok=%v", ev.Check, n, want)
	}
}

func tcpMon(interval, timeout time.Duration, rise, fall int) config.Monitor {
	m := config.Monitor{Type: config.MonitorTCP, Interval: config.Duration(interval), Timeout: config.Duration(timeout), Rise: rise, Fall: fall}
	m.ApplyDefaults()
	return m
}

func member(id, addrport string, mon string) health.Member {
	ap := netip.MustParseAddrPort(addrport)
	return health.Member{ID: id, Target: health.Target{Addr: ap.Addr(), Port: ap.Port()}, Monitor: mon}
}

// TestTCPFallAndRise: a server that stops is down after exactly fall failed
// checks, and up again after exactly rise successful ones, for the connect
// and the half-open TCP checks.
func TestTCPFallAndRise(t *testing.T) {
	for _, tc := range []struct {
		typ                  config.MonitorType
		upReason, downReason string
	}{
		{config.MonitorTCP, "connected", "connection refused (connect)"},
		{config.MonitorTCPHalfOpen, "SYN-ACK", "connection refused (syn)"},
	} {
		t.Run(string(tc.typ), func(t *testing.T) {
			lab := nslab.New(t, nil, "198.51.100.11")
			srv := startServer(t, lab, "198.51.100.11:8080", answerAccept)
			const rise, fall = 2, 3
			mon := tcpMon(100*time.Millisecond, 50*time.Millisecond, rise, fall)
			mon.Type = tc.typ
			s, rec, _ := runScheduler(t, lab, config.Monitors{"tcp": mon}, []health.Member{member("web/11", "198.51.100.11:8080", "tcp")})

			up := rec.waitEvent(t, "web/11", 1, 2*time.Second)
			if up.From != health.StateUnknown || up.To != health.StateUp || up.Reason != tc.upReason || up.Check != 1 {
				t.Fatalf("first event %+v, want unknown→up on check 1 (%s)", up, tc.upReason)
			}
			srv.stop()
			down := rec.waitEvent(t, "web/11", 2, 2*time.Second)
			if down.To != health.StateDown || down.Reason != tc.downReason {
				t.Fatalf("second event %+v, want down (%s)", down, tc.downReason)
			}
			checkRunBefore(t, rec.observations("web/11"), down, fall, false)

			srv.listen(t)
			back := rec.waitEvent(t, "web/11", 3, 2*time.Second)
			if back.To != health.StateUp {
				t.Fatalf("third event %+v", back)
			}
			checkRunBefore(t, rec.observations("web/11"), back, rise, true)

			snap := s.Snapshot()
			if len(snap) != 1 || snap[0].Transitions != 3 || snap[0].State != health.StateUp || !snap[0].LastOK {
				t.Errorf("snapshot %+v", snap)
			}
		})
	}
}

// TestHangCostsOnlyItsTimeout: a member whose server accepts and never
// answers fails each check by its timeout, and the healthy member beside it
// keeps being checked on its slots.
func TestHangCostsOnlyItsTimeout(t *testing.T) {
	lab := nslab.New(t, nil, "198.51.100.11", "198.51.100.12")
	startServer(t, lab, "198.51.100.11:80", answerHang)
	startServer(t, lab, "198.51.100.12:80", answerOK)
	mon := config.Monitor{Type: config.MonitorHTTP, Interval: config.Duration(200 * time.Millisecond),
		Timeout: config.Duration(150 * time.Millisecond), Rise: 2, Fall: 2, ExpectBody: "^ok"}
	mon.ApplyDefaults()
	members := []health.Member{member("hang", "198.51.100.11:80", "http"), member("good", "198.51.100.12:80", "http")}
	// A handful of hanging members too, to make sure hangs do not add up.
	for i := 0; i < 8; i++ {
		members = append(members, member(fmt.Sprintf("hang%d", i), "198.51.100.11:80", "http"))
	}
	s, rec, cancel := runScheduler(t, lab, config.Monitors{"http": mon}, members)
	time.Sleep(1500 * time.Millisecond)
	cancel()

	hang := rec.observations("hang")
	if len(hang) < 5 {
		t.Fatalf("hanging member checked %d times in 1.5s", len(hang))
	}
	for _, o := range hang {
		if o.Result.OK || o.Result.Reason != "timeout after 150ms (read response)" {
			t.Errorf("hang check %d: %+v", o.Seq, o.Result)
		}
		if o.Result.Latency < 140*time.Millisecond || o.Result.Latency > 250*time.Millisecond {
			t.Errorf("hang check %d took %s, want ~150ms", o.Seq, o.Result.Latency)
		}
	}
	good := rec.observations("good")
	if len(good) < 6 {
		t.Fatalf("good member checked only %d times in 1.5s at 200ms", len(good))
	}
	for i, o := range good {
		if !o.Result.OK {
			t.Errorf("good check %d failed: %s", o.Seq, o.Result.Reason)
		}
		if late := o.Started.Sub(o.Scheduled); late > 75*time.Millisecond {
			t.Errorf("good check %d started %s after its slot", o.Seq, late)
		}
		if i > 0 && o.Scheduled.Sub(good[i-1].Scheduled) != 200*time.Millisecond {
			t.Errorf("good check %d slot %s after the previous one", o.Seq, o.Scheduled.Sub(good[i-1].Scheduled))
		}
	}
	for _, st := range s.Snapshot() {
		want := health.StateDown
		if st.ID == "good" {
			want = health.StateUp
		}
		if st.State != want || st.Skipped != 0 {
			t.Errorf("%s: state %s skipped %d", st.ID, st.State, st.Skipped)
		}
	}
}

// TestHTTPAnswers runs the HTTP checker against each bad answer.
func TestHTTPAnswers(t *testing.T) {
	lab := nslab.New(t, nil, "198.51.100.11")
	srv := startServer(t, lab, "198.51.100.11:80", answerOK)
	sum := sha256.Sum256([]byte("ok\n"))
	for _, tc := range []struct {
		name   string
		mode   behaviour
		mon    config.Monitor
		ok     bool
		reason string
	}{
		{"ok", answerOK, config.Monitor{ExpectStatus: config.StatusSpec{{Lo: 200, Hi: 299}}, ExpectBody: `^ok\s*$`}, true, "HTTP 200, body ok"},
		{"ok digest", answerOK, config.Monitor{ExpectBodySHA256: hex.EncodeToString(sum[:])}, true, "HTTP 200, body ok"},
		{"500", answer500, config.Monitor{ExpectStatus: config.StatusSpec{{Lo: 200, Hi: 299}}}, false, "HTTP 500, expected 200-299"},
		{"500 accepted", answer500, config.Monitor{ExpectStatus: config.StatusSpec{{Lo: 200, Hi: 200}, {Lo: 500, Hi: 500}}}, true, "HTTP 500"},
		{"wrong body", answerWrongBody, config.Monitor{ExpectBody: "^ok"}, false, `HTTP 200, body does not match "^ok"`},
		{"wrong digest", answerWrongBody, config.Monitor{ExpectBodySHA256: hex.EncodeToString(sum[:])}, false, "body digest"},
		{"garbage", answerGarbage, config.Monitor{}, false, "bad HTTP response: malformed HTTP"},
		{"reset", answerReset, config.Monitor{}, false, "connection reset (read response)"},
		{"closed early", answerClose, config.Monitor{}, false, "connection closed early (read response)"},
		{"hang", answerHang, config.Monitor{}, false, "timeout after 100ms (read response)"},
		{"port override refused", answerOK, config.Monitor{Port: 81}, false, "connection refused (connect)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.mode.Store(int32(tc.mode))
			m := tc.mon
			m.Type, m.Interval, m.Timeout = config.MonitorHTTP, config.Duration(time.Second), config.Duration(100*time.Millisecond)
			m.ApplyDefaults()
			c, err := health.NewChecker(m, lab.InChecker)
			if err != nil {
				t.Fatal(err)
			}
			r := c.Check(context.Background(), health.Target{Addr: netip.MustParseAddr("198.51.100.11"), Port: 80})
			if r.OK != tc.ok || !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("got ok=%v %q, want ok=%v %q", r.OK, r.Reason, tc.ok, tc.reason)
			}
		})
	}
}

type answerCase struct {
	target string
	ok     bool
	reason string
}

// checkAnswers runs c (timeout 100ms) against each target and checks the
// result and that the check ended within its timeout.
func checkAnswers(t *testing.T, c health.Checker, cases []answerCase) {
	t.Helper()
	for _, tc := range cases {
		ap := netip.MustParseAddrPort(tc.target)
		start := time.Now()
		r := c.Check(context.Background(), health.Target{Addr: ap.Addr(), Port: ap.Port()})
		if r.OK != tc.ok || r.Reason != tc.reason {
			t.Errorf("%s: got ok=%v %q, want ok=%v %q", tc.target, r.OK, r.Reason, tc.ok, tc.reason)
		}
		if el := time.Since(start); el > 300*time.Millisecond {
			t.Errorf("%s: check took %s with a 100ms timeout", tc.target, el)
		}
	}
}

// TestTCPAnswers runs the TCP connect checker against a listener, a closed
// port and an address nobody answers.
func TestTCPAnswers(t *testing.T) {
	lab := nslab.New(t, nil, "198.51.100.11")
	startServer(t, lab, "198.51.100.11:80", answerAccept)
	m := tcpMon(time.Second, 100*time.Millisecond, 1, 1)
	c, err := health.NewChecker(m, lab.InChecker)
	if err != nil {
		t.Fatal(err)
	}
	checkAnswers(t, c, []answerCase{
		{"198.51.100.11:80", true, "connected"},
		{"198.51.100.11:81", false, "connection refused (connect)"},
		{"198.51.100.40:80", false, "timeout after 100ms (connect)"}, // no such host: ARP never answers
	})
}

// TestSourceAddress: checks leave from the configured source address.
func TestSourceAddress(t *testing.T) {
	lab := nslab.New(t, []string{"198.51.100.3"}, "198.51.100.11")
	srv := startServer(t, lab, "198.51.100.11:80", answerOK)
	target := health.Target{Addr: netip.MustParseAddr("198.51.100.11"), Port: 80}
	for i, src := range []string{"198.51.100.3", "198.51.100.2", "198.51.100.3"} {
		typ := config.MonitorHTTP
		if i == 2 {
			typ = config.MonitorTCP
		}
		m := config.Monitor{Type: typ, Source: config.IP{Addr: netip.MustParseAddr(src)}, Interval: config.Duration(time.Second)}
		m.ApplyDefaults()
		c, err := health.NewChecker(m, lab.InChecker)
		if err != nil {
			t.Fatal(err)
		}
		srv.mu.Lock()
		before := len(srv.remotes)
		srv.mu.Unlock()
		if r := c.Check(context.Background(), target); !r.OK {
			t.Fatalf("source %s: %+v", src, r)
		}
		var last string
		testkit.Eventually(t, time.Second, 5*time.Millisecond, func() error {
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if len(srv.remotes) <= before {
				return fmt.Errorf("%s check from %s: server saw no connection", typ, src)
			}
			last = srv.remotes[before]
			return nil
		})
		if host, _, _ := net.SplitHostPort(last); host != src {
			t.Errorf("%s check: server saw %q, want source %s", typ, last, src)
		}
	}
	m := config.Monitor{Type: config.MonitorTCP, Source: config.IP{Addr: netip.MustParseAddr("198.51.100.4")}, Interval: config.Duration(time.Second)}
	m.ApplyDefaults()
	c, _ := health.NewChecker(m, lab.InChecker)
	if r := c.Check(context.Background(), target); r.OK || !strings.Contains(r.Reason, "source address not available") {
		t.Errorf("absent source address: %+v", r)
	}
}

// TestFlappingServer: a server that alternates good and bad answers does
// not move the member once rise/fall are above 1; a run shorter than fall
// does not take it down either.
func TestFlappingServer(t *testing.T) {
	lab := nslab.New(t, nil, "198.51.100.11", "198.51.100.12")
	alt := startServer(t, lab, "198.51.100.11:80", answerOK)
	alt.setPattern(answerOK, answer500)
	runs := startServer(t, lab, "198.51.100.12:80", answerOK)
	runs.setPattern(answerOK, answer500, answer500) // never 3 failures in a row
	mon := config.Monitor{Type: config.MonitorHTTP, Interval: config.Duration(60 * time.Millisecond),
		Timeout: config.Duration(50 * time.Millisecond), Rise: 2, Fall: 3, ExpectStatus: config.StatusSpec{{Lo: 200, Hi: 200}}}
	mon.ApplyDefaults()
	s, rec, cancel := runScheduler(t, lab, config.Monitors{"http": mon},
		[]health.Member{member("alt", "198.51.100.11:80", "http"), member("runs", "198.51.100.12:80", "http")})
	time.Sleep(1300 * time.Millisecond)
	cancel()
	for _, id := range []string{"alt", "runs"} {
		obs := rec.observations(id)
		fails := 0
		for _, o := range obs {
			if !o.Result.OK {
				fails++
			}
		}
		if len(obs) < 15 || fails < len(obs)/3 {
			t.Fatalf("%s: %d checks, %d failed: the server did not flap", id, len(obs), fails)
		}
		ev := rec.events[id]
		if len(ev) != 1 || ev[0].To != health.StateUp || ev[0].Check != 1 {
			t.Errorf("%s: events %+v, want only the first unknown→up", id, ev)
		}
	}
	for _, st := range s.Snapshot() {
		if st.State != health.StateUp || st.Transitions != 1 {
			t.Errorf("%s: %s after %d transitions", st.ID, st.State, st.Transitions)
		}
	}
}
