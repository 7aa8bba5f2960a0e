package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary documents to the config loader (Parse, what
// Load does after reading the file). It must never panic or hang; every
// rejection must be a non-empty message; whatever it accepts must keep its
// source and be accepted again from that source (a config that loads once
// loads the same way on the next boot). Seeds: the lab configs and
// testdata/fuzz/FuzzParse and the hostile configs of TestHostileConfigs.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"lb1.yaml", "ha-lb1.yaml", "ha-lb2.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "qemu", "configs", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, c := range hostileCases { // the hostile configs operators and attackers write
		doc, _ := hostileDoc(c)
		f.Add([]byte(doc))
	}
	f.Add([]byte("version: 1\n"))
	f.Add([]byte("version: 1\nnetwork: {internal: {members: [eth1], addresses: [198.51.100.2/24]}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var cfg *Config
		var err error
		done := make(chan struct{})
		go func() { defer close(done); cfg, err = Parse(data) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Parse of a %d-byte document still running after 5s: %q", len(data), data)
		}
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Fatalf("rejected %q with an empty message", data)
			}
			return
		}
		if string(cfg.Source()) != string(data) {
			t.Fatalf("accepted config does not keep its source")
		}
		if _, err := Parse(cfg.Source()); err != nil {
			t.Fatalf("accepted once, rejected from its own source: %v", err)
		}
	})
}
