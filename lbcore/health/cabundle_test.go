package health_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/health"
)

// TestCABundleReadWhereUsed: config validation reads no files, so the
// checker is what rejects a CA bundle it cannot use.
func TestCABundleReadWhereUsed(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{filepath.Join(dir, "missing.pem"), "cannot read CA bundle"},
		{garbage, "holds no PEM certificates"},
	} {
		m := config.Monitor{Type: config.MonitorHTTPS, Verify: true, CABundle: tc.file}
		m.ApplyDefaults()
		if err := m.Validate(); err != nil {
			t.Fatalf("validation should not read %s: %v", tc.file, err)
		}
		if _, err := health.NewChecker(m, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewChecker with %s: %v, want %q", tc.file, err, tc.want)
		}
		if err := health.CheckCABundle(tc.file); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckCABundle(%s): %v, want %q", tc.file, err, tc.want)
		}
	}
}
