package qemu

import (
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/services/console"
)

// TestConsoleFailsClosedAndRecovery boots a config that does not parse.
// The appliance goes to maintenance and, with no password hash it can
// trust, nobody logs in at the console (before: the console let admin in
// without a password, and `shell` is root). Booted again with
// fulcrum.recovery=1 (what an admin types at the boot loader), init
// announces recovery mode and admin gets in without a password, to fix
// the config.
func TestConsoleFailsClosedAndRecovery(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(readConfig(t, "lb1.yaml")), "management:\n", "management: [\n", 1)

	t.Run("locked", func(t *testing.T) {
		lab := appliance.NewLab(t)
		v := appliance.Boot(t, lab, img, appliance.Options{Node: 1, Config: []byte(broken), ManualLogin: true})
		if err := v.Console.ExpectString("fulcrum: MAINTENANCE", bootTimeout); err != nil {
			t.Fatal(err)
		}
		if err := v.Console.ExpectString(console.LoginDisabled+": config /etc/fulcrum/config.yaml does not parse", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		expectRe(t, v, console.LoginPrompt, 30*time.Second)
		v.Console.Send("admin\r")
		expectRe(t, v, `Login incorrect`, 30*time.Second)
		expectRe(t, v, console.LoginPrompt, 30*time.Second)
		if out := v.Console.Output(); strings.Contains(out, console.LoggedIn) || strings.Contains(out, console.PasswordPrompt) {
			t.Fatalf("a console with no usable password hash let admin in or asked for a password:\n%s", out[max(0, len(out)-1500):])
		}
	})

	t.Run("recovery", func(t *testing.T) {
		lab := appliance.NewLab(t)
		v := appliance.Boot(t, lab, img, appliance.Options{Node: 1, Config: []byte(broken), ManualLogin: true, Cmdline: "fulcrum.recovery=1"})
		if err := v.Console.ExpectString("RECOVERY MODE (fulcrum.recovery=1 on the kernel command line)", bootTimeout); err != nil {
			t.Fatal(err)
		}
		if err := v.Console.ExpectString(console.RecoveryWarn, 60*time.Second); err != nil {
			t.Fatal(err)
		}
		expectRe(t, v, console.LoginPrompt, 30*time.Second)
		v.Console.Send("admin\r")
		expectRe(t, v, `Logged in to the Fulcrum CLI\.`, 30*time.Second)
		expectRe(t, v, `> `, 30*time.Second)
		v.Console.Send("shell\r")
		expectRe(t, v, `\$ `, 30*time.Second)
		v.Console.Send("echo recovered-$((6*7))\r")
		expectRe(t, v, `recovered-42`, 30*time.Second)
	})
}
