package notify

import (
	"strings"
	"testing"
)

// TestReadKeepsKnownMessagesAndSkipsTheRest: unknown lines and a line far
// over the cap are skipped, and reading goes on after them.
func TestReadKeepsKnownMessagesAndSkipsTheRest(t *testing.T) {
	in := "READY=1\nSTATUS=hi\n" + strings.Repeat("W", 10000) + "WATCHDOG=1\nWATCHDOG=1\n"
	var got []Message
	Read(strings.NewReader(in), func(m Message) { got = append(got, m) })
	if len(got) != 2 || got[0] != Ready || got[1] != Heartbeat {
		t.Fatalf("read %q, want READY then one WATCHDOG (the other was the tail of the long line)", got)
	}
}

func TestFromEnvRejectsBadValues(t *testing.T) {
	for _, env := range []map[string]string{{EnvFD: "x"}, {EnvFD: "-1"}, {EnvFD: "987"}, {EnvFD: "0", EnvWatchdog: "soon"}, {EnvFD: "0", EnvWatchdog: "-3s"}} {
		if n, err := FromEnv(func(k string) string { return env[k] }); err == nil {
			t.Errorf("env %v gave notifier %+v, want an error", env, n)
		}
	}
	if n, err := FromEnv(func(string) string { return "" }); n != nil || err != nil {
		t.Fatalf("no env: %v %v, want no notifier and no error", n, err)
	}
	var none *Notifier
	if none.Send(Ready) || none.Watchdog() != 0 {
		t.Fatal("a nil notifier must discard")
	}
}
