//go:build bench

package qemu

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/image/build"
	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/scenario"
)

// TestBootBenchReport boots the HA lab once and writes lb1's boot phases
// (guest clock, cross-checked on the host clock: init's share against the
// kernel's) and the image's size by contributor to FULCRUM_BOOT_BENCH
// (default ../out/boot-bench.md). A measurement, built only with the bench
// tag.
func TestBootBenchReport(t *testing.T) {
	dst := os.Getenv("FULCRUM_BOOT_BENCH")
	if dst == "" {
		dst = "../out/boot-bench.md"
	}
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	rep := scenario.NewReport("Boot time and image size (TestBootBenchReport)")
	scenario.Up(t, scenario.Options{Report: rep})
	sizes, err := build.MeasureInitramfs(img.Initramfs, 8)
	if err != nil {
		t.Fatal(err)
	}
	k, err := os.Stat(img.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	i, err := os.Stat(img.Initramfs)
	if err != nil {
		t.Fatal(err)
	}
	if err := build.CheckBudget(k.Size(), i.Size(), build.MaxBootImageBytes, sizes); err != nil {
		t.Error(err)
	}
	var b strings.Builder
	b.WriteString("# Boot time and image size\n\n")
	b.WriteString("lb1 of the HA lab (qemu/configs/ha-lb1.yaml) under QEMU TCG, 1 vCPU, booted beside lb2. Phase times are init's\n")
	b.WriteString("record (CLOCK_BOOTTIME, `lbctl show boot`); the host-clock rows time the console lines' arrival.\n\n")
	md := rep.Markdown()
	md = md[strings.Index(md, "\n")+1:] // the section title
	b.WriteString(strings.TrimLeft(md, "\n"))
	b.WriteString("\n## Image size\n\n")
	b.WriteString(sizes.Markdown(k.Size(), i.Size(), build.MaxBootImageBytes))
	if err := os.WriteFile(dst, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	fmt.Println(b.String())
}
