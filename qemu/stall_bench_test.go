//go:build bench

package qemu

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/qemu/scenario"
)

var wrkRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// nsOut runs a command inside a lab host's namespace (a measurement tool,
// not product code).
func nsOut(h *scenario.HA, host string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.Hosts[host].Name}, args...)...).CombinedOutput()
	return string(out), err
}

// netstat reads the TCP counters of /proc/net/netstat and /proc/net/snmp
// in a lab host's namespace.
func netstat(t *testing.T, h *scenario.HA, host string) map[string]int64 {
	out, err := nsOut(h, host, "cat", "/proc/net/netstat", "/proc/net/snmp")
	if err != nil {
		t.Fatalf("%s counters: %v %s", host, err, out)
	}
	m := map[string]int64{}
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		ks, vs := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		for j := 1; j < len(ks) && j < len(vs); j++ {
			v, _ := strconv.ParseInt(vs[j], 10, 64)
			m[strings.TrimSuffix(ks[0], ":")+"."+ks[j]] = v
		}
	}
	return m
}

type stallRun struct {
	path, target string
	rate         float64
	synRetrans   int64 // client1's SYN retransmissions during the run
	memberDrops  int64 // member1..4: listen overflows + drops
	challenge    int64 // member1..4: challenge ACKs (SYN meeting an old connection)
	downs        int   // lb1's "health: member down" lines during the run
	wrk          string
}

// TestStallBenchReport measures new connections per second, one request
// per connection (wrk -c8 'Connection: close' from client1), through lb1 as
// a plain router to member1 (the reference) and through the NAT VIP, each
// twice back to back (the second run reuses the first's client ports), and
// beside each the counters that tell a stall's kind: client SYN
// retransmissions, member listen drops and challenge ACKs, and health
// checks lb1 failed during the run. Writes FULCRUM_STALL_BENCH (default
// ../out/stall-bench.md). A measurement, built only with the bench tag.
func TestStallBenchReport(t *testing.T) {
	dst := os.Getenv("FULCRUM_STALL_BENCH")
	if dst == "" {
		dst = "../out/stall-bench.md"
	}
	h := scenario.Up(t, scenario.Options{})
	// client1 reaches the members' segment through lb1's External self IP.
	if out, err := nsOut(h, "client1", "ip", "route", "replace", "198.51.100.0/24", "via", scenario.SelfIP(1, "ext")); err != nil {
		t.Fatalf("route: %v %s", err, out)
	}
	members := scenario.Members()
	sum := func(keys ...string) int64 {
		var n int64
		for _, m := range members {
			c := netstat(t, h, m)
			for _, k := range keys {
				n += c[k]
			}
		}
		return n
	}
	var runs []stallRun
	for _, target := range []struct{ path, ip string }{{"routed (reference)", "198.51.100.11"}, {"NAT VIP", scenario.VIPNAT}, {"routed (reference)", "198.51.100.11"}, {"NAT VIP", scenario.VIPNAT}} {
		r := stallRun{path: target.path, target: target.ip}
		c0 := netstat(t, h, "client1")["TcpExt.TCPSynRetrans"]
		d0 := sum("TcpExt.ListenOverflows", "TcpExt.ListenDrops")
		a0 := sum("TcpExt.TCPChallengeACK")
		before := len(h.Node(1).Console.Output())
		out, err := nsOut(h, "client1", "wrk", "-t1", "-c8", "-d6s", "--latency", "--timeout", "5s", "-H", "Connection: close", "http://"+target.ip+"/")
		if err != nil {
			t.Fatalf("wrk: %v\n%s", err, out)
		}
		m := wrkRate.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("wrk printed no rate:\n%s", out)
		}
		r.rate, _ = strconv.ParseFloat(m[1], 64)
		time.Sleep(time.Second) // the console lags
		r.downs = strings.Count(h.Node(1).Console.Output()[before:], "health: member down")
		r.synRetrans = netstat(t, h, "client1")["TcpExt.TCPSynRetrans"] - c0
		r.memberDrops = sum("TcpExt.ListenOverflows", "TcpExt.ListenDrops") - d0
		r.challenge = sum("TcpExt.TCPChallengeACK") - a0
		r.wrk = out
		t.Logf("%s %s: %.1f conn/s, %d SYN retransmits, %d member listen drops, %d challenge ACKs, %d members marked down\n%s",
			r.path, r.target, r.rate, r.synRetrans, r.memberDrops, r.challenge, r.downs, out)
		runs = append(runs, r)
	}
	guest, _ := h.Run(1, "cat /proc/net/stat/nf_conntrack /proc/net/softnet_stat /proc/loadavg")
	var b strings.Builder
	fmt.Fprintf(&b, "# New connections per second (one request per connection)\n\n")
	fmt.Fprintf(&b, "Guest: HA lab lb1 under QEMU TCG (1 vCPU); wrk -t1 -c8 -d6s -H 'Connection: close' from client1; members are Go HTTP servers in host namespaces. Runs in order; the reference is lb1 as a plain router.\n\n")
	fmt.Fprintf(&b, "| # | path | conn/s | × routed run 1 | client SYN retransmits | member listen drops | member challenge ACKs | members marked down |\n|---|---|---|---|---|---|---|---|\n")
	for i, r := range runs {
		fmt.Fprintf(&b, "| %d | %s → %s | %.1f | %.2f | %d | %d | %d | %d |\n", i+1, r.path, r.target, r.rate, r.rate/runs[0].rate, r.synRetrans, r.memberDrops, r.challenge, r.downs)
	}
	fmt.Fprintf(&b, "\nlb1 after the runs (nf_conntrack stats, softnet_stat, loadavg):\n\n```\n%s```\n", guest)
	if err := os.WriteFile(dst, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s:\n%s", dst, b.String())
}
