//go:build guest

package ipvsnl_test

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvsnl"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// tableChanges is a table exercising every field a change carries: TCP and
// UDP, IPv4 and IPv6, a fwmark service, persistence with a netmask, the
// sh scheduler's flags, masquerade / direct routing / tunnel, thresholds,
// and the global timeouts. With 30 services of 6 members it spans several
// chunks.
func tableChanges() []ipvsnl.Change {
	var out []ipvsnl.Change
	out = append(out, ipvsnl.Change{Cmd: ipvsnl.SetConfig, Config: &mobyipvs.Config{TimeoutTCP: 90 * time.Second, TimeoutTCPFin: 30 * time.Second, TimeoutUDP: 60 * time.Second}})
	for i := range 30 {
		s := &mobyipvs.Service{AddressFamily: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: net.IPv4(203, 0, 113, byte(100+i)), Port: 80, SchedName: "wrr", Netmask: 0xffffffff}
		switch i % 5 {
		case 1:
			s.Protocol = unix.IPPROTO_UDP
			s.SchedName = "rr"
		case 2:
			s.Flags, s.Timeout, s.Netmask = 0x1, 600, 0xffffff00 // IP_VS_SVC_F_PERSISTENT, /24
		case 3:
			s.AddressFamily, s.Address, s.Netmask = unix.AF_INET6, net.ParseIP(fmt.Sprintf("2001:db8:1::%x", 100+i)), 128
		case 4:
			s = &mobyipvs.Service{AddressFamily: unix.AF_INET, FWMark: uint32(1000 + i), SchedName: "sh", Flags: 0x8 | 0x10, Netmask: 0xffffffff} // sh-fallback|sh-port
		}
		out = append(out, ipvsnl.Change{Cmd: ipvsnl.NewService, Service: s})
		for j := range 6 {
			d := &mobyipvs.Destination{Address: net.IPv4(198, 51, 100, byte(11+j)), Port: 8080, Weight: j + 1, ConnectionFlags: mobyipvs.ConnectionFlagMasq}
			if s.AddressFamily == unix.AF_INET6 {
				d.Address = net.ParseIP(fmt.Sprintf("2001:db8:2::%x", 11+j))
			}
			switch j {
			case 1:
				d.UpperThreshold, d.LowerThreshold = 100, 10
			case 2:
				if s.AddressFamily == unix.AF_INET {
					d.ConnectionFlags, d.Port = mobyipvs.ConnectionFlagDirectRoute, s.Port
				}
			case 3:
				if s.AddressFamily == unix.AF_INET {
					d.ConnectionFlags, d.Port = mobyipvs.ConnectionFlagTunnel, s.Port
				}
			}
			out = append(out, ipvsnl.Change{Cmd: ipvsnl.NewDest, Service: s, Dest: d})
		}
	}
	return out
}

// edits changes a table made by tableChanges: a weight, a scheduler,
// persistence, a member removed, a service removed.
func edits(table []ipvsnl.Change) []ipvsnl.Change {
	var out []ipvsnl.Change
	for _, c := range table {
		if c.Cmd == ipvsnl.NewDest && c.Dest.Weight == 2 {
			d := *c.Dest
			d.Weight = 7
			out = append(out, ipvsnl.Change{Cmd: ipvsnl.SetDest, Service: c.Service, Dest: &d})
		}
		if c.Cmd == ipvsnl.NewDest && c.Dest.Weight == 6 {
			out = append(out, ipvsnl.Change{Cmd: ipvsnl.DelDest, Service: c.Service, Dest: c.Dest})
		}
	}
	for _, c := range table {
		if c.Cmd != ipvsnl.NewService {
			continue
		}
		if c.Service.SchedName == "wrr" && c.Service.Flags == 0 {
			s := *c.Service
			s.SchedName, s.Flags, s.Timeout = "lc", 0x1, 300
			out = append(out, ipvsnl.Change{Cmd: ipvsnl.SetService, Service: &s})
		}
		if c.Service.FWMark == 1024 {
			out = append(out, ipvsnl.Change{Cmd: ipvsnl.DelService, Service: c.Service})
		}
	}
	return out
}

// viaMoby makes each change with one github.com/moby/ipvs call.
func viaMoby(t *testing.T, h *mobyipvs.Handle, changes []ipvsnl.Change) {
	t.Helper()
	for _, c := range changes {
		var err error
		switch c.Cmd {
		case ipvsnl.SetConfig:
			err = h.SetConfig(c.Config)
		case ipvsnl.NewService:
			err = h.NewService(c.Service)
		case ipvsnl.SetService:
			err = h.UpdateService(c.Service)
		case ipvsnl.DelService:
			err = h.DelService(c.Service)
		case ipvsnl.NewDest:
			err = h.NewDestination(c.Service, c.Dest)
		case ipvsnl.SetDest:
			err = h.UpdateDestination(c.Service, c.Dest)
		case ipvsnl.DelDest:
			err = h.DelDestination(c.Service, c.Dest)
		}
		if err != nil {
			t.Fatalf("moby %s: %v", c, err)
		}
	}
}

// dump renders the kernel's table (without counters) as sorted text.
func dump(t *testing.T, h *mobyipvs.Handle) string {
	t.Helper()
	svcs, err := h.GetServices()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range svcs {
		sl := fmt.Sprintf("svc af=%d proto=%d %s:%d mark=%d sched=%s flags=%#x timeout=%d netmask=%#x pe=%q",
			s.AddressFamily, s.Protocol, s.Address, s.Port, s.FWMark, s.SchedName, s.Flags, s.Timeout, s.Netmask, s.PEName)
		ds, err := h.GetDestinations(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds {
			lines = append(lines, fmt.Sprintf("%s | dest %s:%d fwd=%#x weight=%d thresh=%d/%d",
				sl, d.Address, d.Port, d.ConnectionFlags&0x7, d.Weight, d.UpperThreshold, d.LowerThreshold))
		}
		lines = append(lines, sl)
	}
	cfg, err := h.GetConfig()
	if err != nil {
		t.Fatal(err)
	}
	lines = append(lines, fmt.Sprintf("timeouts %v %v %v", cfg.TimeoutTCP, cfg.TimeoutTCPFin, cfg.TimeoutUDP))
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func mobyHandle(t *testing.T, ns *testkit.NS) *mobyipvs.Handle {
	t.Helper()
	h, err := mobyipvs.New(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func batch(t *testing.T, c *ipvsnl.Conn, changes []ipvsnl.Change) ipvsnl.BatchResult {
	t.Helper()
	res, err := c.Batch(changes)
	if err != nil {
		t.Fatal(err)
	}
	if res.Unknown != nil {
		t.Fatalf("answer lost: %v", res.Unknown)
	}
	return res
}

// TestGuestBatchMatchesMoby builds the same table, then the same edits,
// once with one moby/ipvs call per change and once in batches, and checks
// the kernel ends with identical tables: the batch encoding means what
// moby's does.
func TestGuestBatchMatchesMoby(t *testing.T) {
	requireIPVS(t)
	nsMoby, nsBatch := testkit.NewNS(t, "bt-moby"), testkit.NewNS(t, "bt-batch")
	hm, hb := mobyHandle(t, nsMoby), mobyHandle(t, nsBatch)
	c := open(t, nsBatch)
	table := tableChanges()
	if len(table) < 150 {
		t.Fatalf("table of %d changes does not span two chunks", len(table))
	}
	viaMoby(t, hm, table)
	if i, err := batch(t, c, table).Failed(); err != nil {
		t.Fatalf("batch change %d (%s): %v", i+1, table[i], err)
	}
	want, got := dump(t, hm), dump(t, hb)
	if want != got {
		t.Fatalf("tables differ after the build:\nmoby:\n%s\nbatch:\n%s", want, got)
	}
	ed := edits(table)
	viaMoby(t, hm, ed)
	if i, err := batch(t, c, ed).Failed(); err != nil {
		t.Fatalf("batch edit %d (%s): %v", i+1, ed[i], err)
	}
	want, got = dump(t, hm), dump(t, hb)
	if want != got {
		t.Fatalf("tables differ after the edits:\nmoby:\n%s\nbatch:\n%s", want, got)
	}
	t.Logf("%d changes then %d edits: identical tables (%d lines)", len(table), len(ed), strings.Count(want, "\n")+1)
}

// TestGuestBatchFailureMidChunk: a change the kernel refuses (a duplicate
// destination) is reported at its own index with the kernel's errno; the
// other changes of its chunk are made (the kernel runs each message on its
// own) and reported nil; the chunks after it are not sent.
func TestGuestBatchFailureMidChunk(t *testing.T) {
	requireIPVS(t)
	ns := testkit.NewNS(t, "bt-fail")
	h := mobyHandle(t, ns)
	c := open(t, ns)
	table := tableChanges()
	const bad = 5
	dup := table[bad-1]
	if dup.Cmd != ipvsnl.NewDest {
		t.Fatalf("change %d is %s, want a destination to duplicate", bad-1, dup)
	}
	changes := append(append(append([]ipvsnl.Change{}, table[:bad]...), dup), table[bad:]...)
	res := batch(t, c, changes)
	i, err := res.Failed()
	if i != bad || !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("first failure at %d (%v), want change %d with EEXIST", i, err, bad)
	}
	made, notSent := 0, 0
	for j, e := range res.Errs {
		switch {
		case j == bad:
		case e == nil:
			made++
		case errors.Is(e, ipvsnl.ErrNotSent):
			notSent++
			if j < 128 {
				t.Errorf("change %d in the failing chunk reported not sent", j)
			}
		default:
			t.Errorf("change %d: unexpected %v", j, e)
		}
	}
	if made != 127 || notSent != len(changes)-128 {
		t.Fatalf("made %d, not sent %d of %d: want the rest of the first chunk (127) made and the others not sent", made, notSent, len(changes))
	}
	// What the kernel has is exactly the first chunk without the duplicate.
	ref := testkit.NewNS(t, "bt-ref")
	hr := mobyHandle(t, ref)
	viaMoby(t, hr, table[:127])
	if want, got := dump(t, hr), dump(t, h); want != got {
		t.Fatalf("kernel table after the failed chunk:\n%s\nwant:\n%s", got, want)
	}
}
