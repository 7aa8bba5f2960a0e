package config

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestManagementSectionValidation(t *testing.T) {
	base := "version: 1\nnetwork:\n  failover: {members: [eth0]}\n  internal: {members: [eth1], addresses: [198.51.100.2/24]}\n  external: {members: [eth2]}\n"
	for yaml, want := range map[string]string{
		"management:\n  console: {password_hash: plain}\n":  "management.console.password_hash (line 7): not a bcrypt hash",
		"management:\n  api: {listen: external}\n":          "management.api.listen (line 7): the API never listens on the External side",
		"management:\n  api: {listen: management}\n":        "management needs a management NIC",
		"management:\n  api: {token: short}\n":              "management.api.token (line 7): too short",
		"management:\n  api: {token_sha256: abc}\n":         "not a hex SHA-256",
		"management:\n  syslog: {target: \"http://x:1\"}\n": "want udp://host:port or tcp://host:port",
		"management:\n  log: {format: xml}\n":               "\"xml\" is not text or json",
		"management:\n  api: {tls: {cert: /a.crt}}\n":       "management.api.tls.key",
	} {
		_, err := Parse([]byte(base + yaml))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
	c, err := Parse([]byte(base + "management:\n  console: {password_hash: \"$2a$10$oNRa3xwoTZDbKXuGAXWJDOf2fNO3b545OnrK75alM.qhaXk9zGCZm\"}\n  api: {token: \"0123456789abcdef\"}\n  syslog: {target: \"udp://198.51.100.11\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Access.API.Listen != ListenInternal || c.Access.API.Port != 8080 || c.Access.Log.Format != "text" || c.Access.Log.RingLines != 2000 {
		t.Errorf("defaults: %+v", c.Access)
	}
}

// A hash of cost 4 is cheap to crack; one of cost 31 makes each login take
// days of CPU; a hash with a mangled cost field cannot be checked at all.
func TestPasswordHashCostRange(t *testing.T) {
	good := "$2a$10$oNRa3xwoTZDbKXuGAXWJDOf2fNO3b545OnrK75alM.qhaXk9zGCZm"
	if err := CheckPasswordHash(good); err != nil {
		t.Fatalf("cost 10: %v", err)
	}
	cheap, err := bcrypt.GenerateFromPassword([]byte("pw"), 4)
	if err != nil {
		t.Fatal(err)
	}
	for h, want := range map[string]string{
		string(cheap):                            "bcrypt cost 4 is outside 10..14",
		strings.Replace(good, "$10$", "$31$", 1): "bcrypt cost 31 is outside 10..14",
		strings.Replace(good, "$10$", "$1x$", 1): "not a usable bcrypt hash",
		"":                                       "not a bcrypt hash",
	} {
		if err := CheckPasswordHash(h); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", h, err, want)
		}
		base := "version: 1\nnetwork:\n  failover: {members: [eth0]}\n  internal: {members: [eth1], addresses: [198.51.100.2/24]}\n  external: {members: [eth2]}\n"
		if h == "" {
			continue
		}
		if _, err := Parse([]byte(base + "management:\n  console: {password_hash: \"" + h + "\"}\n")); err == nil || !strings.Contains(err.Error(), "management.console.password_hash") {
			t.Errorf("config with hash %q: %v", h, err)
		}
	}
}
