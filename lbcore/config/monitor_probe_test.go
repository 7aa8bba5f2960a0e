package config

import (
	"strings"
	"testing"
)

func TestProbeMonitorsAccepted(t *testing.T) {
	m, err := decodeMonitors(`
u1: {type: udp, send: "ping\n", expect: "^pong"}
u2: {type: udp, send_hex: "fffffffe54536f7572636520456e67696e6520517565727900"}
u3: {type: udp}
d1: {type: dns, query: www.example.test}
d2: {type: dns, query: www.example.test., qtype: AAAA, expect_answers: ["2001:db8::80"]}
d3: {type: dns, query: _sip._udp.example.test, qtype: SRV}
i1: {type: icmp}
s1: {type: script, command: [/etc/fulcrum/checks/db, "{addr}", "{port}"], dynamic_weight: true, port: 5432}
`)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("valid probe monitors refused: %v", err)
	}
	if m["d1"].QType != DNSTypeA {
		t.Errorf("dns qtype default = %q, want A", m["d1"].QType)
	}
	if u1, u2 := m["u1"], m["u2"]; string(u1.UDPPayload()) != "ping\n" || len(u2.UDPPayload()) != 25 || u2.UDPPayload()[0] != 0xff {
		t.Errorf("payloads %q %x", u1.UDPPayload(), u2.UDPPayload())
	}
	if m["u3"].UDPPayload() == nil || len(m["u3"].UDPPayload()) != 0 {
		t.Errorf("empty send: payload %v, want a zero-length datagram", m["u3"].UDPPayload())
	}
}

func TestProbeMonitorValidation(t *testing.T) {
	for _, tc := range []struct{ name, doc, want string }{
		{"udp field on tcp", "m: {type: tcp, send: x}", "m.send: only udp monitors use send (type is tcp)"},
		{"send and send_hex", "m: {type: udp, send: x, send_hex: '00'}", "m.send_hex: set send or send_hex, not both"},
		{"odd hex", "m: {type: udp, send_hex: 'abc'}", "m.send_hex: must be an even number of hex digits"},
		{"non-hex", "m: {type: udp, send_hex: 'zz'}", "m.send_hex: must be an even number of hex digits"},
		{"long payload", "m: {type: udp, send: '" + strings.Repeat("x", 1401) + "'}", "m.send: 1401 bytes is too long for one datagram (at most 1400)"},
		{"bad expect", "m: {type: udp, expect: '(('}", "m.expect: bad regular expression"},
		{"dns without query", "m: {type: dns}", "m.query: missing: the name to ask for"},
		{"dns bad name", "m: {type: dns, query: 'a..b'}", `m.query: "a..b" is not a DNS name`},
		{"dns dash label", "m: {type: dns, query: '-a.example'}", `m.query: "-a.example" is not a DNS name`},
		{"dns bad qtype", "m: {type: dns, query: a.test, qtype: AXFR}", `m.qtype (line 1): unknown DNS query type "AXFR"`},
		{"dns answers for MX", "m: {type: dns, query: a.test, qtype: MX, expect_answers: [192.0.2.1]}", "m.expect_answers: only A and AAAA queries have addresses to expect (qtype is MX)"},
		{"dns v6 answer for A", "m: {type: dns, query: a.test, expect_answers: [192.0.2.1, '2001:db8::1']}", "m.expect_answers[1]: 2001:db8::1 cannot be the answer to an A query"},
		{"dns bad answer", "m: {type: dns, query: a.test, expect_answers: [192.0.2.300]}", `m.expect_answers[0] (line 1): "192.0.2.300" is not an IP address`},
		{"dns empty answers", "m: {type: dns, query: a.test, expect_answers: []}", "m.expect_answers: empty"},
		{"qtype on udp", "m: {type: udp, qtype: A}", "m.qtype: only dns monitors use qtype (type is udp)"},
		{"icmp port", "m: {type: icmp, port: 80}", "m.port: icmp monitors have no port"},
		{"script no command", "m: {type: script}", "m.command: missing"},
		{"script relative", "m: {type: script, command: [check.sh]}", `m.command[0]: "check.sh" must be an absolute, clean path`},
		{"script unclean", "m: {type: script, command: [/etc/fulcrum/../bin/sh]}", `m.command[0]: "/etc/fulcrum/../bin/sh" must be an absolute, clean path`},
		{"script dir", "m: {type: script, command: [/etc/fulcrum/]}", `m.command[0]: "/etc/fulcrum/" must be an absolute, clean path`},
		{"script NUL", "m: {type: script, command: [/bin/x, \"a\\0b\"]}", "m.command[1]: contains a NUL byte"},
		{"dynamic weight on tcp", "m: {type: tcp, dynamic_weight: true}", "m.dynamic_weight: only script monitors use dynamic_weight (type is tcp)"},
		{"command on icmp", "m: {type: icmp, command: [/bin/true]}", "m.command: only script monitors use command (type is icmp)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decodeMonitors(tc.doc)
			if err == nil {
				err = m.Validate()
			}
			if err == nil {
				t.Fatalf("accepted %s", tc.doc)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q\n does not contain %q", err, tc.want)
			}
		})
	}
}

// TestProbeMonitorLines: inside the appliance config the refusals carry the
// full path and the line.
func TestProbeMonitorLines(t *testing.T) {
	bad := baseConfig + `monitors:
  dns:
    type: dns
    query: "bad name"
  run:
    type: script
    command: [run-me]
`
	_, err := Parse([]byte(bad))
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		`monitors.dns.query (line 9): "bad name" is not a DNS name`,
		`monitors.run.command[0] (line 12): "run-me" must be an absolute, clean path`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\n does not contain %q", err, want)
		}
	}
}
