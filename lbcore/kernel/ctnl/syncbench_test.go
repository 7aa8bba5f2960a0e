//go:build guest

package ctnl_test

// The connection sync benchmark (issue 13, "measure and note"): in one
// guest, a master and a backup namespace run both syncs as the appliance
// does (the kernel's IPVS sync daemons, and conntrack sync's Daemon in a
// process of its own, so its CPU can be read), while a client opens new
// connections through the master's IPVS NAT service (with SNAT to a local
// address, FullNAT's shape, so each connection also has a NAT'd conntrack
// entry) at a target of 1000 per second. Reported: the rate reached, sync
// lag (connection open on the client → entry on the backup) for each sync,
// the sync path's CPU on the master beside the whole guest's, and the
// kernel memory of 100 000 synced entries of each kind (conntrack entries
// installed through conntrack sync's receiver, IPVS connections sent to
// the backup daemon as sync messages).
//
// Only with -sync-bench-report=FILE (qemu's TestSyncBenchReport, `make
// bench`); test runs never select it (it is not a TestGuest*).

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/ctsync"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ctnl"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvsnl"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	mobyipvs "github.com/moby/ipvs"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var syncBenchReport = flag.String("sync-bench-report", "", "write the connection sync benchmark report (markdown) to this file (TestSyncBenchReport)")

const (
	benchSyncID   = 9
	benchRate     = 1000 // new connections per second asked for
	benchDuration = 5 * time.Second
	benchEntries  = 100000
)

// natOnly is the conntrack table as conntrack sync sees it on the
// appliance (services/vrrpd's natTable).
type natOnly struct{ c *ctnl.Conn }

func (t natOnly) Dump() ([]ctsync.Entry, error) { return t.c.Dump(ctnl.NATOnly) }
func (t natOnly) Install(e ctsync.Entry) error  { return t.c.Install(e) }
func (t natOnly) Watch(ctx context.Context, out chan<- ctsync.Entry) error {
	return t.c.Watch(ctx, ctnl.NATOnly, out)
}

// listenIn opens conntrack sync's UDP socket inside the namespace at path.
func listenIn(path string, local netip.AddrPort) (net.PacketConn, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	h, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return nil, err
	}
	defer netns.Set(orig)
	return net.ListenPacket("udp", local.String())
}

// runSyncDaemon runs conntrack sync in the namespace at nsPath until ctx
// ends: master (sending) or backup (receiving).
func runSyncDaemon(ctx context.Context, nsPath string, local, peer netip.Addr, master bool) (*ctsync.Daemon, error) {
	k, err := ctnl.Open(nsPath)
	if err != nil {
		return nil, err
	}
	pc, err := listenIn(nsPath, netip.AddrPortFrom(local, ctsync.Port))
	if err != nil {
		k.Close()
		return nil, err
	}
	log := logrus.New()
	log.SetLevel(logrus.WarnLevel)
	d, err := ctsync.New(ctsync.Config{SyncID: benchSyncID, Peer: peer, Port: ctsync.Port}, natOnly{k}, pc, log)
	if err != nil {
		pc.Close()
		k.Close()
		return nil, err
	}
	d.SetRole(master)
	go func() {
		d.Run(ctx)
		pc.Close()
		k.Close()
	}()
	return d, nil
}

// TestSyncBenchChild is the master's conntrack sync in a process of its
// own (started by TestSyncBenchReport); it runs until its stdin closes.
func TestSyncBenchChild(t *testing.T) {
	ns := os.Getenv("SYNC_BENCH_NS")
	if ns == "" {
		t.Skip("started by TestSyncBenchReport only")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := runSyncDaemon(ctx, ns, netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), true); err != nil {
		t.Fatal(err)
	}
	fmt.Println("running")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// cpuTicks is a process's (or kernel thread's) user+system time in clock
// ticks.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // fields from 3 (state) on
	ut, err1 := strconv.ParseUint(f[11], 10, 64)             // field 14
	st, err2 := strconv.ParseUint(f[12], 10, 64)             // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	return ut + st, nil
}

// busyTicks is the guest's non-idle CPU time (all CPUs) from /proc/stat.
func busyTicks() (uint64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])
	var busy uint64
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, nil
}

// ipvsMasterThreads are the pids of the kernel's IPVS master sync threads.
func ipvsMasterThreads() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err == nil && strings.HasPrefix(string(b), "ipvs-m:") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// slabKB is the kernel's slab memory (/proc/meminfo Slab).
func slabKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "Slab:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no Slab in /proc/meminfo")
	return 0
}

type lagStats struct {
	seen, total   int
	p50, p99, max time.Duration
}

func (s lagStats) String() string {
	if s.seen == 0 {
		return fmt.Sprintf("none of %d seen", s.total)
	}
	return fmt.Sprintf("p50 %v, p99 %v, max %v (%d of %d seen)", s.p50.Round(time.Millisecond), s.p99.Round(time.Millisecond), s.max.Round(time.Millisecond), s.seen, s.total)
}

// ipvsSyncMessage is one IPVS sync protocol v1 datagram (the kernel's
// ip_vs_sync.c: struct ip_vs_sync_mesg and ip_vs_sync_v4) carrying n
// established NAT connections client:port → vip:80 → member:8080, ports
// from first on.
func ipvsSyncMessage(syncID uint8, client, vip, member netip.Addr, first, n int) []byte {
	const connSize = 36
	b := make([]byte, 8, 8+n*connSize)
	b[1] = syncID
	binary.BigEndian.PutUint16(b[2:], uint16(8+n*connSize))
	b[4] = byte(n)
	b[5] = 1 // SYNC_PROTO_VER
	for i := 0; i < n; i++ {
		c := make([]byte, connSize)
		c[0] = 0 // IPv4, no options
		c[1] = unix.IPPROTO_TCP
		binary.BigEndian.PutUint16(c[2:], connSize)
		binary.BigEndian.PutUint32(c[4:], 0) // flags: IP_VS_CONN_F_MASQ
		binary.BigEndian.PutUint16(c[8:], 1) // IP_VS_TCP_S_ESTABLISHED
		binary.BigEndian.PutUint16(c[10:], uint16(first+i))
		binary.BigEndian.PutUint16(c[12:], 80)
		binary.BigEndian.PutUint16(c[14:], 8080)
		binary.BigEndian.PutUint32(c[16:], 0)   // fwmark
		binary.BigEndian.PutUint32(c[20:], 900) // timeout (s)
		copy(c[24:], client.AsSlice())
		copy(c[28:], vip.AsSlice())
		copy(c[32:], member.AsSlice())
		b = append(b, c...)
	}
	return b
}

func TestSyncBenchReport(t *testing.T) {
	out := *syncBenchReport
	if out == "" {
		t.Skip("set -sync-bench-report=FILE to write the connection sync benchmark report")
	}
	testkit.Require(t, testkit.Root, testkit.Path("/proc/net/ip_vs", "the appliance guest's kernel"))
	master, backup := testkit.NewNS(t, "sb-master"), testkit.NewNS(t, "sb-backup")
	client, member := testkit.NewNS(t, "sb-client"), testkit.NewNS(t, "sb-member")
	testkit.Veth(t, master, "sbf0", "192.0.2.1/25", backup, "sbf1", "192.0.2.2/25")
	testkit.Veth(t, client, "sbc0", "203.0.113.10/24", master, "sbx", "203.0.113.2/24")
	testkit.Veth(t, member, "sbm0", "198.51.100.11/24", master, "sbi", "198.51.100.2/24")
	master.AddAddr(t, "sbx", "203.0.113.100/32")
	master.AddAddr(t, "sbi", "198.51.100.201/32")
	member.Route(t, "default", "198.51.100.2")
	for _, ns := range []*testkit.NS{master, backup} {
		ns.Sysctl(t, "net.ipv4.ip_forward", "1")
		ns.Sysctl(t, "net.ipv4.vs.conntrack", "1")
		ns.Sysctl(t, "net.ipv4.vs.sync_refresh_period", "5")
		ns.Sysctl(t, "net.ipv4.vs.sync_threshold", "3 0")
		ns.Sysctl(t, "net.netfilter.nf_conntrack_tcp_be_liberal", "1")
	}
	client.Sysctl(t, "net.ipv4.ip_local_port_range", "10000 65000")
	client.Sysctl(t, "net.ipv4.tcp_tw_reuse", "1")
	member.Serve(t, "m11", "0.0.0.0:8080")
	snatRule(t, master, snatByDst, netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("198.51.100.201")) // FullNAT's shape: NAT'd conntrack entries
	for _, ns := range []*testkit.NS{master, backup} {
		h, err := mobyipvs.New(ns.Path())
		if err != nil {
			t.Fatal(err)
		}
		svc := &mobyipvs.Service{Address: net.ParseIP("203.0.113.100"), Protocol: syscall.IPPROTO_TCP, Port: 80,
			AddressFamily: syscall.AF_INET, SchedName: "rr", Netmask: 0xffffffff}
		if err := h.NewService(svc); err != nil {
			t.Fatal(err)
		}
		if err := h.NewDestination(svc, &mobyipvs.Destination{Address: net.ParseIP("198.51.100.11"), Port: 8080,
			AddressFamily: syscall.AF_INET, Weight: 1, ConnectionFlags: mobyipvs.ConnectionFlagMasq}); err != nil {
			t.Fatal(err)
		}
		h.Close()
	}
	for _, s := range []struct {
		ns    *testkit.NS
		state ipvsnl.State
		ifn   string
	}{{master, ipvsnl.Master, "sbf0"}, {backup, ipvsnl.Backup, "sbf1"}} {
		c, err := ipvsnl.Open(s.ns.Path())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ipvsnl.Daemon{State: s.state, Interface: s.ifn, SyncID: benchSyncID}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Stop(s.state); c.Close() })
	}

	// Conntrack sync: the master's in a child process, the backup's here.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(exe, "-test.run=^TestSyncBenchChild$", "-test.v")
	child.Env = append(os.Environ(), "SYNC_BENCH_NS="+master.Path())
	child.ExtraFiles = nil
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = child.Wait() })
	// The child opens the namespace by this process's fd path, which
	// stays valid while this process runs.
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "running") {
				ready <- nil
				for sc.Scan() {
				}
				return
			}
		}
		ready <- fmt.Errorf("conntrack sync child ended before running")
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("conntrack sync child not running after 30 s")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bd, err := runSyncDaemon(ctx, backup.Path(), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.1"), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := testkit.Poll(30*time.Second, 100*time.Millisecond, func() error {
		if !bd.Status().Synced {
			return fmt.Errorf("backup's conntrack sync not synced: %+v", bd.Status())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// The backup's installs, as they happen: conntrack events; its IPVS
	// table, polled every 50 ms.
	bc, err := ctnl.Open(backup.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	obs := &observer{ct: map[flowKey]time.Time{}, ipvs: map[flowKey]time.Time{}}
	evs := make(chan ctsync.Entry, 4096)
	go func() { _ = bc.Watch(ctx, nil, evs) }()
	go func() {
		for e := range evs {
			if e.Op != ctsync.OpDelete {
				obs.saw(obs.ct, flowKey{e.Orig.Src, e.Orig.SrcPort}, time.Now())
			}
		}
	}()
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		for ctx.Err() == nil {
			keys, err := ipvsConnKeys(backup)
			now := time.Now()
			if err == nil {
				for _, k := range keys {
					obs.saw(obs.ipvs, k, now)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// The same load twice, from two client addresses: with the kernel's
	// default sync message size (a message holds ~40 connections and
	// waits to fill, up to 2 s), and with one connection per message
	// (maxlen 44: sent as soon as the next sync event queues it).
	mc, err := ipvsnl.Open(master.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	var phases []phaseResult
	for i, maxLen := range []uint16{0, 44} {
		src := fmt.Sprintf("203.0.113.%d", 10+i)
		if i > 0 {
			client.AddAddr(t, "sbc0", src+"/24")
		}
		if err := mc.Stop(ipvsnl.Master); err != nil {
			t.Fatal(err)
		}
		if err := mc.Start(ipvsnl.Daemon{State: ipvsnl.Master, Interface: "sbf0", SyncID: benchSyncID, MaxLen: maxLen}); err != nil {
			t.Fatal(err)
		}
		ds, err := mc.List()
		if err != nil {
			t.Fatal(err)
		}
		r := loadPhase(t, client, src, child.Process.Pid, obs)
		t.Logf("phase %d: first greeting %q; backup conntrack sync: %+v", i, r.greeting, bd.Status())
		for _, d := range ds {
			if d.State == ipvsnl.Master {
				r.maxLen = d.MaxLen
			}
		}
		phases = append(phases, r)
	}
	cancel()
	<-pollDone

	// Memory: 100 000 conntrack entries through the receiver's install
	// path, then 100 000 IPVS connections as sync messages to the backup
	// daemon; the kernel's slab growth for each.
	slab0 := slabKB(t)
	installStart := time.Now()
	vip, member4 := netip.MustParseAddr("203.0.113.100"), netip.MustParseAddr("198.51.100.11")
	for i := 0; i < benchEntries; i++ {
		port, block := uint16(1024+i%60000), byte(i/60000)
		e := ctsync.Entry{Op: ctsync.OpUpdate, Proto: unix.IPPROTO_TCP, TCPState: 3, Timeout: 600,
			Status: ctnl.StatusSrcNAT | ctnl.StatusSeenReply | ctnl.StatusAssured,
			Orig:   ctsync.Tuple{Src: netip.AddrFrom4([4]byte{10, 8, 0, block}), Dst: vip, SrcPort: port, DstPort: 80},
			Reply:  ctsync.Tuple{Src: member4, Dst: netip.AddrFrom4([4]byte{198, 51, 100, 211 + block}), SrcPort: 8080, DstPort: port}}
		if err := bc.Install(e); err != nil {
			t.Fatalf("installing synthetic conntrack entry %d: %v", i, err)
		}
	}
	installTook := time.Since(installStart)
	slab1 := slabKB(t)

	// IPVS: sync messages from the master's address to the backup daemon.
	if err := master.Do(func() error {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("192.0.2.1")})
		if err != nil {
			return err
		}
		defer conn.Close()
		ifi, err := net.InterfaceByName("sbf0")
		if err != nil {
			return err
		}
		rc, err := conn.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptIPMreqn(int(fd), unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifi.Index)})
		}); err != nil || serr != nil {
			return fmt.Errorf("IP_MULTICAST_IF: %v %v", err, serr)
		}
		group := &net.UDPAddr{IP: net.ParseIP("224.0.0.81"), Port: 8848}
		const per = 40
		for i := 0; i < benchEntries; i += per {
			msg := ipvsSyncMessage(benchSyncID, netip.AddrFrom4([4]byte{10, 9, 0, byte(i / 60000)}), vip, member4, 1024+i%60000, per)
			if _, err := conn.WriteTo(msg, group); err != nil {
				return fmt.Errorf("sync message %d: %w", i/per, err)
			}
			if i%400 == 0 {
				time.Sleep(2 * time.Millisecond) // let the backup thread keep up
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("sending IPVS sync messages: %v", err)
	}
	var synced uint64
	_ = testkit.Poll(60*time.Second, 500*time.Millisecond, func() error {
		var c ipvsnl.ConnCounts
		err := backup.Do(func() (err error) {
			c, err = ipvsnl.ReadConnCounts("/proc/thread-self/net/ip_vs_conn_sync")
			return err
		})
		if err != nil {
			return err
		}
		synced = c.Synced
		if synced < benchEntries {
			return fmt.Errorf("%d synced", synced)
		}
		return nil
	})
	slab2 := slabKB(t)
	if synced < benchEntries/2 {
		t.Fatalf("the backup daemon installed only %d of %d IPVS connections sent as sync messages", synced, benchEntries)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Connection sync\n\n")
	fmt.Fprintf(&b, "Master and backup namespaces in one guest, both syncs as the appliance runs them (IPVS sync daemons, sync_refresh_period 5 s; conntrack sync's daemon, the master's in its own process). New connections through the master's IPVS NAT service with SNAT to a local address (FullNAT's shape), each opened, greeted and closed.\n\n")
	fmt.Fprintf(&b, "| measure | figure | reference (same run) |\n| --- | --- | --- |\n")
	for _, r := range phases {
		fmt.Fprintf(&b, "| IPVS sync message size %d bytes: new connections/s reached | %.0f (%d opened, %d not started or failed) | %d asked for |\n", r.maxLen, r.rate, r.opened, r.failed, benchRate)
		fmt.Fprintf(&b, "| … sync lag, conntrack sync (open → installed on the backup) | %s | batching bound 20 ms |\n", r.ctLag)
		fmt.Fprintf(&b, "| … sync lag, IPVS sync (open → in the backup's table, polled every 50 ms) | %s | the kernel's flush period 2 s |\n", r.ipvsLag)
		fmt.Fprintf(&b, "| … CPU on the master, conntrack sync process | %s | guest busy %.1f %% of a CPU |\n", r.pct(r.ctTicks), r.busyPct())
		fmt.Fprintf(&b, "| … CPU on the master, kernel IPVS sync threads | %s | guest busy %.1f %% of a CPU |\n", r.pct(r.ipvsTicks), r.busyPct())
	}
	fmt.Fprintf(&b, "| kernel memory, %d conntrack entries installed by sync | %d KiB (%.0f bytes each) | installed in %v (%.0f/s) |\n", benchEntries, slab1-slab0, float64(slab1-slab0)*1024/benchEntries, installTook.Round(time.Millisecond), benchEntries/installTook.Seconds())
	fmt.Fprintf(&b, "| kernel memory, %d IPVS connections from sync messages | %d KiB (%.0f bytes each) | %d installed by the backup daemon |\n", benchEntries, slab2-slab1, float64(slab2-slab1)*1024/float64(max(synced, 1)), synced)
	fmt.Fprintf(&b, "\nCPU is from /proc/PID/stat (clock ticks) over each %v load phase; the guest's busy time is /proc/stat's non-idle time. Memory is /proc/meminfo's Slab growth; the conntrack figure includes the NAT extension.\n", benchDuration)
	report := b.String()
	if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("@@SYNC-BENCH-BEGIN@@\n%s@@SYNC-BENCH-END@@\n", report)
}

// flowKey is a client flow: address and port.
type flowKey struct {
	addr netip.Addr
	port uint16
}

// observer records when each flow first showed up on the backup.
type observer struct {
	mu       sync.Mutex
	ct, ipvs map[flowKey]time.Time
}

func (o *observer) saw(m map[flowKey]time.Time, k flowKey, at time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := m[k]; !ok {
		m[k] = at
	}
}

func (o *observer) lags(opened map[flowKey]time.Time, m map[flowKey]time.Time) lagStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	var d []time.Duration
	for k, t0 := range opened {
		if t1, ok := m[k]; ok {
			d = append(d, max(t1.Sub(t0), 0))
		}
	}
	s := lagStats{seen: len(d), total: len(opened)}
	if len(d) == 0 {
		return s
	}
	slices.Sort(d)
	s.p50, s.p99, s.max = d[len(d)/2], d[len(d)*99/100], d[len(d)-1]
	return s
}

// ipvsConnKeys lists the client flows of ns's IPVS connections.
func ipvsConnKeys(ns *testkit.NS) ([]flowKey, error) {
	var data []byte
	if err := ns.Do(func() error {
		var err error
		data, err = os.ReadFile("/proc/thread-self/net/ip_vs_conn")
		return err
	}); err != nil {
		return nil, err
	}
	var keys []flowKey
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || len(f[1]) != 8 {
			continue
		}
		a, err1 := strconv.ParseUint(f[1], 16, 32)
		p, err2 := strconv.ParseUint(f[2], 16, 16)
		if err1 != nil || err2 != nil {
			continue
		}
		keys = append(keys, flowKey{netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), uint16(p)})
	}
	return keys, nil
}

// phaseResult is one load phase's figures.
type phaseResult struct {
	maxLen                   uint16
	greeting                 string
	rate                     float64
	opened, failed           int
	elapsed                  time.Duration
	ctLag, ipvsLag           lagStats
	ctTicks, ipvsTicks, busy uint64
}

func (r phaseResult) pct(ticks uint64) string {
	return fmt.Sprintf("%.1f %% of a CPU (%.2f× the guest's whole busy time)", float64(ticks)/r.elapsed.Seconds(), float64(ticks)/float64(max(r.busy, 1)))
}

func (r phaseResult) busyPct() float64 { return float64(r.busy) / r.elapsed.Seconds() }

// loadPhase opens a new connection from src every 1/benchRate s for
// benchDuration (each reads the member's greeting and closes), then waits
// for both syncs and returns the figures.
func loadPhase(t *testing.T, client *testkit.NS, src string, childPid int, obs *observer) phaseResult {
	t.Helper()
	threads := ipvsMasterThreads()
	before := map[int]uint64{}
	for _, pid := range append(threads, childPid) {
		before[pid], _ = cpuTicks(pid)
	}
	busyBefore, _ := busyTicks()
	var mu sync.Mutex
	opened := map[flowKey]time.Time{}
	failed := 0
	r0 := "" // the first greeting: the member and the source it saw
	srcAddr := netip.MustParseAddr(src)
	var wg sync.WaitGroup
	start := time.Now()
	tick := time.NewTicker(time.Second / benchRate)
	sem := make(chan struct{}, 256)
	for time.Since(start) < benchDuration {
		<-tick.C
		select {
		case sem <- struct{}{}:
		default:
			mu.Lock()
			failed++ // the client cannot keep up: counted, not queued
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			c, greeting, err := client.Dial(src, "203.0.113.100:80", 5*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				return
			}
			if r0 == "" {
				r0 = greeting
			}
			opened[flowKey{srcAddr, uint16(c.LocalAddr().(*net.TCPAddr).Port)}] = t0
			c.Close()
		}()
	}
	tick.Stop()
	wg.Wait()
	r := phaseResult{elapsed: time.Since(start), failed: failed, opened: len(opened), greeting: r0}
	busyAfter, _ := busyTicks()
	r.busy = busyAfter - busyBefore
	for _, pid := range threads {
		a, _ := cpuTicks(pid)
		r.ipvsTicks += a - before[pid]
	}
	if a, err := cpuTicks(childPid); err == nil {
		r.ctTicks = a - before[childPid]
	}
	if len(opened) == 0 {
		t.Fatalf("no connection opened from %s (%d failed)", src, failed)
	}
	r.rate = float64(len(opened)) / r.elapsed.Seconds()
	time.Sleep(4 * time.Second) // IPVS sync flushes at most every 2 s
	r.ctLag, r.ipvsLag = obs.lags(opened, obs.ct), obs.lags(opened, obs.ipvs)
	return r
}
