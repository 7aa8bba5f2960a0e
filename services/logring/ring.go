// Package logring keeps the appliance's recent log lines in a bounded
// in-memory ring (for the console's `show log`) and forwards log lines to a
// remote syslog collector in RFC 5424 format over UDP or TCP.
//
// Init writes every console log line through a Ring: daemon output arrives as
// "name| text" (the supervisor's prefix) and init's own lines as plain text.
package logring

import (
	"bytes"
	"strings"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

// Ring is a bounded, goroutine-safe ring of log lines. It is an io.Writer:
// each written line becomes one entry.
type Ring struct {
	mu      sync.Mutex
	lines   []localapi.LogLine
	start   int    // index of the oldest line
	next    uint64 // sequence number of the next line (first is 1)
	partial []byte
	now     func() time.Time
}

// New returns a ring keeping the last size lines.
func New(size int) *Ring {
	if size < 1 {
		size = 1
	}
	return &Ring{lines: make([]localapi.LogLine, 0, size), next: 1, now: time.Now}
}

// Write splits p into lines and adds each complete one.
func (r *Ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data := append(r.partial, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		r.add(string(bytes.TrimRight(data[:i], "\r")))
		data = data[i+1:]
	}
	if len(data) > 4096 { // a runaway line without newline
		r.add(string(data))
		data = nil
	}
	r.partial = append([]byte(nil), data...)
	return len(p), nil
}

// Add records one line from source.
func (r *Ring) Add(source, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.push(localapi.LogLine{Time: r.now(), Source: source, Text: text})
}

func (r *Ring) add(line string) {
	if strings.TrimSpace(line) == "" {
		return
	}
	src, text := SplitSource(line)
	r.push(localapi.LogLine{Time: r.now(), Source: src, Text: text})
}

func (r *Ring) push(l localapi.LogLine) {
	l.Seq = r.next
	r.next++
	if len(r.lines) < cap(r.lines) {
		r.lines = append(r.lines, l)
		return
	}
	r.lines[r.start] = l
	r.start = (r.start + 1) % len(r.lines)
}

// SplitSource separates the supervisor's "name| " prefix; lines without one
// come from init.
func SplitSource(line string) (source, text string) {
	if i := strings.Index(line, "| "); i > 0 && i <= 32 && !strings.ContainsAny(line[:i], " \t=") {
		return line[:i], line[i+2:]
	}
	return "init", line
}

// Since returns up to max lines with sequence numbers above since (max <= 0:
// all), the sequence number to ask from next, and how many lines after since
// were already overwritten.
func (r *Ring) Since(since uint64, max int) localapi.LogPage {
	r.mu.Lock()
	defer r.mu.Unlock()
	page := localapi.LogPage{Lines: []localapi.LogLine{}, Next: since}
	n := len(r.lines)
	if n == 0 {
		return page
	}
	oldest := r.lines[r.start].Seq
	if since+1 < oldest {
		page.Dropped = oldest - since - 1
	}
	for i := 0; i < n; i++ {
		l := r.lines[(r.start+i)%n]
		if l.Seq <= since {
			continue
		}
		if max > 0 && len(page.Lines) >= max {
			break
		}
		page.Lines = append(page.Lines, l)
		page.Next = l.Seq
	}
	return page
}

// Tail returns the last n lines.
func (r *Ring) Tail(n int) []localapi.LogLine {
	r.mu.Lock()
	total := len(r.lines)
	r.mu.Unlock()
	all := r.Since(0, 0).Lines
	if n > 0 && n < total && n < len(all) {
		return all[len(all)-n:]
	}
	return all
}
