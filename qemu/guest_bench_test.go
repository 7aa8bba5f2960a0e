//go:build bench

package qemu

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/qemu/guesttest"
)

// TestIPVSBenchReport runs lbcore/kernel/ipvs's benchmark report in a guest (1000
// VS x 10 members: cold apply, one-member change, no-op; beside Debian's
// ipvsadm-restore and ipvsadm -R, copied from the host with their
// libraries) and writes it to the file named by FULCRUM_IPVS_BENCH (e.g.
// out/ipvs-bench.md, the default). A measurement, not a test: built only
// with the bench tag (`make bench`), so test runs never see it.
func TestIPVSBenchReport(t *testing.T) {
	dst := os.Getenv("FULCRUM_IPVS_BENCH")
	if dst == "" {
		dst = "../out/ipvs-bench.md"
	}
	var tools []string
	for _, p := range []string{"/usr/sbin/ipvsadm", "/usr/sbin/ipvsadm-restore", "/bin/bash", "/usr/bin/grep"} {
		if _, err := os.Stat(p); err == nil {
			tools = append(tools, p)
		}
	}
	if len(tools) < 4 {
		t.Logf("ipvsadm, bash or grep missing on the host (apt-get install ipvsadm): no comparison")
		tools = nil
	}
	out := guesttest.Run(t, "github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs", guesttest.Options{
		Run:          "^TestGuestBenchReport$",
		Args:         []string{"-ipvs-bench-report=/tmp/ipvs-bench.md"},
		HostBinaries: tools,
		Timeout:      15 * time.Minute,
	})
	m := regexp.MustCompile(`(?s)@@IPVS-BENCH-BEGIN@@\r?\n(.*?)@@IPVS-BENCH-END@@`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("guest printed no report")
	}
	report := strings.ReplaceAll(m[1], "\r\n", "\n")
	report = strings.Replace(report, "\n\n", "\n\nGuest: appliance image under QEMU TCG (1 vCPU, no KVM), qemu TestIPVSBenchReport.\n\n", 1)
	if err := os.WriteFile(dst, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s:\n%s", dst, report)
}

// TestSyncBenchReport runs lbcore/kernel/ctnl's connection sync benchmark
// in a guest (issue 13: sync lag at a target of 1000 new connections per
// second, the sync path's CPU on the master, kernel memory per 100 000
// synced entries of each kind) and writes it to the file named by
// FULCRUM_SYNC_BENCH (default out/sync-bench.md). Built only with the
// bench tag (`make bench`).
func TestSyncBenchReport(t *testing.T) {
	dst := os.Getenv("FULCRUM_SYNC_BENCH")
	if dst == "" {
		dst = "../out/sync-bench.md"
	}
	out := guesttest.Run(t, "github.com/fulcrum-lb/fulcrum/lbcore/kernel/ctnl", guesttest.Options{
		Run:     "^TestSyncBenchReport$",
		Args:    []string{"-sync-bench-report=/tmp/sync-bench.md"},
		Timeout: 10 * time.Minute,
		MemMB:   1536,
	})
	m := regexp.MustCompile(`(?s)@@SYNC-BENCH-BEGIN@@\r?\n(.*?)@@SYNC-BENCH-END@@`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("guest printed no report")
	}
	report := strings.ReplaceAll(m[1], "\r\n", "\n")
	report = strings.Replace(report, "\n\n", "\n\nGuest: appliance image under QEMU TCG (no KVM), qemu TestSyncBenchReport.\n\n", 1)
	if err := os.WriteFile(dst, []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s:\n%s", dst, report)
}
