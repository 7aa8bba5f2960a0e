package node

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/lbcore/vrrp/fsm"
)

const keepalivedBin = "/usr/sbin/keepalived"

// keepalived is a keepalived process running in a lab node's namespace.
type keepalived struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	node *labNode
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type kaOpts struct {
	version   int
	priority  int
	advertInt string // seconds, e.g. "0.2"
	nopreempt bool
}

// keepalivedConfig is the keepalived equivalent of labConfig: same VRID and
// addresses (internal first, as in our adverts).
func keepalivedConfig(o kaOpts) string {
	np := ""
	if o.nopreempt {
		np = "    nopreempt\n"
	}
	ver, adv := "", ""
	if o.version != 0 { // else keepalived's default, 2
		ver = fmt.Sprintf("    vrrp_version %d\n", o.version)
	}
	if o.advertInt != "" { // else keepalived's default, 1 s
		adv = fmt.Sprintf("    advert_int %s\n", o.advertInt)
	}
	return fmt.Sprintf(`global_defs {
    router_id fulcrum_lab
%s}
vrrp_instance VI_51 {
    state BACKUP
    interface failover
    virtual_router_id 51
    priority %d
%s%s    virtual_ipaddress {
        198.51.100.1/24 dev internal
        %s/24 dev external
    }
}
`, ver, o.priority, adv, np, vip)
}

// startKeepalived runs keepalived in lab node i with its own config and pid
// files, in the foreground; cleanup kills it by PID.
func (l *lab) startKeepalived(i int, o kaOpts) *keepalived {
	l.t.Helper()
	testkit.Require(l.t, testkit.Tool(keepalivedBin)) // Debian package keepalived
	dir := l.t.TempDir()
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(keepalivedConfig(o)), 0o644); err != nil {
		l.t.Fatal(err)
	}
	n := l.nodes[i]
	cmd := exec.Command("ip", "netns", "exec", n.nsName, keepalivedBin,
		"--dont-fork", "--log-console", "--log-detail", "--vrrp",
		"-f", conf, "-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"))
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	k := &keepalived{cmd: cmd, out: out, node: n}
	l.t.Cleanup(func() {
		k.kill()
		if l.t.Failed() || os.Getenv("VRRP_KEEPALIVED_LOG") != "" {
			l.t.Logf("keepalived (%s) output:\n%s", n.name, out.String())
		}
	})
	return k
}

// kill ends keepalived and its VRRP child at once (SIGKILL to its process
// group, which we created): it gets no chance to resign.
func (k *keepalived) kill() {
	if k.cmd.Process == nil || k.cmd.ProcessState != nil {
		return
	}
	syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
	k.cmd.Wait()
}

// master: keepalived holds the VIP in its namespace.
func (k *keepalived) master() bool { return k.node.hasVIP() }

func kaAdvert(version, cs int) string {
	if version == 2 {
		return strconv.Itoa(cs / 100)
	}
	return strconv.FormatFloat(float64(cs)/100, 'f', 2, 64)
}

func interopConfig(version, prio int, mod func(*config.VRRP)) config.VRRP {
	return labConfig(prio, func(c *config.VRRP) {
		c.Version = version
		if version == 2 {
			c.AdvertInterval = 100
		}
		if mod != nil {
			mod(c)
		}
	})
}

func interopTimeout(version int) time.Duration {
	if version == 2 {
		return 8 * time.Second // 1 s adverts: master-down 3.6 s
	}
	return 4 * time.Second
}

// Ours master, keepalived backup: ours wins, keepalived takes over when ours
// dies, and ours takes back when it returns.
func TestKeepalivedOursMaster(t *testing.T) {
	for _, v := range []int{3, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			l := newLab(t)
			to := interopTimeout(v)
			cfg := interopConfig(v, 150, nil)
			n1 := l.start(0, cfg)
			ka := l.startKeepalived(1, kaOpts{version: v, priority: 100, advertInt: kaAdvert(v, cfg.AdvertInterval)})
			waitFor(t, to, "ours master", func() bool { return n1.state() == fsm.Master })
			time.Sleep(to / 2)
			if ka.master() || n1.state() != fsm.Master {
				t.Fatalf("keepalived holds the VIP=%v, ours %s", ka.master(), n1.state())
			}
			l.waitWho("lb1", 2*time.Second)
			if c := n1.Counters(); c["rx"] == 0 {
				t.Logf("note: no adverts received from keepalived (it is backup): %v", c)
			}

			l.nodes[0].setLink(t, "failover", false)
			l.nodes[0].setLink(t, "external", false)
			waitFor(t, to, "keepalived master", ka.master)
			l.waitWho("lb2", 3*time.Second)

			l.nodes[0].setLink(t, "failover", true)
			l.nodes[0].setLink(t, "external", true)
			waitFor(t, to, "keepalived gives up the VIP", func() bool { return !ka.master() })
			// keepalived drops the VIP as soon as it hears ours' first
			// advert, which may be before ours publishes its new state.
			waitFor(t, time.Second, "ours master again", func() bool { return n1.state() == fsm.Master })
			l.waitWho("lb1", 3*time.Second)
		})
	}
}

// keepalived master, ours backup: ours hears keepalived's adverts (and counts
// no drops), takes over when keepalived dies, and yields when a
// higher-priority keepalived returns and preempts.
func TestKeepalivedTheirsMaster(t *testing.T) {
	for _, v := range []int{3, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			l := newLab(t)
			to := interopTimeout(v)
			cfg := interopConfig(v, 100, nil)
			ka := l.startKeepalived(0, kaOpts{version: v, priority: 150, advertInt: kaAdvert(v, cfg.AdvertInterval)})
			waitFor(t, to, "keepalived master", ka.master)
			n2 := l.start(1, cfg)
			time.Sleep(to/2 + time.Second) // past its master-down interval
			if n2.state() != fsm.Backup {
				t.Fatalf("ours is %s while keepalived is master", n2.state())
			}
			if st := n2.Status()[0]; st.Master.String() != "192.0.2.1" {
				t.Errorf("ours sees master %s", st.Master)
			}
			for k, c := range n2.Counters() {
				if strings.HasPrefix(k, "drop.") && k != "drop."+DropOwn {
					t.Errorf("dropped keepalived's adverts: %s=%d", k, c)
				}
			}
			l.waitWho("lb1", 2*time.Second)

			ka.kill()
			l.nodes[0].setLink(t, "external", false) // the dead box is gone from the client's segment
			waitFor(t, to, "ours master", func() bool { return n2.state() == fsm.Master })
			l.waitWho("lb2", 3*time.Second)

			// keepalived returns with priority 150 and preempts ours
			l.nodes[0].setLink(t, "external", true)
			ka = l.startKeepalived(0, kaOpts{version: v, priority: 150, advertInt: kaAdvert(v, cfg.AdvertInterval)})
			waitFor(t, 2*to, "keepalived preempts", func() bool { return ka.master() && n2.state() == fsm.Backup })
			l.waitWho("lb1", 3*time.Second)
		})
	}
}

// Preempt as configured on keepalived's side, against ours as master:
// keepalived with a higher priority preempts, with nopreempt it does not.
func TestKeepalivedPreemptSetting(t *testing.T) {
	for _, nopreempt := range []bool{false, true} {
		t.Run(fmt.Sprintf("nopreempt=%v", nopreempt), func(t *testing.T) {
			l := newLab(t)
			cfg := interopConfig(3, 100, nil)
			n2 := l.start(1, cfg)
			waitFor(t, 3*time.Second, "ours master", func() bool { return n2.state() == fsm.Master })
			ka := l.startKeepalived(0, kaOpts{version: 3, priority: 150, advertInt: kaAdvert(3, cfg.AdvertInterval), nopreempt: nopreempt})
			if nopreempt {
				time.Sleep(3 * time.Second)
				if ka.master() || n2.state() != fsm.Master {
					t.Fatalf("nopreempt keepalived: VIP=%v ours=%s", ka.master(), n2.state())
				}
				return
			}
			waitFor(t, 4*time.Second, "keepalived preempts", func() bool { return ka.master() && n2.state() == fsm.Backup })
		})
	}
	// and ours preempting keepalived, or not
	for _, nopreempt := range []bool{false, true} {
		t.Run(fmt.Sprintf("ours-nopreempt=%v", nopreempt), func(t *testing.T) {
			l := newLab(t)
			cfg := interopConfig(3, 150, func(c *config.VRRP) { c.NoPreempt = nopreempt })
			ka := l.startKeepalived(0, kaOpts{version: 3, priority: 100, advertInt: kaAdvert(3, cfg.AdvertInterval)})
			waitFor(t, 4*time.Second, "keepalived master", ka.master)
			n2 := l.start(1, cfg)
			if nopreempt {
				time.Sleep(3 * time.Second)
				if !ka.master() || n2.state() != fsm.Backup {
					t.Fatalf("nopreempt ours: keepalived VIP=%v ours=%s", ka.master(), n2.state())
				}
				return
			}
			waitFor(t, 4*time.Second, "ours preempts", func() bool { return n2.state() == fsm.Master && !ka.master() })
			l.waitWho("lb2", 2*time.Second)
		})
	}
}
