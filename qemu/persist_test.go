package qemu

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/image/usbimg"
	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
	"github.com/fulcrum-lb/fulcrum/services/lbd"
)

// persistConfig is the stick's lb1 config with a marker comment, a virtual
// server whose first member has the given weight, and config_history 3 (so
// every save past the third prunes one).
func persistConfig(t *testing.T, base, name string, weight int) string {
	t.Helper()
	c := strings.Replace(base, "management:\n", "management:\n  config_history: 3\n", 1)
	if c == base {
		t.Fatal("lb1 config has no management section")
	}
	return fmt.Sprintf("# persist-test config %s\n%s\nvirtual_servers:\n  - {name: web, vip: 203.0.113.100, port: \"80\", pool: web}\n"+
		"pools:\n  web:\n    members:\n      - {address: 198.51.100.11, port: 80, weight: %d}\n      - {address: 198.51.100.12, port: 80}\n", name, c, weight)
}

// TestAppliedConfigPersistsRollsBackAndSurvivesPowerCuts boots lb1 from
// the kernel with the USB image as its disk (init finds the config
// partition), all boots on one copy of the image:
//
// apply A, apply B (B's weight in IPVS), rollback → A runs; disable a
// member. Then, with the store's writes slowed by a test pause (kernel
// argument fulcrum.test_store_pause), an apply of the other config is cut
// (QEMU killed) at a step of the save, three times, and each next boot must
// run one of the two configs, valid: the old one when cut half-way through
// the file, either once the file is fsynced but not its directory, the new
// one once both are (cut while old generations are deleted). The first
// boot after a cut also shows the rollback and the disabled member
// survived.
func TestAppliedConfigPersistsRollsBackAndSurvivesPowerCuts(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	image := usbImage(t)
	base, err := usbimg.ReadConfig(image)
	if err != nil {
		t.Fatal(err)
	}
	a, b := persistConfig(t, string(base), "A", 2), persistConfig(t, string(base), "B", 7)
	files := []cpioRecord{staticFile("/etc/fulcrum/persist-a.in", a+".\n"), staticFile("/etc/fulcrum/persist-b.in", b+".\n")}
	disk := []string{"-drive", "if=virtio,format=raw,file=" + image}
	weights := map[string]int{"A": 2, "B": 7}
	const pause = 200 // ms per store write step
	boot := func(pause int) *vm.VM {
		t.Helper()
		lab := appliance.NewLab(t)
		cmdline := "fulcrum.configpart=" + usbimg.ConfigLabel
		if pause > 0 {
			cmdline += fmt.Sprintf(" %s=%d", lbd.ParamTestStorePause, pause)
		}
		v := appliance.Boot(t, lab, img, appliance.Options{Node: 1, Files: files, Cmdline: cmdline, ExtraArgs: disk})
		ready, err := v.WaitReady(bootTimeout)
		if err != nil {
			t.Fatal(err)
		}
		lines := regexp.MustCompile(`(?m)^fulcrum: config.*$`).FindAllString(v.Console.Output(), -1)
		t.Logf("boot from the config partition: ready after %.1fs\n%s", ready.Seconds(), strings.Join(lines, "\n"))
		return v
	}
	run := func(v *vm.VM, cmd string) string {
		t.Helper()
		out, err := v.Run(cmd, 90*time.Second)
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		return out
	}
	// running checks the config lbd runs (its marker) and IPVS (the weight).
	running := func(v *vm.VM, name string, weight int) {
		t.Helper()
		if out := run(v, "lbctl config export"); !strings.Contains(out, "# persist-test config "+name+"\n") {
			h, _ := v.Run("lbctl config history", 60*time.Second)
			t.Fatalf("running config is not %s:\n%s\n%s", name, tail(out, 300), h)
		}
		re := regexp.MustCompile(fmt.Sprintf(`198\.51\.100\.11:80\s+\w+\s+%d\s`, weight))
		if out := run(v, "lbctl show vs"); !re.MatchString(out) {
			t.Fatalf("IPVS does not have config %s's weight %d:\n%s", name, weight, out)
		}
	}
	start := time.Now()

	// Boot 1: apply A, apply B, rollback → A; the replies say where it was
	// saved. Store writes pause at each step from here on (the apply and
	// rollback just take longer).
	v := boot(pause)
	if out := v.Console.Output(); !strings.Contains(out, "fulcrum: config: config.yaml on config partition") {
		t.Fatalf("first boot did not run config.yaml from the partition:\n%s", tail(out, 1500))
	}
	out := run(v, "lbctl config apply < /etc/fulcrum/persist-a.in")
	if !strings.Contains(out, "saved to the config partition "+usbimg.ConfigLabel) {
		t.Errorf("apply reply does not say it was saved on the partition:\n%s", out)
	}
	run(v, "lbctl config apply < /etc/fulcrum/persist-b.in")
	running(v, "B", 7)
	if out := run(v, "lbctl config rollback"); !strings.Contains(out, "rolled back 1") {
		t.Errorf("rollback reply: %s", out)
	}
	running(v, "A", 2)
	if out, err := v.Run("lbctl config rollback 9", 60*time.Second); err == nil || !strings.Contains(out, "no stored config 9 back") || !strings.Contains(out, "nothing changed") {
		t.Errorf("rollback 9: %v\n%s", err, out)
	}
	run(v, "lbctl member disable web 198.51.100.12:80")
	t.Logf("history after apply A, apply B, rollback:\n%s", run(v, "lbctl config history"))

	// Power cuts while saving the other config: cut at step, boot, expect
	// the old config, the new one, or either. The first boot after a cut
	// also shows the rollback to A and the member disable survived.
	cur := "A"
	for i, c := range []struct{ step, want string }{
		{"half-written", "old"},   // the file is incomplete: it cannot pass its checksum
		{"file-synced", "either"}, // the directory is not fsynced yet: its entry may be lost
		{"pruning", "new"},        // file and directory fsynced: the new config is there
	} {
		next := map[string]string{"A": "B", "B": "A"}[cur]
		v.Console.Send("lbctl config apply < /etc/fulcrum/persist-" + strings.ToLower(next) + ".in\n")
		if err := v.Console.ExpectString("config store test pause: "+c.step, 60*time.Second); err != nil {
			t.Fatalf("no %s step: %v", c.step, err)
		}
		v.Kill()
		v = boot(pause)
		got := cur
		if c.want != "old" {
			got = next
			if out := run(v, "lbctl config export"); c.want == "either" && strings.Contains(out, "# persist-test config "+cur+"\n") {
				got = cur
			}
		}
		running(v, got, weights[got])
		t.Logf("power cut at %q while saving %s: %s runs after the reboot", c.step, next, got)
		if i == 0 {
			if !regexp.MustCompile(`fulcrum: config: fulcrum/config-\d+\.yaml on config partition`).MatchString(v.Console.Output()) {
				t.Errorf("the boot did not run a stored config:\n%s", tail(v.Console.Output(), 1500))
			}
			if out := run(v, "lbctl show pool web"); !regexp.MustCompile(`198\.51\.100\.12:80\s+\S+\s+disabled`).MatchString(out) {
				t.Errorf("member disable did not survive the power cut:\n%s", out)
			}
		}
		cur = got
	}
	t.Logf("history at the end:\n%s", run(v, "lbctl config history"))
	t.Logf("persistence test: %.1fs of QEMU", time.Since(start).Seconds())
}
