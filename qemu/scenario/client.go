package scenario

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/vishvananda/netns"
)

// Netns is a network namespace code can run in (*netlab.Namespace, NamedNS).
type Netns interface {
	Do(fn func() error) error
}

// NamedNS is a named namespace (/run/netns/<name>) made by someone else, for
// example the interactive lab's.
type NamedNS string

// Do runs fn inside the namespace (see netlab.InNamespace).
func (n NamedNS) Do(fn func() error) error {
	h, err := netns.GetFromName(string(n))
	if err != nil {
		return fmt.Errorf("netns %s: %w", string(n), err)
	}
	defer h.Close()
	return netlab.InNamespace(h, fn)
}

// Client makes requests to member servers (directly or through a VIP) from
// inside a lab namespace.
type Client struct {
	NS   Netns
	Name string // for messages
	// Timeout bounds one request (connect + answer); default 1 s.
	Timeout time.Duration
}

func (c *Client) timeout() time.Duration {
	if c.Timeout == 0 {
		return time.Second
	}
	return c.Timeout
}

// Dial opens a TCP connection from the client's namespace.
func (c *Client) Dial(addr string) (net.Conn, error) {
	var conn net.Conn
	err := c.NS.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, c.timeout())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s → %s: %w", c.Name, addr, err)
	}
	return conn, nil
}

func hostPort(ip string) string { return net.JoinHostPort(ip, strconv.Itoa(ServicePort)) }

// Get makes one request on a new connection to ip:80 and returns the reply.
func (c *Client) Get(ip string) (Reply, error) {
	conn, err := c.Dial(hostPort(ip))
	if err != nil {
		return Reply{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(c.timeout()))
	return roundTrip(conn, bufio.NewReader(conn), false)
}

func roundTrip(conn net.Conn, r *bufio.Reader, keepAlive bool) (Reply, error) {
	req := "GET / HTTP/1.0\r\nHost: lab\r\n\r\n"
	if keepAlive {
		req = "GET / HTTP/1.1\r\nHost: lab\r\n\r\n"
	}
	if _, err := io.WriteString(conn, req); err != nil {
		return Reply{}, fmt.Errorf("request to %s: %w", conn.RemoteAddr(), err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return Reply{}, fmt.Errorf("answer from %s: %w", conn.RemoteAddr(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return Reply{}, fmt.Errorf("answer from %s: %w", conn.RemoteAddr(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return Reply{}, fmt.Errorf("answer from %s: %s", conn.RemoteAddr(), resp.Status)
	}
	return ParseReply(string(body))
}

// Conn is one established, kept-alive connection that can carry many
// requests (to prove a connection survives a change elsewhere).
type Conn struct {
	conn net.Conn
	r    *bufio.Reader
	c    *Client
}

// Open establishes a kept-alive connection to ip:80.
func (c *Client) Open(ip string) (*Conn, error) {
	conn, err := c.Dial(hostPort(ip))
	if err != nil {
		return nil, err
	}
	return &Conn{conn: conn, r: bufio.NewReader(conn), c: c}, nil
}

// Get makes one more request on the connection.
func (k *Conn) Get() (Reply, error) {
	k.conn.SetDeadline(time.Now().Add(k.c.timeout()))
	return roundTrip(k.conn, k.r, true)
}

// LocalAddr is the client end of the connection.
func (k *Conn) LocalAddr() string { return k.conn.LocalAddr().String() }

// Close closes the connection.
func (k *Conn) Close() error { return k.conn.Close() }

// Result is one request of a Loop.
type Result struct {
	Start time.Time
	End   time.Time
	Reply Reply
	Err   error
}

// Loop sends a request on a new connection every interval (each in its own
// goroutine, so one lost request does not delay the next) until stopped or
// until its time limit.
type Loop struct {
	mu      sync.Mutex
	results []Result
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// StartLoop starts requests to ip:80 every interval for at most limit.
func (c *Client) StartLoop(ip string, interval, limit time.Duration) *Loop {
	l := &Loop{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		end := time.After(limit)
		for {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := Result{Start: time.Now()}
				r.Reply, r.Err = c.Get(ip)
				r.End = time.Now()
				l.mu.Lock()
				l.results = append(l.results, r)
				l.mu.Unlock()
			}()
			select {
			case <-tick.C:
			case <-l.stop:
				return
			case <-end:
				return
			}
		}
	}()
	return l
}

// Results is a snapshot of the results so far (in completion order).
func (l *Loop) Results() []Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Result(nil), l.results...)
}

// WaitOK waits until a request that started after t0 has succeeded, or
// timeout passes.
func (l *Loop) WaitOK(t0 time.Time, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, r := range l.Results() {
			if r.Err == nil && r.Start.After(t0) {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// Stop ends the loop, waits for requests in flight and returns every result
// in start order.
func (l *Loop) Stop() []Result {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	rs := append([]Result(nil), l.results...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start.Before(rs[j].Start) })
	return rs
}

// Summary counts a loop's results.
type Summary struct {
	Sent, OK, Lost int
	// ByMember counts successful requests per member.
	ByMember map[string]int
	// FirstErr is the first failure, for messages.
	FirstErr error
	// LostAt are the lost requests' start times relative to the first
	// request's, for telling when in a scenario they were lost.
	LostAt []time.Duration
}

// Summarize counts results.
func Summarize(rs []Result) Summary {
	s := Summary{ByMember: map[string]int{}}
	for _, r := range rs {
		s.Sent++
		if r.Err != nil {
			s.Lost++
			if s.FirstErr == nil {
				s.FirstErr = r.Err
			}
			s.LostAt = append(s.LostAt, r.Start.Sub(rs[0].Start).Round(time.Millisecond))
			continue
		}
		s.OK++
		s.ByMember[r.Reply.Member]++
	}
	return s
}

// Recovery is how long after a fault at t0 the first request that started
// after t0 was answered (ok=false if none was), and how many requests failed.
func Recovery(rs []Result, t0 time.Time) (d time.Duration, lost int, ok bool) {
	for _, r := range rs {
		if r.Err != nil {
			lost++
			continue
		}
		if r.Start.After(t0) && (!ok || r.End.Sub(t0) < d) {
			d, ok = r.End.Sub(t0), true
		}
	}
	return d, lost, ok
}

// Late counts answered requests that took longer than limit (for example a
// SYN that had to be retransmitted because it went to a dead node).
func Late(rs []Result, limit time.Duration) int {
	n := 0
	for _, r := range rs {
		if r.Err == nil && r.End.Sub(r.Start) > limit {
			n++
		}
	}
	return n
}

// Wait retries Get until it succeeds or timeout passes.
func (c *Client) Wait(ip string, timeout time.Duration) (Reply, error) {
	deadline := time.Now().Add(timeout)
	for {
		r, err := c.Get(ip)
		if err == nil {
			return r, nil
		}
		if time.Now().After(deadline) {
			return Reply{}, fmt.Errorf("no answer from %s within %v: %w", ip, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// StartLoopT is StartLoop with its own per-request timeout.
func (c *Client) StartLoopT(ip string, interval, timeout, limit time.Duration) *Loop {
	cc := *c
	cc.Timeout = timeout
	return cc.StartLoop(ip, interval, limit)
}
