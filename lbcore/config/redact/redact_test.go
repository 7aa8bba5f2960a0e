package redact

import (
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"go.yaml.in/yaml/v3"
)

const cfg = `version: 1
hostname: lb1 # the node
management:
  console:
    password_hash: "$2a$10$oNRa3xwoTZDbKXuGAXWJDOf2fNO3b545OnrK75alM.qhaXk9zGCZm"
  api: {listen: internal, port: 8080, token: "s3cret-token-0123456789"}
other:
  - {token_sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae}
anchored: &a {token: "anchored-secret-0123"}
alias: *a
vrrp: {peers: [192.0.2.2], sync_key: "peer-sync-key-0123456789"}
`

func TestConfigHidesSecrets(t *testing.T) {
	out, err := Config([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, secret := range []string{"oNRa3xwoTZDbKXuGAXWJ", "s3cret-token", "2c26b46b68ff", "anchored-secret", "peer-sync-key"} {
		if strings.Contains(s, secret) {
			t.Errorf("secret %q shown:\n%s", secret, s)
		}
	}
	if strings.Count(s, Marker) != 5 {
		t.Errorf("want 5 markers:\n%s", s)
	}
	var back map[string]any
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatalf("redacted config does not parse: %v\n%s", err, s)
	}
	if back["hostname"] != "lb1" || !strings.Contains(s, "# the node") {
		t.Errorf("the rest of the config changed:\n%s", s)
	}
	if _, err := Config([]byte("management: [\n  token: x")); err == nil {
		t.Error("an unparsable config was shown")
	}
}

// A redacted config sent back to apply is refused on the redacted fields:
// the marker never silently becomes the token or the password hash.
func TestRedactedConfigDoesNotValidate(t *testing.T) {
	base := "version: 1\nnetwork:\n  failover: {members: [eth0]}\n  internal: {members: [eth1], addresses: [198.51.100.2/24]}\n  external: {members: [eth2]}\n"
	for _, mgmt := range []string{
		"management:\n  api: {token: \"s3cret-token-0123456789\"}\n",
		"management:\n  api: {token_sha256: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae}\n",
		"management:\n  console: {password_hash: \"$2a$10$oNRa3xwoTZDbKXuGAXWJDOf2fNO3b545OnrK75alM.qhaXk9zGCZm\"}\n",
	} {
		if _, err := config.Parse([]byte(base + mgmt)); err != nil {
			t.Fatalf("the original does not validate: %v", err)
		}
		red, err := Config([]byte(base + mgmt))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := config.Parse(red); err == nil || !strings.Contains(err.Error(), "management.") {
			t.Errorf("redacted config accepted or refused for another reason: %v\n%s", err, red)
		}
	}
}
