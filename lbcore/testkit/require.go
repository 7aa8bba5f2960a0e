package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// EnvCI is the environment variable that marks a CI run (.ci/run sets
// CI=true). In CI a missing capability fails the test instead of skipping
// it, so a broken CI machine cannot pass by skipping everything.
const EnvCI = "CI"

// InCI reports whether the tests run in CI.
func InCI() bool {
	switch strings.ToLower(os.Getenv(EnvCI)) {
	case "true", "1", "yes":
		return true
	}
	return false
}

// A Requirement checks one capability the test needs; it returns nil when
// it is there, or an error saying what is missing.
type Requirement func() error

// Root requires running as root (network namespaces, raw sockets,
// netlink changes).
func Root() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root (running as uid %d)", os.Geteuid())
	}
	return nil
}

// Tool requires a program: a bare name is looked up in PATH, a path must
// exist and be executable.
func Tool(name string) Requirement {
	return func() error {
		if filepath.IsAbs(name) {
			fi, err := os.Stat(name)
			if err != nil {
				return fmt.Errorf("needs %s: %w", name, err)
			}
			if fi.Mode()&0o111 == 0 {
				return fmt.Errorf("needs %s to be executable (mode %s)", name, fi.Mode())
			}
			return nil
		}
		if _, err := exec.LookPath(name); err != nil {
			return fmt.Errorf("needs %s in PATH: %w", name, err)
		}
		return nil
	}
}

// Path requires a file or directory to exist; why says what it proves
// (e.g. Path("/proc/net/ip_vs", "a kernel with IPVS")).
func Path(path, why string) Requirement {
	return func() error {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("needs %s (%s): %w", why, path, err)
		}
		return nil
	}
}

// Require checks every requirement. When one is missing it skips the test
// on a developer machine and fails it in CI (see InCI), naming what is
// missing.
func Require(t testing.TB, reqs ...Requirement) {
	t.Helper()
	var missing []string
	for _, r := range reqs {
		if err := r(); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) > 0 {
		Missing(t, "%s", strings.Join(missing, "; "))
	}
}

// Missing reports a capability the test found missing while running (for
// checks Require cannot make up front, e.g. a tunnel device that only
// appears in a namespace): a skip on a developer machine, a failure in CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("missing capability (fails because %s=true): %s", EnvCI, msg)
	}
	t.Skipf("missing capability: %s (in CI this fails)", msg)
}
