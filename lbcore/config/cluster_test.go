package config

import (
	"os"
	"strings"
	"testing"
)

// The two lab nodes' configs differ only in node sections, so their
// cluster hashes match; a changed virtual server changes it; merging lb1's
// cluster sections into lb2's file keeps lb2's node sections.
func TestClusterPartAndMerge(t *testing.T) {
	lb1, err := os.ReadFile("../../qemu/configs/ha-lb1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lb2, err := os.ReadFile("../../qemu/configs/ha-lb2.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h1, err := ClusterHash(lb1)
	if err != nil {
		t.Fatal(err)
	}
	h2, _ := ClusterHash(lb2)
	if h1 != h2 || len(h1) != 64 {
		t.Fatalf("lab nodes' cluster hashes differ: %s %s", h1, h2)
	}
	// Comments and layout do not count.
	if h, _ := ClusterHash([]byte(strings.ReplaceAll(string(lb1), "\n", " # c\n"))); h != h1 {
		t.Errorf("a comment changed the hash")
	}
	next := strings.Replace(string(lb1), "scheduler: rr", "scheduler: wrr", 1)
	if next == string(lb1) {
		t.Fatal("no scheduler to change")
	}
	hn, _ := ClusterHash([]byte(next))
	if hn == h1 {
		t.Fatal("a changed scheduler kept the hash")
	}
	part, err := ClusterPart([]byte(next))
	if err != nil {
		t.Fatal(err)
	}
	merged, err := MergeCluster(lb2, part)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(merged)
	if err != nil {
		t.Fatalf("merged config invalid: %v\n%s", err, merged)
	}
	if cfg.Hostname != "lb2" || cfg.VRRP.Priority != 100 || cfg.Network.Failover.Addresses[0].String() != "192.0.2.2/25" {
		t.Errorf("lb2's node sections changed: host %s priority %d failover %v", cfg.Hostname, cfg.VRRP.Priority, cfg.Network.Failover.Addresses)
	}
	if hm, _ := ClusterHash(merged); hm != hn {
		t.Errorf("merged hash %s, want the offered %s", hm, hn)
	}
	if _, err := MergeCluster(lb2, []byte("network: {}\n")); err == nil {
		t.Error("an offered node section was merged")
	}
	// A cluster section the offer lacks goes away.
	merged, err = MergeCluster(lb2, []byte("pools: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(merged), "virtual_servers") {
		t.Errorf("virtual_servers kept though the offer has none")
	}
}

func TestSyncKeyValidation(t *testing.T) {
	b, err := os.ReadFile("../../qemu/configs/ha-lb1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, "  sync_key:") {
			kept = append(kept, l)
		}
	}
	base := strings.Join(kept, "\n")
	with := func(key string) error {
		_, err := Parse([]byte(strings.Replace(base, "  peers: [192.0.2.2]", "  peers: [192.0.2.2]\n  sync_key: \""+key+"\"", 1)))
		return err
	}
	if err := with("0123456789abcdef0123"); err != nil {
		t.Fatalf("a good key refused: %v", err)
	}
	for _, bad := range []string{"short", "<redacted>"} {
		err := with(bad)
		if err == nil || !strings.Contains(err.Error(), "vrrp.sync_key (line ") {
			t.Errorf("key %q: %v", bad, err)
		}
	}
}
