package keepalived

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func issueText(is []Issue) string {
	var b strings.Builder
	for _, i := range is {
		b.WriteString(i.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != string(got) {
		t.Errorf("%s differs from the output (go test -update rewrites it):\n%s", path, got)
	}
}

// The realistic HA pair (NAT web with HTTP and HTTPS checks, DR DNS, a VRRP
// sync group with tracking, includes, $definitions and @conditionals)
// converts to the golden YAML for each node, and that YAML passes the
// appliance's own loader.
func TestPairGoldenAndValid(t *testing.T) {
	for _, node := range []string{"lb1", "lb2"} {
		t.Run(node, func(t *testing.T) {
			base, err := os.ReadFile(filepath.Join("testdata/pair", "base-"+node+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			res, err := Import(os.DirFS("testdata/pair"), "keepalived.conf", base, "base-"+node+".yaml", Options{ConfigID: node})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata/pair", node+".yaml.golden"), res.YAML)
			golden(t, filepath.Join("testdata/pair", node+".issues.golden"), []byte(issueText(res.Issues)))
			if !res.Complete || res.VirtualServers != 4 || res.Instances != 1 {
				t.Errorf("complete %v, %d virtual servers, %d instances; want true, 4, 1", res.Complete, res.VirtualServers, res.Instances)
			}
			cfg, err := config.Parse(res.YAML)
			if err != nil {
				t.Fatalf("imported config does not validate:\n%v\n%s", err, res.YAML)
			}
			if cfg.Hostname != node || len(cfg.VirtualServers) != 4 {
				t.Errorf("hostname %q, %d virtual servers", cfg.Hostname, len(cfg.VirtualServers))
			}
		})
	}
}

// What the pair imports to, checked field by field against keepalived's
// meaning (independent of the golden files).
func TestPairSemantics(t *testing.T) {
	base, _ := os.ReadFile("testdata/pair/base-lb2.yaml")
	res, err := Import(os.DirFS("testdata/pair"), "keepalived.conf", base, "base", Options{ConfigID: "lb2"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(res.YAML)
	if err != nil {
		t.Fatal(err)
	}
	v := cfg.VRRP
	if v.Priority != 100 || v.Version != 2 || v.AdvertInterval != 100 || len(v.UnicastPeers) != 1 || v.UnicastPeers[0].String() != "192.0.2.1" {
		t.Errorf("vrrp: priority %d version %d advert %d peers %v", v.Priority, v.Version, v.AdvertInterval, v.UnicastPeers)
	}
	if len(v.Instances) != 1 || fmt.Sprint(v.Instances[0].Internal) != "[198.51.100.1/24]" ||
		fmt.Sprint(v.Instances[0].External) != "[203.0.113.100/24 203.0.113.101/24 203.0.113.200/24]" {
		t.Errorf("instances %+v", v.Instances)
	}
	byName := map[string]config.VirtualServer{}
	for _, vs := range cfg.VirtualServers {
		byName[vs.Name] = vs
	}
	web := byName["tcp-203-0-113-100-80"]
	if web.Mode != "nat" || web.Scheduler != "wrr" || !web.PersistenceOn() || web.Persistence.Timeout.D().Seconds() != 300 {
		t.Errorf("web: %+v %+v", web, web.Persistence)
	}
	dns := byName["udp-203-0-113-101-53"]
	if dns.Mode != "dr" || dns.Protocol != "udp" || dns.PersistenceOn() {
		t.Errorf("dns: %+v", dns)
	}
	pool := cfg.Pools["tcp-203-0-113-100-80"]
	if pool == nil || len(pool.Members) != 3 || pool.Members[0].Port != 8080 || pool.Members[0].MemberWeight() != 2 || pool.SorryServer == nil || pool.SorryServer.String() != "198.51.100.50:8080" {
		t.Fatalf("web pool %+v", pool)
	}
	mon := cfg.Monitors[pool.Monitor]
	if mon.Type != "http" || mon.Path != "/healthz" || mon.Fall != 3 || mon.Rise != 1 || mon.Interval.D().Seconds() != 5 || mon.Timeout.D().Seconds() != 2 || mon.ExpectStatus.String() != "200" || mon.Host != "www.example.test" {
		t.Errorf("web monitor %+v", mon)
	}
	if dp := cfg.Pools["udp-203-0-113-101-53"]; dp == nil || dp.Members[0].Port != 0 || cfg.Monitors[dp.Monitor].Port != 53 {
		t.Errorf("dns pool %+v", dp)
	}
	// Every directive the converter drops is named with its line.
	text := issueText(res.Issues)
	for _, want := range []string{
		"conf.d/dns.conf:12: virtual_server 203.0.113.101 53: real_server 198.51.100.21 53: MISC_CHECK: not converted",
		"conf.d/web.conf:41: ", "digest: not converted",
		"keepalived.conf:40: vrrp_instance VI_EXT: authentication: not converted",
		"keepalived.conf:62: vrrp_instance VI_INT (virtual_router_id 52): merged into VI_EXT's",
		"keepalived.conf:19: vrrp_script chk_lbd: not converted",
		"keepalived.conf:36: conditional line @lb1 does not apply",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("issues lack %q:\n%s", want, text)
		}
	}
}

func TestParseSyntax(t *testing.T) {
	fsys := fstest.MapFS{
		"main.conf": {Data: []byte(`$A=10.0.0.1
$B=$A 80
virtual_server ${B} { lb_algo rr
  real_server 10.0.0.2 80 { weight 3 } }
@one priority 1
@^one priority 2
vrrp_instance X
{
  state MASTER # comment
  ! whole-line comment
  script "/bin/echo a b"
}
include sub/*.conf
}
`)},
		"sub/a.conf": {Data: []byte("a_key 1\n")},
	}
	nodes, issues, err := Parse(fsys, "main.conf", Options{ConfigID: "one"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var walk func(ns []*Node, depth int)
	walk = func(ns []*Node, depth int) {
		for _, n := range ns {
			got = append(got, strings.Repeat(" ", depth)+n.Pos()+" "+n.Key+"|"+strings.Join(n.Args, "|"))
			walk(n.Children, depth+1)
		}
	}
	walk(nodes, 0)
	want := []string{
		"main.conf:3 virtual_server|10.0.0.1|80",
		" main.conf:3 lb_algo|rr",
		" main.conf:4 real_server|10.0.0.2|80",
		"  main.conf:4 weight|3",
		"main.conf:5 priority|1",
		"main.conf:7 vrrp_instance|X",
		" main.conf:9 state|MASTER",
		" main.conf:11 script|/bin/echo a b",
		"sub/a.conf:1 a_key|1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tree:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	text := issueText(issues)
	for _, w := range []string{"main.conf:6: conditional line @^one does not apply", "main.conf:14: '}' without a block to close"} {
		if !strings.Contains(text, w) {
			t.Errorf("issues lack %q:\n%s", w, text)
		}
	}
}

// Include loops and self-includes are reported, not followed; an include
// fan-out and $definitions that double at each step hit the limits with an
// error instead of exhausting memory.
func TestParseLimits(t *testing.T) {
	loop := fstest.MapFS{
		"a.conf": {Data: []byte("include b.conf\nx 1\n")},
		"b.conf": {Data: []byte("include a.conf\ninclude b.conf\ny 2\n")},
	}
	nodes, issues, err := Parse(loop, "a.conf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 || !strings.Contains(issueText(issues), "b.conf:1: include of a.conf is a loop (a.conf → b.conf → a.conf)") ||
		!strings.Contains(issueText(issues), "b.conf:2: include of b.conf is a loop") {
		t.Errorf("loop: %d nodes, issues:\n%s", len(nodes), issueText(issues))
	}
	fan := fstest.MapFS{"a.conf": {Data: []byte("include " + strings.Repeat("b.conf ", 300) + "\n")}, "b.conf": {Data: []byte("x\n")}}
	if _, _, err := Parse(fan, "a.conf", Options{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("include fan-out: %v", err)
	}
	var defs strings.Builder
	defs.WriteString("$D0=xxxxxxxxxxxxxxxx\n")
	for i := 1; i < 40; i++ {
		defs.WriteString(fmt.Sprintf("$D%d=${D%d}${D%d}\n", i, i-1, i-1))
	}
	if _, _, err := Parse(fstest.MapFS{"a.conf": {Data: []byte(defs.String())}}, "a.conf", Options{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("doubling definitions: %v", err)
	}
	var wide strings.Builder
	wide.WriteString("$W=" + strings.Repeat("w", 60000) + "\n")
	for range 200 {
		wide.WriteString("x $W\n")
	}
	if _, _, err := Parse(fstest.MapFS{"a.conf": {Data: []byte(wide.String())}}, "a.conf", Options{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a large definition used on many lines: %v", err)
	}
	deep := strings.Repeat("a {\n", 100) + strings.Repeat("}\n", 100)
	_, issues, err = Parse(fstest.MapFS{"a.conf": {Data: []byte(deep)}}, "a.conf", Options{})
	if err != nil || !strings.Contains(issueText(issues), "nested deeper than 32") {
		t.Errorf("deep nesting: %v\n%s", err, issueText(issues))
	}
}

// Without a base config the YAML is still well-formed and says what is
// missing; addresses it cannot place are reported.
func TestNoBase(t *testing.T) {
	fsys := fstest.MapFS{"k.conf": {Data: []byte(`vrrp_instance V { virtual_router_id 9
 virtual_ipaddress {
  10.1.1.1
  10.2.2.2/24
 }
}
virtual_server 10.1.1.1 80 { real_server 10.3.3.3 80 { TCP_CHECK { connect_timeout 90 } } }
`)}}
	res, err := Import(fsys, "k.conf", nil, "", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Complete {
		t.Error("complete without a network section")
	}
	var doc map[string]any
	if err := yaml.Unmarshal(res.YAML, &doc); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, res.YAML)
	}
	text := issueText(res.Issues)
	for _, w := range []string{
		"k.conf:4: vrrp_instance V: 10.2.2.2/24 is not in a subnet of the base config and not a VIP; placed on external as a guess",
		"connect_timeout 1m30s is not shorter than delay_loop 1m0s",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("issues lack %q:\n%s", w, text)
		}
	}
	if strings.Contains(text, "10.1.1.1 is not") {
		t.Errorf("the VIP 10.1.1.1 should be placed on external without a guess:\n%s", text)
	}
}

// $NAME is replaced only as a whole word, as keepalived 2.2 does
// (`keepalived -t` rejects "$A/24" as an invalid IP and accepts "${A}/24").
func TestDefinitionsAsKeepalivedReadsThem(t *testing.T) {
	fsys := fstest.MapFS{"k.conf": {Data: []byte("$A=10.9.9.1\n$P=24\nx $A/24 ${A}/25 $A 10.9.8.1/$P 10.9.7.${P}\n")}}
	nodes, issues, err := Parse(fsys, "k.conf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(nodes[0].Args, " "); got != "$A/24 10.9.9.1/25 10.9.9.1 10.9.8.1/24 10.9.7.24" {
		t.Errorf("expanded to %q", got)
	}
	if text := issueText(issues); !strings.Contains(text, "k.conf:3: $A/24 is not defined; kept as written (keepalived reads a name up to the next space") {
		t.Errorf("issues:\n%s", text)
	}
}

// keepalived's own parser (keepalived -t, from the Debian package make deps
// installs) reads the pair's config without a syntax complaint, so the
// goldens start from a config keepalived really accepts. Complaints about
// the host (interfaces that do not exist here, no script user) are expected.
func TestPairIsValidKeepalived(t *testing.T) {
	testkit.Require(t, testkit.Tool("keepalived")) // make deps installs it
	bin, _ := exec.LookPath("keepalived")
	abs, _ := filepath.Abs("testdata/pair/keepalived.conf")
	for _, id := range []string{"lb1", "lb2"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, _ := exec.CommandContext(ctx, bin, "-t", "-f", abs, "-i", id, "-l", "-D").CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("keepalived -t timed out: %s", out)
		}
		if len(out) == 0 {
			t.Fatalf("keepalived -t said nothing (not even about the missing interfaces)")
		}
		for _, l := range strings.Split(string(out), "\n") {
			low := strings.ToLower(l)
			if strings.Contains(low, "unknown keyword") || strings.Contains(low, "invalid") || strings.Contains(low, "missing") {
				t.Errorf("keepalived -t -i %s: %s", id, l)
			}
		}
	}
}
