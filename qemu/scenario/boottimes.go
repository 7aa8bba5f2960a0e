package scenario

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

// bootLineRE is init's boot-times console line (localapi.ConsoleLine).
var bootLineRE = regexp.MustCompile(regexp.QuoteMeta(localapi.BootTimesPrefix) + `[^\n]*\n`)

// phaseWhat says what each boot step covers, for the report.
var phaseWhat = map[localapi.BootPhase]string{
	localapi.PhaseInit:       "kernel: kernel start → /init",
	localapi.PhaseModules:    "module loading (the image's list)",
	localapi.PhaseConfig:     "config: choose, read, config's own modules",
	localapi.PhaseNetwork:    "network setup: bonds, VLANs, addresses, routes",
	localapi.PhaseDaemons:    "daemon start (launch)",
	localapi.PhaseReady:      "console, ready line",
	localapi.PhaseFirstApply: "first apply (lbd ready)",
	localapi.PhaseVRRP:       "VRRP start (vrrpd ready)",
}

// hostMarks are when init's first line and its boot-times line reached the
// host, since QEMU started (host clock).
type hostMarks struct {
	initStarted, bootLine time.Duration
	err                   error
}

// watchBoot times, on the host clock, the arrival of node n's init-started
// and boot-times lines (polled every 50 ms, so within 50 ms).
func (h *HA) watchBoot(n int, timeout time.Duration) <-chan hostMarks {
	out := make(chan hostMarks, 1)
	v := h.Node(n)
	go func() {
		var m hostMarks
		deadline := time.Now().Add(timeout)
		for m.bootLine == 0 {
			o := v.Console.Output()
			if m.initStarted == 0 && strings.Contains(o, localapi.InitStartedLine) {
				m.initStarted = time.Since(v.Started)
			}
			if m.initStarted != 0 && strings.Contains(o, localapi.BootTimesPrefix) {
				m.bootLine = time.Since(v.Started)
			}
			if time.Now().After(deadline) {
				m.err = fmt.Errorf("%s: init-started and boot-times lines not both on the console within %v", NodeName(n), timeout)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		out <- m
	}()
	return out
}

// BootTimes waits (up to timeout) for node n's boot-times line on its
// console and reads it. It does not move the console's read cursor.
func (h *HA) BootTimes(n int, timeout time.Duration) (localapi.BootTimes, error) {
	deadline := time.Now().Add(timeout)
	for {
		if m := bootLineRE.FindString(h.Node(n).Console.Output()); m != "" {
			return localapi.ParseBootLine(m)
		}
		if time.Now().After(deadline) {
			return localapi.BootTimes{}, fmt.Errorf("%s: no %q line on the console within %v", NodeName(n), localapi.BootTimesPrefix, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// reportBootTimes adds node n's boot phases to the report: before the
// kernel (host clock: QEMU start → ready line, less the guest's time to the
// ready line), then each phase init recorded, and init's share against the
// kernel's.
func (h *HA) reportBootTimes(n int, qemuToReady time.Duration, watch <-chan hostMarks) error {
	bt, err := h.BootTimes(n, 60*time.Second)
	if err != nil {
		return err
	}
	var host hostMarks
	select {
	case host = <-watch:
	case <-time.After(10 * time.Second):
		host.err = fmt.Errorf("%s: host-clock watch did not finish 10 s after the boot-times line", NodeName(n))
	}
	if host.err != nil {
		return host.err
	}
	ready, ok := bt.At(localapi.PhaseReady)
	vrrp, ok2 := bt.At(localapi.PhaseVRRP)
	if !ok || !ok2 {
		return fmt.Errorf("%s boot times %+v lack the ready or vrrp phase", NodeName(n), bt)
	}
	scen := fmt.Sprintf("boot phases, %s (first boot; guest CLOCK_BOOTTIME)", NodeName(n))
	pre := qemuToReady - ready
	h.Report.Add(scen, "QEMU start → kernel start (firmware, loader; host clock less guest time)", "%.2f s", pre.Seconds())
	for _, s := range bt.Steps() {
		what := phaseWhat[s.Phase]
		if what == "" {
			what = string(s.Phase)
		}
		h.Report.Add(scen, what, "%.2f s (at %.2f s)", s.Took.Seconds(), s.At.Seconds())
	}
	h.Report.Add(scen, "QEMU start → VRRP running", "%.2f s", (pre + vrrp).Seconds())
	k, i := bt.KernelShare(), bt.InitShare()
	h.Report.Add(scen, "init's share (/init → VRRP running) vs the kernel's (kernel start → /init)", "%.2f s vs %.2f s (%.2f×; aim ≤ 1×)", i.Seconds(), k.Seconds(), i.Seconds()/k.Seconds())
	hk, hi := host.initStarted, host.bootLine-host.initStarted
	h.Report.Add(scen, "host clock: QEMU start → init's first line (firmware, loader, kernel)", "%.2f s", hk.Seconds())
	h.Report.Add(scen, "host clock: init's first line → boot-times line (init's share)", "%.2f s (%.2f× the part before /init)", hi.Seconds(), hi.Seconds()/hk.Seconds())
	if d := (i - hi).Seconds(); d > 1 || d < -1 {
		h.Report.Note("%s: the guest clock and the host clock disagree by %.1f s on init's share: the TCG guest was starved (host load); trust the host clock.", NodeName(n), d)
	}
	if l, ok := bt.Longest(); ok {
		h.Report.Note("%s boot: the longest step after /init is %s (%.2f s).", NodeName(n), phaseWhat[l.Phase], l.Took.Seconds())
	}
	h.t.Logf("%s", bt.ConsoleLine())
	return nil
}
