package health_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/health"
	"github.com/fulcrum-lb/fulcrum/lbcore/health/internal/nslab"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
)

func probeMon(t *testing.T, m config.Monitor) health.Checker {
	t.Helper()
	m.Interval, m.Timeout = config.Duration(time.Second), config.Duration(100*time.Millisecond)
	m.ApplyDefaults()
	return probeChecker(t, m, nil)
}

func probeChecker(t *testing.T, m config.Monitor, env health.SocketEnv) health.Checker {
	t.Helper()
	c, err := health.NewChecker(m, env)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// udpServer answers each datagram arriving at addr in the server namespace
// with answer(payload); a nil answer sends nothing.
func udpServer(t *testing.T, lab *nslab.Lab, addr string, answer func([]byte) []byte) {
	t.Helper()
	udpServerMany(t, lab, addr, func(p []byte) [][]byte {
		if a := answer(p); a != nil {
			return [][]byte{a}
		}
		return nil
	})
}

// udpServerMany is udpServer sending any number of datagrams per request.
func udpServerMany(t *testing.T, lab *nslab.Lab, addr string, answer func([]byte) [][]byte) {
	t.Helper()
	var pc net.PacketConn
	if err := lab.Server.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, out := range answer(append([]byte(nil), buf[:n]...)) {
				pc.WriteTo(out, from)
			}
		}
	}()
}

// TestUDPAnswers: a reply matching expect passes; a reply that does not,
// silence (timeout) and a closed port (ICMP port unreachable, at once)
// fail.
func TestUDPAnswers(t *testing.T) {
	lab := nslab.New(t, nil, "198.51.100.11")
	udpServer(t, lab, "198.51.100.11:7000", func(p []byte) []byte { return append([]byte("pong:"), p...) })
	udpServer(t, lab, "198.51.100.11:7001", func(p []byte) []byte { return []byte("busy") })
	udpServer(t, lab, "198.51.100.11:7002", func(p []byte) []byte { return nil })
	var mon config.Monitor
	mon.Type, mon.Send, mon.Expect = config.MonitorUDP, "ping", "^pong:ping$"
	mon.Interval, mon.Timeout = config.Duration(time.Second), config.Duration(100*time.Millisecond)
	mon.ApplyDefaults()
	c := probeChecker(t, mon, lab.InChecker)
	checkAnswers(t, c, []answerCase{
		{"198.51.100.11:7000", true, "reply 9 bytes"},
		{"198.51.100.11:7001", false, `reply of 4 bytes does not match "^pong:ping$"`},
		{"198.51.100.11:7002", false, "timeout after 100ms (reply)"},
		{"198.51.100.11:7003", false, "connection refused (reply)"},
	})
	// The refusal comes from the ICMP error, not the timeout.
	start := time.Now()
	c.Check(context.Background(), health.Target{Addr: netip.MustParseAddr("198.51.100.11"), Port: 7003})
	if el := time.Since(start); el > 50*time.Millisecond {
		t.Errorf("closed UDP port took %s to fail: the ICMP port unreachable should end it", el)
	}
	// Hex payload, no expect: any reply passes.
	mon.Send, mon.SendHex, mon.Expect = "", "00ff", ""
	c = probeChecker(t, mon, lab.InChecker)
	checkAnswers(t, c, []answerCase{{"198.51.100.11:7001", true, "reply 4 bytes"}})
}

// dnsRecord is one answer of the test responder.
type dnsRecord struct {
	typ  uint16
	data []byte
}

// dnsResponder is a tiny authoritative responder, written apart from the
// checker's parser: it echoes the question and answers from zone; names
// not in it get NXDOMAIN, "servfail." SERVFAIL; "stray." is first answered
// with a wrong ID, then correctly.
func dnsResponder(zone map[string][]dnsRecord) func([]byte) []byte {
	return func(q []byte) []byte {
		if len(q) < 17 {
			return nil
		}
		// The question: labels up to the zero byte, then type and class.
		end := 12
		var labels []string
		for end < len(q) && q[end] != 0 {
			l := int(q[end])
			labels = append(labels, string(q[end+1:end+1+l]))
			end += 1 + l
		}
		end += 5
		name := strings.ToLower(strings.Join(labels, ".")) + "." // names are case-blind
		qtype := binary.BigEndian.Uint16(q[end-4:])
		out := append([]byte(nil), q[:end]...)
		out[2], out[3] = 0x85, 0x80 // QR, AA, RD, RA; RCODE 0
		var answers []dnsRecord
		switch name {
		case "servfail.example.test.":
			out[3] |= 2
		default:
			recs, ok := zone[name]
			if !ok {
				out[3] |= 3
			}
			for _, r := range recs {
				if r.typ == qtype || r.typ == 5 {
					answers = append(answers, r)
				}
			}
		}
		binary.BigEndian.PutUint16(out[6:], uint16(len(answers)))
		for _, r := range answers {
			out = append(out, 0xc0, 12) // the question's name
			out = binary.BigEndian.AppendUint16(out, r.typ)
			out = binary.BigEndian.AppendUint16(out, 1)
			out = binary.BigEndian.AppendUint32(out, 60)
			out = binary.BigEndian.AppendUint16(out, uint16(len(r.data)))
			out = append(out, r.data...)
		}
		return out
	}
}

func a4(s string) []byte  { a := netip.MustParseAddr(s).As4(); return a[:] }
func a16(s string) []byte { a := netip.MustParseAddr(s).As16(); return a[:] }

// TestDNSAnswers runs the dns checker against the responder: answers with
// and without the expected addresses, NXDOMAIN, SERVFAIL, an empty
// NOERROR, a CNAME chain, a stray answer with another ID, silence.
func TestDNSAnswers(t *testing.T) {
	lab := nslab.New(t, nil, "198.51.100.11")
	zone := map[string][]dnsRecord{
		"www.example.test.":   {{1, a4("192.0.2.80")}, {1, a4("192.0.2.81")}, {28, a16("2001:db8::80")}},
		"empty.example.test.": {},
		// An alias: the CNAME (target www.) then the address.
		"alias.example.test.": {{5, []byte("\x03www\x07example\x04test\x00")}, {1, a4("192.0.2.80")}},
	}
	answer := dnsResponder(zone)
	udpServer(t, lab, "198.51.100.11:53", answer)
	udpServer(t, lab, "198.51.100.11:54", func(q []byte) []byte { return nil })
	udpServerMany(t, lab, "198.51.100.11:55", func(q []byte) [][]byte {
		wrong, right := answer(q), answer(q)
		wrong[0] ^= 0xff         // another query's answer, first
		wrong[len(wrong)-1] = 99 // with another address
		return [][]byte{wrong, right}
	})

	dns := func(query string, qtype config.DNSType, expect ...string) health.Checker {
		m := config.Monitor{Type: config.MonitorDNS, Query: query, QType: qtype,
			Interval: config.Duration(time.Second), Timeout: config.Duration(100 * time.Millisecond)}
		for _, e := range expect {
			m.ExpectAnswers = append(m.ExpectAnswers, config.IP{Addr: netip.MustParseAddr(e)})
		}
		m.ApplyDefaults()
		return probeChecker(t, m, lab.InChecker)
	}
	checkAnswers(t, dns("www.example.test", "", "192.0.2.81", "192.0.2.80"), []answerCase{
		{"198.51.100.11:53", true, "DNS NOERROR, 2 A"},
		{"198.51.100.11:54", false, "timeout after 100ms (answer)"},
		{"198.51.100.11:56", false, "connection refused (answer)"},
	})
	checkAnswers(t, dns("WWW.example.test.", config.DNSTypeAAAA, "2001:db8::80"), []answerCase{{"198.51.100.11:53", true, "DNS NOERROR, 1 AAAA"}})
	checkAnswers(t, dns("www.example.test", "", "192.0.2.99"), []answerCase{
		{"198.51.100.11:53", false, "DNS answer lacks 192.0.2.99 (has [192.0.2.80 192.0.2.81])"},
	})
	checkAnswers(t, dns("nx.example.test", ""), []answerCase{{"198.51.100.11:53", false, "DNS NXDOMAIN"}})
	checkAnswers(t, dns("servfail.example.test", ""), []answerCase{{"198.51.100.11:53", false, "DNS SERVFAIL"}})
	checkAnswers(t, dns("empty.example.test", ""), []answerCase{{"198.51.100.11:53", false, "DNS NOERROR but no A record for empty.example.test."}})
	checkAnswers(t, dns("alias.example.test", "", "192.0.2.80"), []answerCase{{"198.51.100.11:53", true, "DNS NOERROR, 1 A"}})
	checkAnswers(t, dns("www.example.test", config.DNSTypeMX), []answerCase{{"198.51.100.11:53", false, "DNS NOERROR but no MX record for www.example.test."}})

	// A stray answer (wrong ID, wrong address) is skipped; the real one,
	// sent after it, passes.
	checkAnswers(t, dns("www.example.test", "", "192.0.2.81"), []answerCase{{"198.51.100.11:55", true, "DNS NOERROR, 2 A"}})
}

// TestICMPEcho pings over IPv4 and IPv6 between the lab's namespaces: a
// live address answers; an address nobody has times out.
func TestICMPEcho(t *testing.T) {
	lab := nslab.New(t, nil, "198.51.100.11")
	addIPv6(t, lab, "checker", checkerIPv6)
	addIPv6(t, lab, "server", serverIPv6)
	m := config.Monitor{Type: config.MonitorICMP, Interval: config.Duration(time.Second), Timeout: config.Duration(300 * time.Millisecond)}
	m.ApplyDefaults()
	c := probeChecker(t, m, lab.InChecker)
	// The veths' link-local addresses go through duplicate address
	// detection (after a random delay of up to a second) before neighbour
	// discovery can run: wait for the IPv6 path, at most 5 s.
	testkit.Eventually(t, 5*time.Second, 50*time.Millisecond, func() error {
		if r := c.Check(context.Background(), health.Target{Addr: netip.MustParseAddr(serverIPv6)}); !r.OK {
			return fmt.Errorf("IPv6 ping: %s", r.Reason)
		}
		return nil
	})
	for _, tc := range []struct {
		addr   string
		ok     bool
		reason string
	}{
		{"198.51.100.11", true, "echo reply"},
		{serverIPv6, true, "echo reply"},
		{"198.51.100.40", false, "timeout after 300ms (echo reply)"},
	} {
		r := c.Check(context.Background(), health.Target{Addr: netip.MustParseAddr(tc.addr)})
		if r.OK != tc.ok || r.Reason != tc.reason {
			t.Errorf("%s: ok=%v %q, want ok=%v %q", tc.addr, r.OK, r.Reason, tc.ok, tc.reason)
		}
	}
	// Many at once: each check gets its own reply.
	done := make(chan health.Result, 20)
	for i := 0; i < 20; i++ {
		go func() {
			done <- c.Check(context.Background(), health.Target{Addr: netip.MustParseAddr("198.51.100.11")})
		}()
	}
	for i := 0; i < 20; i++ {
		if r := <-done; !r.OK {
			t.Errorf("concurrent ping %d: %q", i, r.Reason)
		}
	}
}
