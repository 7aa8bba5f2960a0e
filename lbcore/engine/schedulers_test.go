package engine

import (
	"strings"
	"testing"
)

// TestCheckSchedulers: a VS asking for a scheduler the kernel lacks is
// refused with its field path and line, naming what the kernel has.
func TestCheckSchedulers(t *testing.T) {
	cfg := parse(t, testLB)
	have := map[string]bool{}
	for i := range cfg.VirtualServers {
		have[string(cfg.VirtualServers[i].Scheduler)] = true
	}
	if err := CheckSchedulers(cfg, have, "6.1.0-test"); err != nil {
		t.Fatalf("every scheduler present: %v", err)
	}
	missing := string(cfg.VirtualServers[0].Scheduler)
	delete(have, missing)
	have["mh"] = true
	err := CheckSchedulers(cfg, have, "6.1.0-test")
	if err == nil {
		t.Fatalf("scheduler %q missing from the kernel: accepted", missing)
	}
	msg := err.Error()
	if !strings.Contains(msg, "virtual_servers[0].scheduler (line ") || !strings.Contains(msg, "not in kernel 6.1.0-test") || !strings.Contains(msg, "mh") {
		t.Fatalf("error %q does not name the field, its line, the kernel and what it has", msg)
	}
}
