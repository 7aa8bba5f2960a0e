// Package rates turns counter samples into per-second rates: the appliance
// samples the kernel's IPVS counters every few seconds, keeps the samples
// in a ring (15 minutes by default), and answers the current rate of a
// virtual server or member (the counter delta over a short window) and
// its history (one point per sample interval), for the CLI and the
// dashboard. /metrics keeps exporting the raw counters; Prometheus
// computes its own rates from those.
package rates

import (
	"sort"
	"sync"
	"time"
)

// Counters are monotonically growing totals of one object.
type Counters struct {
	Conns, PacketsIn, PacketsOut, BytesIn, BytesOut uint64
}

// Rate is a per-second rate of each counter.
type Rate struct {
	Conns      float64 `json:"conns"`
	PacketsIn  float64 `json:"packets_in"`
	PacketsOut float64 `json:"packets_out"`
	BytesIn    float64 `json:"bytes_in"`
	BytesOut   float64 `json:"bytes_out"`
}

// Point is the rate over one sample interval ending at Time.
type Point struct {
	Time time.Time `json:"time"`
	Rate
}

type sample struct {
	at       time.Time
	counters map[string]Counters
}

// Ring keeps samples for a fixed span of time. It is safe for concurrent
// use.
type Ring struct {
	mu      sync.Mutex
	keep    time.Duration
	samples []sample // oldest first
}

// DefaultKeep is how much history the appliance keeps.
const DefaultKeep = 15 * time.Minute

// New returns a ring keeping samples for keep.
func New(keep time.Duration) *Ring { return &Ring{keep: keep} }

// Add records the counters of every object at time at. Samples older than
// the ring's span (measured from at) are dropped; a sample not later than
// the newest is ignored.
func (r *Ring) Add(at time.Time, c map[string]Counters) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.samples); n > 0 && !at.After(r.samples[n-1].at) {
		return
	}
	r.samples = append(r.samples, sample{at: at, counters: c})
	cut := 0
	for cut < len(r.samples)-1 && at.Sub(r.samples[cut].at) > r.keep {
		cut++
	}
	if cut > 0 {
		r.samples = append(r.samples[:0:0], r.samples[cut:]...)
	}
}

// delta is the rate between two readings, false when a counter went
// backwards (the object was recreated, or a 32-bit kernel counter wrapped):
// that interval has no honest rate.
func delta(a, b Counters, secs float64) (Rate, bool) {
	if b.Conns < a.Conns || b.PacketsIn < a.PacketsIn || b.PacketsOut < a.PacketsOut || b.BytesIn < a.BytesIn || b.BytesOut < a.BytesOut || secs <= 0 {
		return Rate{}, false
	}
	return Rate{
		Conns:      float64(b.Conns-a.Conns) / secs,
		PacketsIn:  float64(b.PacketsIn-a.PacketsIn) / secs,
		PacketsOut: float64(b.PacketsOut-a.PacketsOut) / secs,
		BytesIn:    float64(b.BytesIn-a.BytesIn) / secs,
		BytesOut:   float64(b.BytesOut-a.BytesOut) / secs,
	}, true
}

// Current is key's rate over the newest samples spanning at least window
// (the newest sample against the latest one at least window older, or the
// oldest there is). False when key has fewer than two samples in a row.
func (r *Ring) Current(key string, window time.Duration) (Rate, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.samples)
	if n < 2 {
		return Rate{}, false
	}
	last := r.samples[n-1]
	b, ok := last.counters[key]
	if !ok {
		return Rate{}, false
	}
	first := -1
	for i := n - 2; i >= 0; i-- {
		if _, ok := r.samples[i].counters[key]; !ok {
			break
		}
		first = i
		if last.at.Sub(r.samples[i].at) >= window {
			break
		}
	}
	if first < 0 {
		return Rate{}, false
	}
	return delta(r.samples[first].counters[key], b, last.at.Sub(r.samples[first].at).Seconds())
}

// History is key's rate in each sample interval the ring holds, oldest
// first; intervals without an honest rate are left out.
func (r *Ring) History(key string) []Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []Point{}
	for i := 1; i < len(r.samples); i++ {
		a, okA := r.samples[i-1].counters[key]
		b, okB := r.samples[i].counters[key]
		if !okA || !okB {
			continue
		}
		if rt, ok := delta(a, b, r.samples[i].at.Sub(r.samples[i-1].at).Seconds()); ok {
			out = append(out, Point{Time: r.samples[i].at, Rate: rt})
		}
	}
	return out
}

// Keys are the objects of the newest sample, sorted.
func (r *Ring) Keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) == 0 {
		return nil
	}
	var out []string
	for k := range r.samples[len(r.samples)-1].counters {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Len is the number of samples held.
func (r *Ring) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.samples)
}
