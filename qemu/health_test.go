package qemu

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
)

// healthLB is lb1.yaml plus standalone (no vrrp) NAT virtual servers on
// 203.0.113.100 over the same two Internal members, checked every second:
// :80 by HTTP, :8080 by half-open SYN (through the appliance's conntrack
// and nftables, from the Internal self IP); :81 by HTTP in a wrr pool with
// a 12 s slow start; :8081 by HTTP with a quorum of 2 and a sorry server,
// :8082 by HTTP with inhibit; :8083 by ICMP echo, :8084 by a UDP exchange
// and :8085 by a DNS query (the members answer UDP on 7007 and DNS on 5353
// while their HTTP server runs).
const healthLB = `
virtual_servers:
  - {name: web, vip: 203.0.113.100, port: 80, pool: web, scheduler: rr, persistence: {enabled: false}}
  - {name: raw, vip: 203.0.113.100, port: 8080, pool: raw, scheduler: rr, persistence: {enabled: false}}
  - {name: slow, vip: 203.0.113.100, port: 81, pool: slow, scheduler: wrr, persistence: {enabled: false}}
  - {name: sorry, vip: 203.0.113.100, port: 8081, pool: quorum, scheduler: rr, persistence: {enabled: false}}
  - {name: inhibit, vip: 203.0.113.100, port: 8082, pool: inhibit, scheduler: rr, persistence: {enabled: false}}
  - {name: ping, vip: 203.0.113.100, port: 8083, pool: ping, scheduler: rr, persistence: {enabled: false}}
  - {name: udp, vip: 203.0.113.100, port: 8084, pool: udp, scheduler: rr, persistence: {enabled: false}}
  - {name: dns, vip: 203.0.113.100, port: 8085, pool: dns, scheduler: rr, persistence: {enabled: false}}
pools:
  slow:
    monitor: web
    slow_start: 12s
    members:
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080}
  web:
    monitor: web
    members:
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080}
  raw:
    monitor: syn
    members:
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080}
  quorum:
    monitor: web
    quorum: 2
    sorry_server: 198.51.100.13:8080
    members: &members
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080}
  inhibit: {monitor: web, members: *members, inhibit: true}
  ping: {monitor: ping, members: *members}
  udp: {monitor: echo, members: *members}
  dns: {monitor: dns, members: *members}
monitors:
  web: {type: http, interval: 1s, timeout: 500ms, rise: 2, fall: 2, path: /health}
  syn: {type: tcp_half_open, interval: 1s, timeout: 500ms, rise: 2, fall: 2, source: 198.51.100.2}
  ping: {type: icmp, interval: 1s, timeout: 500ms, rise: 2, fall: 2}
  echo: {type: udp, interval: 1s, timeout: 500ms, rise: 2, fall: 2, port: 7007, send: ping, expect: "^pong$"}
  dns: {type: dns, interval: 1s, timeout: 500ms, rise: 2, fall: 2, port: 5353, query: www.lab.test, expect_answers: [192.0.2.80]}
`

// memberServer is a Go HTTP server inside a lab host that answers its name,
// with a UDP echo server (7007: "ping" gets "pong") and a DNS responder
// (5353: any A question gets 192.0.2.80) that run and stop with it.
type memberServer struct {
	ns   *netlab.Namespace
	name string
	mu   sync.Mutex
	srv  *http.Server
	udp  []net.PacketConn
}

func (m *memberServer) start(t *testing.T) {
	t.Helper()
	var l net.Listener
	if err := m.ns.Do(func() error {
		var err error
		l, err = net.Listen("tcp", ":8080")
		return err
	}); err != nil {
		t.Fatalf("member %s: %v", m.name, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, m.name)
	})}
	go srv.Serve(l)
	var udp []net.PacketConn
	for port, answer := range map[string]func([]byte) []byte{":7007": echoAnswer, ":5353": dnsAnswerA} {
		var pc net.PacketConn
		if err := m.ns.Do(func() error {
			var err error
			pc, err = net.ListenPacket("udp", port)
			return err
		}); err != nil {
			t.Fatalf("member %s: %v", m.name, err)
		}
		go serveUDP(pc, answer)
		udp = append(udp, pc)
	}
	m.mu.Lock()
	m.srv, m.udp = srv, udp
	m.mu.Unlock()
}

func serveUDP(pc net.PacketConn, answer func([]byte) []byte) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if out := answer(buf[:n]); out != nil {
			pc.WriteTo(out, from)
		}
	}
}

func echoAnswer(p []byte) []byte {
	if string(p) == "ping" {
		return []byte("pong")
	}
	return nil
}

// dnsAnswerA answers a one-question query with one A record, 192.0.2.80,
// pointing back at the question's name.
func dnsAnswerA(q []byte) []byte {
	end := 12
	for end < len(q) && q[end] != 0 {
		end += 1 + int(q[end])
	}
	end += 5
	if len(q) < end {
		return nil
	}
	out := append([]byte(nil), q[:end]...)
	out[2], out[3] = 0x85, 0x80 // response, authoritative, RD, RA, NOERROR
	out[6], out[7] = 0, 1       // one answer
	return append(out, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 80)
}

func (m *memberServer) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv != nil {
		m.srv.Close()
		m.srv = nil
	}
	for _, pc := range m.udp {
		pc.Close()
	}
	m.udp = nil
}

// hostClient is an HTTP client whose connections are made in ns.
func hostClient(ns *netlab.Namespace) *http.Client {
	return &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// askFor sends requests to the VIP one after the other for d and counts
// answers by body.
func askFor(c *http.Client, url string, d time.Duration) map[string]int {
	got := map[string]int{}
	for end := time.Now().Add(d); time.Now().Before(end); {
		resp, err := c.Get(url)
		if err != nil {
			got["error: "+err.Error()]++
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got[string(b)]++
	}
	return got
}

// askMany sends n requests to the VIP and counts answers by body.
func askMany(c *http.Client, url string, n int) map[string]int {
	got := map[string]int{}
	for i := 0; i < n; i++ {
		resp, err := c.Get(url)
		if err != nil {
			got["error: "+err.Error()]++
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got[string(b)]++
	}
	return got
}

// ipvsDests returns the destinations with their weights, keyed
// "service>dest" with both in /proc/net/ip_vs's hex addr:port form. Daemon
// lines interleaved on the console are ignored.
func ipvsDests(t *testing.T, v *vm.VM) map[string]string {
	t.Helper()
	out, err := v.Run("cat /proc/net/ip_vs", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return parseIPVSDests(out)
}

// parseIPVSDests reads /proc/net/ip_vs text as ipvsDests returns it.
func parseIPVSDests(out string) map[string]string {
	svcRE := regexp.MustCompile(`^(?:TCP|UDP)\s+([0-9A-F]{8}:[0-9A-F]{4})\s`)
	destRE := regexp.MustCompile(`->\s+([0-9A-F]{8}:[0-9A-F]{4})\s+\w+\s+(\d+)`)
	got := map[string]string{}
	svc := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if m := svcRE.FindStringSubmatch(line); m != nil {
			svc = m[1]
			continue
		}
		if m := destRE.FindStringSubmatch(line); m != nil {
			got[svc+">"+m[1]] = m[2]
		}
	}
	return got
}

// hexDest is an IPv4 addr:port in /proc/net/ip_vs form.
func hexDest(addr string, port int) string {
	ip := net.ParseIP(addr).To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[0], ip[1], ip[2], ip[3], port)
}

func waitDests(t *testing.T, v *vm.VM, what string, timeout time.Duration, ok func(map[string]string) bool) (map[string]string, time.Duration) {
	t.Helper()
	start := time.Now()
	var d map[string]string
	testkit.Eventually(t, timeout, 300*time.Millisecond, func() error {
		if d = ipvsDests(t, v); !ok(d) {
			return fmt.Errorf("%s: IPVS destinations %v", what, d)
		}
		return nil
	})
	return d, time.Since(start)
}

// newHWLab is a lab with this test's own namespace prefix.
func newHWLab(t *testing.T) *netlab.Lab {
	t.Helper()
	lab, err := netlab.New(fmt.Sprintf("hw%04x-", time.Now().UnixNano()&0xffff))
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	return lab
}

// TestHealthChecksDrivePoolMembership boots lb1 standalone with lbd only and
// a NAT VS over two members that route back via lb1's Internal self IP.
// lbd owns the VIP (no vrrp), checks members over HTTP from the Internal
// self IP, and keeps IPVS equal to their health: a stopped member's
// destination leaves after fall failures and the client reaches only the
// other; restarted, it comes back after rise successes.
func TestHealthChecksDrivePoolMembership(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	lab := newHWLab(t)
	var members []*memberServer
	for i, name := range []string{"m1", "m2"} {
		ns, err := lab.Host(name, netlab.Internal, []string{fmt.Sprintf("198.51.100.%d/24", 11+i)}, "198.51.100.2")
		if err != nil {
			t.Fatal(err)
		}
		m := &memberServer{ns: ns, name: name}
		m.start(t)
		t.Cleanup(m.stop)
		members = append(members, m)
	}
	sorryNS, err := lab.Host("sorry", netlab.Internal, []string{"198.51.100.13/24"}, "198.51.100.2")
	if err != nil {
		t.Fatal(err)
	}
	sorry := &memberServer{ns: sorryNS, name: "sorry"}
	sorry.start(t)
	t.Cleanup(sorry.stop)
	clientNS, err := lab.Host("client", netlab.External, []string{"203.0.113.10/24"}, "")
	if err != nil {
		t.Fatal(err)
	}
	client := hostClient(clientNS)
	const url = "http://203.0.113.100/"

	cfg := append(readConfig(t, "lb1.yaml"), []byte(healthLB)...)
	v := appliance.Boot(t, lab, img, appliance.Options{Node: 1, Config: cfg, Cmdline: "fulcrum.services=lbd", MemMB: 768})
	if _, err := v.WaitReady(bootTimeout); err != nil {
		t.Fatal(err)
	}
	if err := v.Console.ExpectString("$ ", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	m1, m2 := hexDest("198.51.100.11", 8080), hexDest("198.51.100.12", 8080)
	vsWeb, vsRaw := hexDest("203.0.113.100", 80), hexDest("203.0.113.100", 8080)
	d1, d2 := vsWeb+">"+m1, vsWeb+">"+m2 // checked by HTTP
	r1, r2 := vsRaw+">"+m1, vsRaw+">"+m2 // checked by half-open SYN
	vsSorry, vsInh := hexDest("203.0.113.100", 8081), hexDest("203.0.113.100", 8082)
	q1, q2, qs := vsSorry+">"+m1, vsSorry+">"+m2, vsSorry+">"+hexDest("198.51.100.13", 8080)
	i1, i2 := vsInh+">"+m1, vsInh+">"+m2
	// The probe monitors' pools: ICMP, UDP and DNS, each with both members.
	var probes []string
	for _, port := range []int{8083, 8084, 8085} {
		vs := hexDest("203.0.113.100", port)
		probes = append(probes, vs+">"+m1, vs+">"+m2)
	}
	both := func(d map[string]string) bool {
		_, sorryIn := d[qs]
		ok := d[d1] == "1" && d[d2] == "1" && d[r1] == "1" && d[r2] == "1" &&
			d[q1] == "1" && d[q2] == "1" && !sorryIn && d[i1] == "1" && d[i2] == "1"
		for _, p := range probes {
			ok = ok && d[p] == "1"
		}
		return ok
	}
	_, took := waitDests(t, v, "both members up", time.Minute, both)
	t.Logf("both members in IPVS %s after the ready line", took.Round(100*time.Millisecond))

	addrs, err := v.Run("ip addr show external", 30*time.Second)
	if err != nil || !strings.Contains(addrs, "203.0.113.100/32") {
		t.Fatalf("standalone lbd did not put the VIP on the external bond (%v):\n%s", err, addrs)
	}
	if got := askMany(client, url, 10); got["m1"] == 0 || got["m2"] == 0 || got["m1"]+got["m2"] != 10 {
		t.Fatalf("both members up: answers %v", got)
	}

	for port, want := range map[int]string{8081: "both members up: the pool has its quorum", 8082: "both members up"} {
		if got := askMany(client, fmt.Sprintf("http://203.0.113.100:%d/", port), 10); got["m1"] == 0 || got["m2"] == 0 || got["m1"]+got["m2"] != 10 {
			t.Fatalf(":%d, %s: answers %v", port, want, got)
		}
	}

	// m2 stops: after fall (2) failed checks its destination leaves; the
	// quorum pool (quorum 2) is below its quorum, so its sorry server alone
	// takes new connections (m1 stays at weight 0); the inhibit pool keeps
	// m2 at weight 0. The UDP and DNS checks fail with it; ICMP does not.
	members[1].stop()
	_, took = waitDests(t, v, "m2 removed", time.Minute, func(d map[string]string) bool {
		_, has := d[d2]
		_, hasRaw := d[r2]
		_, hasQ2 := d[q2]
		_, hasUDP := d[probes[3]]
		_, hasDNS := d[probes[5]]
		return !has && !hasRaw && d[d1] == "1" && d[r1] == "1" &&
			!hasQ2 && d[q1] == "0" && d[qs] == "1" && d[i1] == "1" && d[i2] == "0" &&
			d[probes[0]] == "1" && d[probes[1]] == "1" && d[probes[2]] == "1" && !hasUDP && d[probes[4]] == "1" && !hasDNS
	})
	t.Logf("m2 left IPVS %s after its server stopped (interval 1s, fall 2)", took.Round(100*time.Millisecond))
	if got := askMany(client, url, 10); got["m1"] != 10 {
		t.Fatalf("with m2 down, answers %v (want m1 only)", got)
	}
	if got := askMany(client, "http://203.0.113.100:8081/", 10); got["sorry"] != 10 {
		t.Fatalf("quorum pool below its quorum: answers %v (want the sorry server only)", got)
	}
	if got := askMany(client, "http://203.0.113.100:8082/", 10); got["m1"] != 10 {
		t.Fatalf("inhibit pool with m2 at weight 0: answers %v (want m1 only)", got)
	}
	if !regexp.MustCompile(`lbd\|.*health: member down.*198\.51\.100\.12:8080.*reason=`).MatchString(v.Console.Output()) {
		t.Errorf("no logged transition with a reason for m2 on the console")
	}
	if !regexp.MustCompile(`lbd\|.*health: member down.*monitor=syn.*reason="connection refused \(syn\)"`).MatchString(v.Console.Output()) {
		t.Errorf("no half-open transition (refused SYN) for m2 on the console")
	}

	// m2 back: after rise (2) good checks it returns; in the slow pool it
	// ramps over 12 s (slow start): its share of new connections on :81
	// grows from about a tenth of m1's toward half (the measured shares are
	// logged).
	members[1].start(t)
	vsSlow := hexDest("203.0.113.100", 81)
	s1, s2 := vsSlow+">"+m1, vsSlow+">"+m2
	d, took := waitDests(t, v, "m2 back in the slow pool", time.Minute, func(d map[string]string) bool { _, in := d[s2]; return in })
	t.Logf("m2 back in the slow pool %s after its server restarted: weights m1 %s, m2 %s", took.Round(100*time.Millisecond), d[s1], d[s2])
	if w2, _ := strconv.Atoi(d[s2]); d[s1] != "10" || w2 < 1 || w2 > 3 {
		t.Errorf("the returning member does not start low: weights m1 %s, m2 %s (want m1 10 on the ramp scale, m2 1..3)", d[s1], d[s2])
	}
	slowStartRamp(t, v, client, "http://203.0.113.100:81/")
	waitDests(t, v, "m2 back", time.Minute, both) // long since: web and raw have no slow start
	if got := askMany(client, url, 10); got["m1"] == 0 || got["m2"] == 0 {
		t.Fatalf("m2 back: answers %v", got)
	}
	if got := askMany(client, "http://203.0.113.100:8081/", 10); got["m1"] == 0 || got["m2"] == 0 || got["sorry"] != 0 {
		t.Fatalf("quorum back: answers %v (want m1 and m2, not the sorry server)", got)
	}
}

// slowStartRamp counts which member answers new connections to url in three
// windows over the slow pool's 12 s ramp (m2 just back, m1 up all along)
// and checks m2's share grows: well under its final half at first, near it
// at the end. Between the first two windows the console must show the ramp.
func slowStartRamp(t *testing.T, v *vm.VM, client *http.Client, url string) {
	t.Helper()
	const window = 3500 * time.Millisecond
	var shares []float64
	for i := 0; i < 3; i++ {
		got := askFor(client, url, window)
		n := got["m1"] + got["m2"]
		if n < 20 || n*10 < 9*(n+errorsIn(got)) {
			t.Fatalf("slow start window %d: answers %v (want at least 20, under a tenth failing)", i+1, got)
		}
		share := float64(got["m2"]) / float64(n)
		shares = append(shares, share)
		t.Logf("slow start window %d (%s): m1 %d, m2 %d: m2's share %.0f%%", i+1, window, got["m1"], got["m2"], 100*share)
		if i == 0 {
			out, err := v.Run("lbctl show health", 30*time.Second)
			if err != nil || !regexp.MustCompile(`slow\s+198\.51\.100\.12:8080\s+web\s+up, slow start \d+% \(\d+ s left\)`).MatchString(out) {
				t.Errorf("lbctl show health does not show m2 ramping in pool slow (%v):\n%s", err, out)
			}
		}
	}
	// wrr at weights 1..3 against 10 gives m2 about 9-23% in the first
	// window; 6..9 against 10 about 37-47% in the last.
	if shares[0] > 0.3 || shares[2] < 0.33 || shares[2]-shares[0] < 0.15 {
		t.Errorf("m2's share of new connections over the ramp: %.2f, %.2f, %.2f (want under 0.30 first, over 0.33 last, growing by 0.15 or more)", shares[0], shares[1], shares[2])
	}
	// The ramp ends 12 s after it began: the weights go back to 1 and 1.
	testkit.Eventually(t, 10*time.Second, 500*time.Millisecond, func() error {
		out, err := v.Run("cat /proc/net/ip_vs", 30*time.Second)
		if err != nil {
			return err
		}
		d := parseIPVSDests(out)
		vs := hexDest("203.0.113.100", 81)
		if w1, w2 := d[vs+">"+hexDest("198.51.100.11", 8080)], d[vs+">"+hexDest("198.51.100.12", 8080)]; w1 != "1" || w2 != "1" {
			return fmt.Errorf("slow pool weights m1 %s, m2 %s", w1, w2)
		}
		return nil
	})
}

func errorsIn(got map[string]int) int {
	n := 0
	for k, c := range got {
		if strings.HasPrefix(k, "error: ") {
			n += c
		}
	}
	return n
}
