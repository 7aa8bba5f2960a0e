package qemu

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/vm"
)

// mgmtLB is lb1.yaml plus one NAT virtual server over two members (the
// members need not exist: the pool has no monitor, so both are in IPVS).
const mgmtLB = `
virtual_servers:
  - name: web
    vip: 203.0.113.100
    port: "80"
    mode: nat
    pool: web
pools:
  web:
    members:
      - {address: 198.51.100.11, port: 80}
      - {address: 198.51.100.12, port: 80, weight: 3}
`

func mgmtConfig(t *testing.T, extra string) []byte {
	return []byte(string(readConfig(t, "lb1.yaml")) + mgmtLB + extra)
}

// expectRe waits for a regexp on the console.
func expectRe(t *testing.T, v *vm.VM, re string, timeout time.Duration) []string {
	t.Helper()
	m, err := v.Console.Expect(regexp.MustCompile(re), timeout)
	if err != nil {
		t.Fatalf("console: %v", err)
	}
	return m
}

// cli types one CLI line and waits for the next prompt, returning what was
// printed in between.
func cli(t *testing.T, v *vm.VM, line string) string {
	t.Helper()
	if err := v.Console.Send(line + "\r"); err != nil {
		t.Fatal(err)
	}
	return expectRe(t, v, `(?s)^(.*?)\nlb1> `, 60*time.Second)[1]
}

// TestConsoleLoginAndCLI drives the serial console by hand: a wrong
// password is refused, the right one gives the CLI; Tab completes; show vs
// prints the ipvsadm -Ln layout with the configured members; member
// disable puts a member at weight 0 (drain) and a bad member name changes
// nothing; a pasted invalid config is rejected naming the field; show
// interfaces, show log, show vrrp answer; shell gives the shell, where
// `lbctl` runs one command.
func TestConsoleLoginAndCLI(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	lab := appliance.NewLab(t)
	v := appliance.Boot(t, lab, img, appliance.Options{Node: 1, Config: mgmtConfig(t, ""), ManualLogin: true})
	if _, err := v.WaitReady(bootTimeout); err != nil {
		t.Fatal(err)
	}
	expectRe(t, v, `lb1 login: `, 60*time.Second)
	v.Console.Send("admin\r")
	expectRe(t, v, `Password: `, 30*time.Second)
	v.Console.Send("not-the-password\r")
	expectRe(t, v, `Login incorrect`, 60*time.Second)
	if strings.Contains(v.Console.Output(), "not-the-password") {
		t.Error("the password was echoed on the console")
	}
	expectRe(t, v, `lb1 login: `, 30*time.Second)
	v.Console.Send("admin\r")
	expectRe(t, v, `Password: `, 30*time.Second)
	v.Console.Send(appliance.LabPassword + "\r")
	expectRe(t, v, `Logged in to the Fulcrum CLI\.`, 60*time.Second)
	expectRe(t, v, `lb1> `, 30*time.Second)

	// Tab completion: "sh" is ambiguous (shell, show): both are listed;
	// "sho" completes to "show ", "show vs" is then typed out.
	v.Console.Send("sh\t")
	expectRe(t, v, `shell  show\r?\nlb1> sh`, 10*time.Second)
	v.Console.Send("o\t")
	expectRe(t, v, `^ow $`, 10*time.Second) // "sho" + the completed "w "
	v.Console.Send("vs\r")
	out := expectRe(t, v, `(?s)^(.*?)\nlb1> `, 60*time.Second)[1]
	for _, re := range []string{
		`(?m)^IP Virtual Server version \d+\.\d+\.\d+ \(size=\d+\)`,
		`(?m)^Prot LocalAddress:Port Scheduler Flags`,
		`(?m)^TCP  203\.0\.113\.100:80 wrr persistent 600`,
		`(?m)^  -> 198\.51\.100\.11:80\s+Masq\s+1\s+0\s+0`,
		`(?m)^  -> 198\.51\.100\.12:80\s+Masq\s+3\s+0\s+0`,
		`(?m)^Prot LocalAddress:Port\s+Conns\s+InPkts\s+OutPkts\s+InBytes\s+OutBytes`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("show vs: no %s in:\n%s", re, out)
		}
	}

	out = cli(t, v, "member disable web 198.51.100.99")
	if !strings.Contains(out, "% error: pool web has no member \"198.51.100.99\"") {
		t.Errorf("bad member: %q", out)
	}
	out = cli(t, v, "member disable nosuch 198.51.100.11")
	if !strings.Contains(out, "% error: no pool \"nosuch\"") {
		t.Errorf("bad pool: %q", out)
	}
	out = cli(t, v, "member disable web 198.51.100.11")
	if !strings.Contains(out, "disabled: weight 0") {
		t.Fatalf("member disable: %q", out)
	}
	out = cli(t, v, "show vs")
	if !regexp.MustCompile(`(?m)^  -> 198\.51\.100\.11:80\s+Masq\s+0\s`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^  -> 198\.51\.100\.12:80\s+Masq\s+3\s`).MatchString(out) {
		t.Errorf("after disable, want .11 at weight 0 and .12 at 3:\n%s", out)
	}
	out = cli(t, v, "show pool web")
	if !regexp.MustCompile(`(?m)^web\s+web\s+198\.51\.100\.11:80\s+unmonitored\s+disabled\s+0\s`).MatchString(out) {
		t.Errorf("show pool web:\n%s", out)
	}
	out = cli(t, v, "member enable web 198.51.100.11")
	if !strings.Contains(out, "enabled") {
		t.Errorf("member enable: %q", out)
	}
	out = cli(t, v, "show vs")
	if !regexp.MustCompile(`(?m)^  -> 198\.51\.100\.11:80\s+Masq\s+1\s`).MatchString(out) {
		t.Errorf("after enable, want .11 back at weight 1:\n%s", out)
	}

	// A pasted config with a bad field: rejected, naming it.
	v.Console.Send("config apply\r")
	expectRe(t, v, `Paste the config`, 10*time.Second)
	bad := strings.Replace(string(mgmtConfig(t, "")), "port: \"80\"", "port: \"99999\"", 1)
	for _, l := range strings.Split(strings.TrimRight(bad, "\n"), "\n") {
		v.Console.Send(l + "\r")
	}
	v.Console.Send(".\r")
	out = expectRe(t, v, `(?s)^(.*?)\nlb1> `, 60*time.Second)[1]
	if !regexp.MustCompile(`virtual_servers\[0\]\.port \(line \d+\)`).MatchString(out) || !strings.Contains(out, "nothing changed") {
		t.Errorf("bad config apply: %q", out)
	}
	out = cli(t, v, "show vs")
	if !regexp.MustCompile(`(?m)^TCP  203\.0\.113\.100:80 wrr`).MatchString(out) {
		t.Errorf("the rejected config changed the running state:\n%s", out)
	}

	out = cli(t, v, "show interfaces")
	for _, bond := range []string{"failover", "internal", "external"} {
		if !regexp.MustCompile(`(?m)^` + bond + `\s+\S+.*\s+up\s+`).MatchString(out) {
			t.Errorf("show interfaces: no %s member up:\n%s", bond, out)
		}
	}
	if !regexp.MustCompile(`(?m)^internal\s+IEEE 802\.3ad.*(bundled|defaulted|negotiating)`).MatchString(out) {
		t.Errorf("show interfaces: no LACP state for internal:\n%s", out)
	}
	out = cli(t, v, "show log 500")
	if !regexp.MustCompile(`(?m)^\d\d:\d\d:\d\d\.\d{3} lbd\| .*member admin state changed`).MatchString(out) {
		t.Errorf("show log has no lbd line about the member change:\n%s", out)
	}
	out = cli(t, v, "show vrrp")
	if !strings.Contains(out, "no instances configured") {
		t.Errorf("show vrrp: %q", out)
	}
	out = cli(t, v, "frobnicate")
	if !strings.Contains(out, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %q", out)
	}
	out = cli(t, v, "help")
	for _, c := range []string{"show interfaces", "member disable POOL MEMBER", "ha switchover", "config rollback", "poweroff", "shell"} {
		if !strings.Contains(out, c) {
			t.Errorf("help lacks %q", c)
		}
	}

	v.Console.Send("shell\r")
	expectRe(t, v, `\$ `, 30*time.Second)
	sout, err := v.Run("lbctl show pool web", 60*time.Second)
	if err != nil || !regexp.MustCompile(`(?m)^web\s+web\s+198\.51\.100\.12:80\s+unmonitored\s+enabled\s+3\s`).MatchString(sout) {
		t.Errorf("lbctl from the shell: %v\n%s", err, sout)
	}
	v.Console.Send("exit\r")
	expectRe(t, v, `lb1> `, 30*time.Second)
	v.Console.Send("poweroff\r")
	expectRe(t, v, `services stopped; power off now`, 60*time.Second)
}
