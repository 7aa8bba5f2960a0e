package localapi

import (
	"strings"
	"testing"
	"time"
)

// TestBootLineRoundTrip: the console line init prints reads back to the
// same marks (to the millisecond), with the shares split at /init.
func TestBootLineRoundTrip(t *testing.T) {
	in := BootTimes{Complete: true, Marks: []BootMark{
		{PhaseInit, 2311 * time.Millisecond}, {PhaseModules, 3102 * time.Millisecond}, {PhaseConfig, 3150 * time.Millisecond},
		{PhaseNetwork, 3900 * time.Millisecond}, {PhaseDaemons, 3905 * time.Millisecond}, {PhaseReady, 3990 * time.Millisecond},
		{PhaseFirstApply, 5200 * time.Millisecond}, {PhaseVRRP, 5432 * time.Millisecond}}}
	line := in.ConsoleLine()
	if !strings.HasPrefix(line, BootTimesPrefix+" init=2.311 modules=3.102") || !strings.HasSuffix(line, "(s since kernel start; kernel 2.31 s, init 3.12 s)") {
		t.Errorf("line %q", line)
	}
	got, err := ParseBootLine("lb1 console noise " + line)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Marks) != len(in.Marks) {
		t.Fatalf("parsed %+v, want %+v", got, in)
	}
	for i := range in.Marks {
		if got.Marks[i] != in.Marks[i] {
			t.Errorf("mark %d = %+v, want %+v", i, got.Marks[i], in.Marks[i])
		}
	}
	if got.KernelShare() != 2311*time.Millisecond || got.InitShare() != 3121*time.Millisecond {
		t.Errorf("shares kernel %v init %v", got.KernelShare(), got.InitShare())
	}
}

// TestParseBootLineRejectsGarbage names what it could not read.
func TestParseBootLineRejectsGarbage(t *testing.T) {
	for _, line := range []string{
		"fulcrum: ready",
		BootTimesPrefix + " (s since kernel start)",
		BootTimesPrefix + " init=two modules=3.1",
	} {
		if _, err := ParseBootLine(line); err == nil {
			t.Errorf("ParseBootLine(%q) = nil error", line)
		}
	}
}
