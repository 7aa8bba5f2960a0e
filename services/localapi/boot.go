package localapi

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// PathBoot is init's record of this boot: GET → BootTimes.
const PathBoot = "/v1/boot"

// BootPhase names one step of the boot. Init records them in this order.
type BootPhase string

// The boot phases. Each is the moment the step ended, counted from the
// kernel's start (CLOCK_BOOTTIME); PhaseInit is the kernel's handoff to
// /init, so it is the kernel's whole share.
const (
	PhaseInit       BootPhase = "init"        // /init started (kernel done)
	PhaseModules    BootPhase = "modules"     // the image's module list loaded
	PhaseConfig     BootPhase = "config"      // config chosen, read and its own modules loaded
	PhaseNetwork    BootPhase = "network"     // bonds, VLANs, addresses and routes set
	PhaseDaemons    BootPhase = "daemons"     // daemons launched
	PhaseReady      BootPhase = "ready"       // init's ready line
	PhaseFirstApply BootPhase = "first-apply" // lbd reported ready: first config applied
	PhaseVRRP       BootPhase = "vrrp"        // vrrpd reported ready: VRRP running
)

// BootPhases lists the phases in boot order.
var BootPhases = []BootPhase{PhaseInit, PhaseModules, PhaseConfig, PhaseNetwork, PhaseDaemons, PhaseReady, PhaseFirstApply, PhaseVRRP}

// BootMark is when one phase ended, since the kernel started.
type BootMark struct {
	Phase BootPhase     `json:"phase"`
	At    time.Duration `json:"at_ns"`
}

// BootTimes is init's record of this boot, marks in the order they
// happened. Complete is set once nothing more will be recorded.
type BootTimes struct {
	Marks    []BootMark `json:"marks"`
	Complete bool       `json:"complete"`
}

// At is when phase p ended (false when it was not recorded).
func (b BootTimes) At(p BootPhase) (time.Duration, bool) {
	for _, m := range b.Marks {
		if m.Phase == p {
			return m.At, true
		}
	}
	return 0, false
}

// KernelShare is the kernel's part: kernel start → /init.
func (b BootTimes) KernelShare() time.Duration {
	d, _ := b.At(PhaseInit)
	return d
}

// InitShare is init's part: /init → the last recorded phase.
func (b BootTimes) InitShare() time.Duration {
	if len(b.Marks) == 0 {
		return 0
	}
	return b.Marks[len(b.Marks)-1].At - b.KernelShare()
}

// InitStartedLine is the first thing init prints on the console, with the
// time since the kernel started; the QEMU lab times its arrival on the host
// clock (a cross-check of the guest's clock, which a starved TCG guest can
// get wrong).
const InitStartedLine = "fulcrum: init started"

// BootTimesPrefix starts init's console line with the boot times.
const BootTimesPrefix = "fulcrum: boot times:"

// ConsoleLine is the one-line form init prints on the console:
//
//	fulcrum: boot times: init=2.310 modules=3.102 ... (s since kernel start; kernel 2.31 s, init 3.09 s)
//
// ParseBootLine reads it back.
func (b BootTimes) ConsoleLine() string {
	var s strings.Builder
	s.WriteString(BootTimesPrefix)
	for _, m := range b.Marks {
		fmt.Fprintf(&s, " %s=%.3f", m.Phase, m.At.Seconds())
	}
	fmt.Fprintf(&s, " (s since kernel start; kernel %.2f s, init %.2f s)", b.KernelShare().Seconds(), b.InitShare().Seconds())
	return s.String()
}

var bootMarkRE = regexp.MustCompile(`^([a-z-]+)=([0-9]+\.[0-9]+)$`)

// ParseBootLine reads a ConsoleLine (the text from BootTimesPrefix to the
// end of the line). The result is Complete.
func ParseBootLine(line string) (BootTimes, error) {
	i := strings.Index(line, BootTimesPrefix)
	if i < 0 {
		return BootTimes{}, fmt.Errorf("boot times: no %q in %q", BootTimesPrefix, line)
	}
	rest := line[i+len(BootTimesPrefix):]
	rest, _, _ = strings.Cut(rest, "(")
	out := BootTimes{Complete: true}
	for _, f := range strings.Fields(rest) {
		m := bootMarkRE.FindStringSubmatch(f)
		if m == nil {
			return BootTimes{}, fmt.Errorf("boot times: %q is not phase=seconds", f)
		}
		s, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return BootTimes{}, fmt.Errorf("boot times: %q: %w", f, err)
		}
		out.Marks = append(out.Marks, BootMark{Phase: BootPhase(m[1]), At: time.Duration(s * float64(time.Second)).Round(time.Millisecond)})
	}
	if len(out.Marks) == 0 {
		return BootTimes{}, fmt.Errorf("boot times: no phases in %q", line)
	}
	return out, nil
}

// BootStep is one phase with how long it took: from the previous phase's
// end (the kernel's start for PhaseInit) to its own.
type BootStep struct {
	Phase BootPhase
	At    time.Duration // since kernel start
	Took  time.Duration
}

// Steps lists the recorded phases with the time each took.
func (b BootTimes) Steps() []BootStep {
	out := make([]BootStep, 0, len(b.Marks))
	var prev time.Duration
	for _, m := range b.Marks {
		out = append(out, BootStep{Phase: m.Phase, At: m.At, Took: m.At - prev})
		prev = m.At
	}
	return out
}

// Longest is the step after /init that took longest (what dominates init's
// share); false when there is none.
func (b BootTimes) Longest() (BootStep, bool) {
	var best BootStep
	found := false
	for _, s := range b.Steps() {
		if s.Phase != PhaseInit && (!found || s.Took > best.Took) {
			best, found = s, true
		}
	}
	return best, found
}
