package ipvs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSchedulersFromModulesDep(t *testing.T) {
	dir := t.TempDir()
	dep := strings.Join([]string{
		"kernel/net/netfilter/ipvs/ip_vs_rr.ko.xz: kernel/net/netfilter/ipvs/ip_vs.ko.xz",
		"kernel/net/netfilter/ipvs/ip_vs_wrr.ko: kernel/net/netfilter/ipvs/ip_vs.ko",
		"kernel/net/netfilter/ipvs/ip_vs_mh.ko.zst:",
		"kernel/net/netfilter/ipvs/ip_vs_ftp.ko: kernel/net/netfilter/ipvs/ip_vs.ko",
		"kernel/net/netfilter/ipvs/ip_vs_pe_sip.ko: kernel/net/netfilter/ipvs/ip_vs.ko",
		"kernel/net/netfilter/ipvs/ip_vs.ko: kernel/net/netfilter/nf_conntrack.ko",
		"kernel/net/ipv4/ipip.ko:",
	}, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/net/netfilter/ipvs/ip_vs_sh.ko\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Schedulers(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for s := range got {
		names = append(names, s)
	}
	want := map[string]bool{"rr": true, "wrr": true, "mh": true, "sh": true}
	if len(got) != len(want) {
		t.Fatalf("schedulers %v, want %v", names, want)
	}
	for s := range want {
		if !got[s] {
			t.Errorf("%s missing from %v", s, names)
		}
	}
	if _, err := Schedulers(t.TempDir()); err == nil {
		t.Error("a directory without modules.dep or modules.builtin gave a list")
	}
}
