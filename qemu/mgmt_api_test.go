package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const apiToken = "lab-token-0123456789abcdef"

// nsClient is an HTTP client whose connections are made inside ns.
func nsClient(ns *netlab.Namespace) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			d := net.Dialer{Timeout: 5 * time.Second}
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}, DisableKeepAlives: true}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func call(t *testing.T, c *http.Client, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestManagementAPIAuthMetricsAndSyslog boots lb1 with the API on the
// Internal side over TLS (a certificate made here, verified by the
// client) and a syslog target in the lab: requests without a token
// or with a wrong one get 401 and change nothing (the member stays
// enabled); with the token the member is disabled; /metrics parses with
// the Prometheus text parser and reports the members' weights, health,
// bond members and daemon restarts; the API does not answer on the
// External self IP; a UDP collector in a namespace receives RFC 5424 lines
// of the appliance's log. Then the web dashboard on the same boot, in
// chromium (dashboardInBrowser).
func TestManagementAPIAuthMetricsAndSyslog(t *testing.T) {
	img, err := appliance.FindImage()
	if err != nil {
		t.Fatal(err)
	}
	lab := appliance.NewLab(t)
	member, err := lab.Host("member", netlab.Internal, []string{"198.51.100.11/24"}, "198.51.100.2") // lb1's Internal self IP: NAT replies
	if err != nil {
		t.Fatal(err)
	}
	client, err := lab.Host("client", netlab.External, []string{"203.0.113.10/24"}, "")
	if err != nil {
		t.Fatal(err)
	}
	// The syslog collector listens in the member namespace (Internal side).
	var pc net.PacketConn
	if err := member.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", "198.51.100.11:5514")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	msgs := make(chan string, 1000)
	go func() {
		b := make([]byte, 8192)
		for {
			n, _, err := pc.ReadFrom(b)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(b[:n])
		}
	}()

	// A TCP-monitored pool whose member the dashboard part stops.
	stopApp := tcpMember(t, member, "198.51.100.11:8081")
	cfg := mgmtConfig(t, `
  app:
    monitor: tcp1
    members:
      - {address: 198.51.100.11, port: 8081}
monitors:
  tcp1: {type: tcp, interval: 1s, timeout: 500ms, rise: 1, fall: 1}
`)
	cfg = []byte(strings.Replace(string(cfg), "virtual_servers:\n", "virtual_servers:\n  - {name: app, vip: 203.0.113.101, port: \"80\", mode: nat, pool: app}\n", 1))
	cfg = []byte(strings.Replace(string(cfg), "management:\n", fmt.Sprintf("management:\n  api: {listen: internal, port: 8443, token: %q, tls: {cert: %s, key: %s}}\n  syslog: {target: \"udp://198.51.100.11:5514\"}\n", apiToken, apiCertPath, apiKeyPath), 1))
	certFiles, certPool := apiCert(t)
	v := appliance.Boot(t, lab, img, appliance.Options{Node: 1, Config: cfg, Files: certFiles})
	if _, err := v.WaitReady(bootTimeout); err != nil {
		t.Fatal(err)
	}
	if err := v.Console.ExpectString("HTTP API listening", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	hc := nsTLSClient(member, certPool)
	base := "https://198.51.100.2:8443"
	disable := `{"pool":"web","member":"198.51.100.11"}`
	weightOne := regexp.MustCompile(`"address": "198\.51\.100\.11:80",\s+"forward": "Masq",\s+"weight": 1`)
	// lbd may still be applying its first config.
	testkit.Eventually(t, 30*time.Second, 500*time.Millisecond, func() error {
		if _, body := call(t, hc, "GET", base+"/api/v1/vs", apiToken, ""); !weightOne.MatchString(body) {
			return fmt.Errorf("GET /api/v1/vs shows no 198.51.100.11:80 at weight 1: %s", body)
		}
		return nil
	})

	for _, tok := range []string{"", "wrong-token-wrong-token"} {
		code, body := call(t, hc, "POST", base+"/api/v1/members/disable", tok, disable)
		if code != http.StatusUnauthorized {
			t.Errorf("disable with token %q: %d %s, want 401", tok, code, body)
		}
		code, _ = call(t, hc, "GET", base+"/metrics", tok, "")
		if code != http.StatusUnauthorized {
			t.Errorf("metrics with token %q: %d, want 401", tok, code)
		}
	}
	code, body := call(t, hc, "GET", base+"/api/v1/vs", apiToken, "")
	if code != 200 || !weightOne.MatchString(body) {
		t.Fatalf("after refused calls, want .11 still at weight 1: %d\n%s", code, body)
	}
	code, body = call(t, hc, "POST", base+"/api/v1/members/disable", apiToken, `{"pool":"web","member":"10.1.1.1"}`)
	if code != http.StatusNotFound || !strings.Contains(body, "has no member") {
		t.Errorf("bad member: %d %s", code, body)
	}
	code, body = call(t, hc, "POST", base+"/api/v1/config/validate", apiToken, "version: 1\nhostname: \"bad host\"\n")
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "hostname") {
		t.Errorf("invalid config: %d %s", code, body)
	}
	// config diff on the appliance: what an apply would change, nothing changed.
	var diff localapi.ConfigDiff
	code, body = call(t, hc, "POST", base+"/api/v1/config/diff", apiToken, strings.Replace(string(cfg), "weight: 3}", "weight: 5}", 1))
	if err := json.Unmarshal([]byte(body), &diff); code != 200 || err != nil || diff.Text != "IPVS (changes now):\n  ~   TCP  203.0.113.100:80 (web) -> 198.51.100.12:80 weight 3 -> 5\n" {
		t.Errorf("config diff: %d %s", code, body)
	}
	code, body = call(t, hc, "POST", base+"/api/v1/config/diff", apiToken, "version: 1\nhostname: \"bad host\"\n")
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "hostname (line 2)") {
		t.Errorf("diff of an invalid config: %d %s", code, body)
	}
	if code, body = call(t, hc, "GET", base+"/api/v1/vs", apiToken, ""); !strings.Contains(body, `"address": "198.51.100.12:80",`) || !weightOne.MatchString(body) || strings.Contains(body, `"weight": 5`) {
		t.Errorf("config diff changed the IPVS table: %d %s", code, body)
	}
	code, body = call(t, hc, "POST", base+"/api/v1/members/disable", apiToken, disable)
	if code != 200 {
		t.Fatalf("disable with the token: %d %s", code, body)
	}

	code, body = call(t, hc, "GET", base+"/metrics", apiToken, "")
	if code != 200 {
		t.Fatalf("metrics: %d %s", code, body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, body)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		f := fams[name]
		if f == nil {
			return 0, false
		}
	next:
		for _, m := range f.Metric {
			have := map[string]string{}
			for _, lp := range m.Label {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, want := range labels {
				if have[k] != want {
					continue next
				}
			}
			return metricValue(m), true
		}
		return 0, false
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"fulcrum_member_weight", map[string]string{"vs": "web", "member": "198.51.100.11:80"}, 0},
		{"fulcrum_member_weight", map[string]string{"vs": "web", "member": "198.51.100.12:80"}, 3},
		{"fulcrum_member_disabled", map[string]string{"member": "198.51.100.11:80"}, 1},
		{"fulcrum_member_health", map[string]string{"member": "198.51.100.12:80", "state": "unmonitored"}, 1},
		{"fulcrum_member_active_connections", map[string]string{"member": "198.51.100.12:80"}, 0},
		{"fulcrum_bond_member_up", map[string]string{"bond": "internal", "member": "eth2"}, 1},
		{"fulcrum_daemon_up", map[string]string{"daemon": "lbd"}, 1},
		{"fulcrum_daemon_restarts_total", map[string]string{"daemon": "lbd"}, 0},
		{"fulcrum_scrape_source_up", map[string]string{"source": "vrrpd"}, 1},
	}
	for _, c := range checks {
		got, ok := value(c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := fams["fulcrum_vs_bytes_total"]; !ok {
		t.Error("no fulcrum_vs_bytes_total")
	}
	t.Logf("metrics: %d families, %d bytes", len(fams), len(body))

	// Never on the External side.
	ext := nsTLSClient(client, certPool)
	if resp, err := ext.Get("https://203.0.113.2:8443/metrics"); err == nil {
		resp.Body.Close()
		t.Errorf("the API answered on the External self IP: %s", resp.Status)
	}

	// Syslog: RFC 5424 lines from lbd, including the member change.
	deadline := time.After(30 * time.Second)
	re := regexp.MustCompile(`^<(\d+)>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z lb1 lbd - - - .*member admin state changed`)
	var seen int
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatal("collector closed")
			}
			seen++
			if re.MatchString(m) {
				t.Logf("syslog: %d messages before the member change line: %q", seen, m)
				dashboardInBrowser(t, hc, base, forwardFrom(t, member, "198.51.100.2:8443"), client, stopApp)
				return
			}
		case <-deadline:
			t.Fatalf("no RFC 5424 line about the member change within 30s (%d messages seen)", seen)
		}
	}
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}
