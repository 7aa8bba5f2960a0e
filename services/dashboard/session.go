package dashboard

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/netip"
	"sync"
	"time"
)

// session is one logged-in browser.
type session struct {
	csrf    string
	created time.Time
	seen    time.Time
}

// sessions are kept in memory only: restarting mgmtd logs everyone out.
type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
	idle time.Duration // expiry after no request for this long
	max  time.Duration // expiry this long after login, whatever happens
	cap  int           // at most this many; the oldest goes first
}

func newSessions(idle, max time.Duration, cap int) *sessions {
	return &sessions{byID: map[string]*session{}, idle: idle, max: max, cap: cap}
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // no entropy: nothing safe to hand out
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// create starts a session and returns its id and CSRF token.
func (s *sessions) create(now time.Time) (string, *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	for len(s.byID) >= s.cap {
		var oldest string
		for id, se := range s.byID {
			if oldest == "" || se.created.Before(s.byID[oldest].created) {
				oldest = id
			}
		}
		delete(s.byID, oldest)
	}
	id := randomToken()
	se := &session{csrf: randomToken(), created: now, seen: now}
	s.byID[id] = se
	return id, se
}

// get returns the live session id names and marks it used.
func (s *sessions) get(id string, now time.Time) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	se, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	se.seen = now
	c := *se
	return &c, true
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

func (s *sessions) expire(now time.Time) {
	for id, se := range s.byID {
		if now.Sub(se.seen) > s.idle || now.Sub(se.created) > s.max {
			delete(s.byID, id)
		}
	}
}

func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// limiter slows password guessing as the console does: after a failed
// login a client waits 2 s, from the fourth failure in a row on the wait
// doubles up to a minute. Clients are told apart by address; a global
// count does the same for all clients together (many addresses), with
// ten times the allowance.
type limiter struct {
	mu      sync.Mutex
	base    time.Duration
	max     time.Duration
	clients map[netip.Addr]*failCount
	all     failCount
}

type failCount struct {
	n    int
	last time.Time
}

func newLimiter(base, max time.Duration) *limiter {
	return &limiter{base: base, max: max, clients: map[netip.Addr]*failCount{}}
}

func (l *limiter) backoff(n int) time.Duration {
	if n == 0 {
		return 0
	}
	d := l.base
	for i := 3; i < n && d < l.max; i++ {
		d *= 2
	}
	return min(d, l.max)
}

// wait is how long client must wait before its next attempt.
func (l *limiter) wait(client netip.Addr, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var w time.Duration
	if c := l.clients[client]; c != nil {
		w = c.last.Add(l.backoff(c.n)).Sub(now)
	}
	if l.all.n > 10 {
		w = max(w, l.all.last.Add(l.backoff(l.all.n/10)).Sub(now))
	}
	return max(w, 0)
}

func (l *limiter) fail(client netip.Addr, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.clients) > 4096 { // bound memory: forget clients that stopped
		for a, c := range l.clients {
			if now.Sub(c.last) > l.max {
				delete(l.clients, a)
			}
		}
	}
	c := l.clients[client]
	if c == nil {
		c = &failCount{}
		l.clients[client] = c
	}
	c.n++
	c.last = now
	l.all.n++
	l.all.last = now
}

func (l *limiter) succeed(client netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.clients, client)
	l.all = failCount{}
}
