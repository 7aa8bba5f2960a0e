package vm

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
)

// The framing survives daemon lines landing anywhere in the output (also
// glued in front of a tagged line, as a kernel message without its
// newline would be), and the echo of the typed line (which the console
// shows first) is never taken as output.
func TestTaggedOutputIgnoresInterleavedLines(t *testing.T) {
	typed := strings.TrimSuffix(RunLine(7, "cat /proc/net/ip_vs"), "\n")
	framed := typed + "\r\n" + "@@B7@@\r\n" +
		"lbd| member 198.51.100.11:80 up\r\n" +
		"@@7|TCP  CB007164:0050 wlc\r\n" +
		"[   12.5] kernel says@@7|  -> C633640B:0050      Masq    1      0          0\r\n" +
		"lbd| apply done\r\n@@7|\r\n"
	got := TaggedOutput(7, framed)
	want := "TCP  CB007164:0050 wlc\n  -> C633640B:0050      Masq    1      0          0\n\n"
	if got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
	if strings.Contains(typed, "@@7|") || strings.Contains(typed, "@@B7@@") || strings.Contains(typed, "@@E7@@") {
		t.Fatalf("the typed line contains a tag or marker itself: %s", typed)
	}
}

// The typed line, run by the guest's shell (u-root's gosh, built here from
// the same module version the image uses) and by sh, prints the command's
// lines tagged (a last line without newline too) and its exit status after
// the end marker.
func TestRunLineInTheGuestShell(t *testing.T) {
	testkit.Require(t, testkit.Tool("go"), testkit.Tool("sh"))
	gosh := filepath.Join(t.TempDir(), "gosh")
	if out, err := exec.Command("go", "build", "-o", gosh, "github.com/u-root/u-root/cmds/core/gosh").CombinedOutput(); err != nil {
		t.Fatalf("building gosh: %v\n%s", err, out)
	}
	line := RunLine(3, "printf 'a b\\n\\n  c\\\\d\\nlast'; cat /nonexistent-file")
	for _, shell := range []string{gosh, "sh"} {
		out, _ := exec.Command(shell, "-c", line).CombinedOutput()
		s := string(out)
		if !regexp.MustCompile(`@@E3@@[1-9][0-9]*@@`).MatchString(s) {
			t.Fatalf("%s: no end marker with cat's failure status:\n%s", shell, s)
		}
		got := TaggedOutput(3, s)
		if !strings.HasPrefix(got, "a b\n\n  c\\d\nlast") || !strings.Contains(got, "nonexistent-file") {
			t.Fatalf("%s: output %q, want the printf lines then cat's error", shell, got)
		}
	}
}
