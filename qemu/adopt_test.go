package qemu

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
)

// keepAlive is one established HTTP/1.1 connection through the VIP.
type keepAlive struct {
	c  net.Conn
	br *bufio.Reader
}

// ask sends one request on the connection and returns the member's answer.
func (k *keepAlive) ask() (string, error) {
	k.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func dialKeepAlive(ns *netlab.Namespace, addr string) (*keepAlive, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &keepAlive{c: c, br: bufio.NewReader(c)}, nil
}

// guestPID is the PID of the guest process whose command is name.
func guestPID(t *testing.T, v *vm.VM, name string) (string, error) {
	t.Helper()
	out, err := v.Run("ps -e", 30*time.Second)
	if err != nil {
		return "", err
	}
	re := regexp.MustCompile(`^\s*(\d+)\s.*(?:^|[\s/])` + regexp.QuoteMeta(name) + `(?:\s|$)`)
	for _, line := range strings.Split(out, "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			return m[1], nil
		}
	}
	return "", fmt.Errorf("no %s process in ps output:\n%s", name, out)
}

// TestLBDRestartAdoptsKernelState boots lb1 standalone with lbd and the two
// health-checked NAT virtual servers of TestHealthChecksDrivePoolMembership,
// opens long-lived HTTP connections through the VIP, kill -9's lbd (init's
// supervisor restarts it) and watches the guest's IPVS table: the restarted
// lbd adopts the table and changes nothing until its checks have results,
// so the destinations never drop out and every established connection still
// answers afterwards (the appliance runs with expire_nodest_conn=1: a
// deleted destination resets its connections).
func TestLBDRestartAdoptsKernelState(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	lab := newHWLab(t)
	for i, name := range []string{"m1", "m2"} {
		ns, err := lab.Host(name, netlab.Internal, []string{fmt.Sprintf("198.51.100.%d/24", 11+i)}, "198.51.100.2")
		if err != nil {
			t.Fatal(err)
		}
		m := &memberServer{ns: ns, name: name}
		m.start(t)
		t.Cleanup(m.stop)
	}
	clientNS, err := lab.Host("client", netlab.External, []string{"203.0.113.10/24"}, "")
	if err != nil {
		t.Fatal(err)
	}

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
	// :81's pool has a slow start: a restarted lbd adopting the table must
	// not ramp its members (they were up all along).
	vsSlow := hexDest("203.0.113.100", 81)
	keys := []string{vsWeb + ">" + m1, vsWeb + ">" + m2, vsRaw + ">" + m1, vsRaw + ">" + m2, vsSlow + ">" + m1, vsSlow + ">" + m2}
	all := func(d map[string]string) bool {
		for _, k := range keys {
			if d[k] != "1" {
				return false
			}
		}
		return true
	}
	waitDests(t, v, "both members up", time.Minute, all)

	const conns = 8
	var kas []*keepAlive
	seen := map[string]int{}
	for i := 0; i < conns; i++ {
		ka, err := dialKeepAlive(clientNS, "203.0.113.100:80")
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		t.Cleanup(func() { ka.c.Close() })
		who, err := ka.ask()
		if err != nil {
			t.Fatalf("connection %d, first request: %v", i, err)
		}
		seen[who]++
		kas = append(kas, ka)
	}
	if seen["m1"] == 0 || seen["m2"] == 0 {
		t.Fatalf("%d connections spread %v: want both members", conns, seen)
	}

	oldPID, err := guestPID(t, v, "lbd")
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// Kill lbd and watch the table from inside the guest, in one console
	// command (console commands racing init's own log lines are the
	// harness's known weak spot), while the supervisor restarts lbd and its
	// checks come back (interval 1s: the hold is 2.5 s at most).
	const polls = 30
	out, err := v.Run(fmt.Sprintf("kill -9 %s; i=0; while [ $i -lt %d ]; do echo POLL; cat /proc/net/ip_vs; sleep 0.2; i=$((i+1)); done", oldPID, polls), 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(out, "POLL")[1:]
	if len(blocks) != polls {
		t.Fatalf("%d polls of /proc/net/ip_vs in the output, want %d:\n%s", len(blocks), polls, out)
	}
	fewest, missing := len(keys), map[string]int{}
	for _, b := range blocks {
		d := parseIPVSDests(b)
		n := 0
		for _, k := range keys {
			if d[k] == "1" {
				n++
			} else {
				missing[k]++
			}
		}
		fewest = min(fewest, n)
	}
	newPID, err := guestPID(t, v, "lbd")
	if err != nil {
		t.Fatalf("lbd not restarted after kill -9: %v", err)
	}
	if newPID == oldPID {
		t.Fatalf("lbd still has PID %s after kill -9", oldPID)
	}
	t.Logf("kill -9 lbd (PID %s → %s): %d polls of /proc/net/ip_vs in %s, fewest of the %d destinations at weight 1 in one poll: %d", oldPID, newPID, polls, time.Since(killed).Round(100*time.Millisecond), len(keys), fewest)
	if fewest < len(keys) {
		t.Errorf("the IPVS destinations changed across the lbd restart (times each was missing or reweighted: %v)", missing)
	}
	if !regexp.MustCompile(`lbd\|.*adopting it unchanged`).MatchString(v.Console.Output()) {
		t.Errorf("the restarted lbd did not log that it adopted the kernel's IPVS table")
	}
	for _, l := range regexp.MustCompile(`lbd\|.*(?:adopt|ipvs: applied).*`).FindAllString(v.Console.Output(), -1) {
		t.Log(l)
	}

	lost := 0
	for i, ka := range kas {
		who, err := ka.ask()
		if err != nil || (who != "m1" && who != "m2") {
			lost++
			t.Errorf("connection %d after the restart: answer %q, %v", i, who, err)
		}
	}
	t.Logf("%d of %d established connections answered after the lbd restart", conns-lost, conns)
	waitDests(t, v, "both members still in after the restart", 10*time.Second, all)
}
