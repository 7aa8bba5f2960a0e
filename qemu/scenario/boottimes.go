package scenario

import (
	"fmt"
	"regexp"
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
func (h *HA) reportBootTimes(n int, qemuToReady time.Duration) error {
	bt, err := h.BootTimes(n, 60*time.Second)
	if err != nil {
		return err
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
	if l, ok := bt.Longest(); ok {
		h.Report.Note("%s boot: the longest step after /init is %s (%.2f s).", NodeName(n), phaseWhat[l.Phase], l.Took.Seconds())
	}
	h.t.Logf("%s", bt.ConsoleLine())
	return nil
}
