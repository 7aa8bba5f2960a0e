package mgmtd

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// TLS files are checked where they are used (the image builder validates
// on another machine), and a missing one is reported like every other
// config problem: `field.path (line N): reason`.
func TestTLSFileMissingNamesFieldAndLine(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "api.crt")
	doc := `version: 1
network:
  failover: {members: [eth0], addresses: [192.0.2.1/25]}
  internal: {members: [eth1], addresses: [198.51.100.2/24]}
  external: {members: [eth2], addresses: [203.0.113.2/24]}
management:
  api:
    token: "a-token-of-16-chars-or-more"
    tls:
      cert: ` + missing + `
      key: ` + missing + `.key
`
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	_, err = TLSConfig(cfg)
	want := "management.api.tls.cert (line 10): stat " + missing + ": no such file or directory"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("TLSConfig with a missing certificate: %v, want %q", err, want)
	}
}
