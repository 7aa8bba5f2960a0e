package node

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
)

// failoverTrial is one measured master death.
type failoverTrial struct {
	takeover time.Duration // death → backup holds the VIP
	reach    time.Duration // death → the client gets an answer from the backup
}

type scenario struct {
	name   string
	advert time.Duration // the master's advert interval, to randomise the death phase
	// start brings up master (lb1) and backup (lb2) in the lab.
	start func(l *lab)
}

func oursScenario(name string, cs int) scenario {
	return scenario{name: name, advert: config.AdvertDuration(cs), start: func(l *lab) {
		mod := func(c *config.VRRP) { c.AdvertInterval = cs }
		n1 := l.start(0, labConfig(150, mod))
		l.start(1, labConfig(100, mod))
		waitFor(l.t, 6*time.Second, "lb1 master", func() bool { return n1.state() == fsm.Master })
	}}
}

var keepalivedDefaults = scenario{name: "keepalived 2.2 defaults (VRRPv2, advert 1 s)", advert: time.Second, start: func(l *lab) {
	ka1 := l.startKeepalived(0, kaOpts{priority: 150})
	l.startKeepalived(1, kaOpts{priority: 100})
	waitFor(l.t, 10*time.Second, "keepalived lb1 master", ka1.master)
}}

// BenchmarkFailover measures the time from master death to the client
// reaching the VIP on the backup, for our node at the default advert
// interval, at 10 cs and at 1 cs, and for keepalived with its defaults, in
// the namespace lab. Run with
//
//	go test -run XXX -bench Failover -benchtime 5x ./lbcore/vrrp/node
//
// It writes out/vrrp-report.md at the module root. Not a timed test: it
// asserts nothing about the numbers.
func BenchmarkFailover(b *testing.B) {
	results := map[string][]failoverTrial{}
	scenarios := []scenario{
		oursScenario(fmt.Sprintf("fulcrum VRRPv3, default advert %d cs", config.DefaultAdvertInterval), config.DefaultAdvertInterval),
		oursScenario("fulcrum VRRPv3, advert 10 cs", 10),
		oursScenario("fulcrum VRRPv3, advert 1 cs", 1),
		keepalivedDefaults,
	}
	for _, sc := range scenarios {
		b.Run(strings.Fields(sc.name)[0]+"/"+sc.advert.String(), func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				tr := runTrial(b, sc)
				results[sc.name] = append(results[sc.name], tr)
				total += tr.reach
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/failover")
		})
	}
	if err := writeReport(scenarios, results); err != nil {
		b.Fatal(err)
	}
}

// trialTB scopes a lab to one trial: its cleanups run when the trial ends,
// not when the benchmark does.
type trialTB struct {
	testing.TB
	cleanups []func()
}

func (t *trialTB) Cleanup(f func()) { t.cleanups = append(t.cleanups, f) }

func (t *trialTB) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// runTrial builds a fresh lab, kills the master (its failover and external
// links go down, as when the box loses power) at a random phase of its
// advert timer and polls every 5 ms until the backup holds the VIP and the
// client reaches it.
func runTrial(b *testing.B, sc scenario) failoverTrial {
	t := &trialTB{TB: b}
	defer t.done()
	l := buildLab(t)
	sc.start(l)
	l.waitWho("lb1", 3*time.Second)
	time.Sleep(500*time.Millisecond + time.Duration(rand.Int64N(int64(sc.advert))))
	var tr failoverTrial
	start := time.Now()
	l.nodes[0].setLink(t, "failover", false)
	l.nodes[0].setLink(t, "external", false)
	for time.Since(start) < 15*time.Second {
		if tr.takeover == 0 && l.nodes[1].hasVIP() {
			tr.takeover = time.Since(start)
		}
		if l.who(20*time.Millisecond) == "lb2" {
			tr.reach = time.Since(start)
			if tr.takeover == 0 {
				tr.takeover = tr.reach
			}
			return tr
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("%s: the client never reached the backup", sc.name)
	return tr
}

func writeReport(scenarios []scenario, results map[string][]failoverTrial) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	dir := filepath.Join(root, "out")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var s strings.Builder
	fmt.Fprintf(&s, "# VRRP failover times (namespace lab)\n\n")
	fmt.Fprintf(&s, "Generated %s by `go test -run XXX -bench Failover -benchtime Nx ./lbcore/vrrp/node`.\n\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&s, "Master (priority 150) and backup (priority 100) in two namespaces joined by bridges; the master dies by\n")
	fmt.Fprintf(&s, "losing its failover and external links at a random phase of its advert timer. *Takeover*: death until the\n")
	fmt.Fprintf(&s, "backup holds the VIP; *client*: death until a TCP connect from the client namespace to the VIP is answered\n")
	fmt.Fprintf(&s, "by the backup (polled every 5 ms, 20 ms connect timeout; the client's ARP entry moves by gratuitous ARP).\n\n")
	fmt.Fprintf(&s, "| setup | trials | takeover min / median / max (ms) | client min / median / max (ms) |\n| --- | --- | --- | --- |\n")
	for _, sc := range scenarios {
		trs := results[sc.name]
		if len(trs) == 0 {
			continue
		}
		var tk, cl []time.Duration
		for _, tr := range trs {
			tk = append(tk, tr.takeover)
			cl = append(cl, tr.reach)
		}
		fmt.Fprintf(&s, "| %s | %d | %s | %s |\n", sc.name, len(trs), stats(tk), stats(cl))
	}
	return os.WriteFile(filepath.Join(dir, "vrrp-report.md"), []byte(s.String()), 0o644)
}

func stats(ds []time.Duration) string {
	slices.Sort(ds)
	ms := func(d time.Duration) string { return fmt.Sprintf("%d", d.Milliseconds()) }
	return ms(ds[0]) + " / " + ms(ds[len(ds)/2]) + " / " + ms(ds[len(ds)-1])
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
