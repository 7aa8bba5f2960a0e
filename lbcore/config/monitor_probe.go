package config

// Validation of the udp, dns, icmp and script monitors (monitor.go holds
// their fields).

import (
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
	"go.yaml.in/yaml/v3"
)

// DNSType is the query type of a dns monitor.
type DNSType string

// DNS query types a dns monitor can ask.
const (
	DNSTypeA     DNSType = "A"
	DNSTypeAAAA  DNSType = "AAAA"
	DNSTypeCNAME DNSType = "CNAME"
	DNSTypeMX    DNSType = "MX"
	DNSTypeNS    DNSType = "NS"
	DNSTypePTR   DNSType = "PTR"
	DNSTypeSOA   DNSType = "SOA"
	DNSTypeSRV   DNSType = "SRV"
	DNSTypeTXT   DNSType = "TXT"
)

// DNSTypes lists the query types with their numbers (RFC 1035, 3596, 2782).
var DNSTypes = map[DNSType]uint16{
	DNSTypeA: 1, DNSTypeNS: 2, DNSTypeCNAME: 5, DNSTypeSOA: 6, DNSTypePTR: 12,
	DNSTypeMX: 15, DNSTypeTXT: 16, DNSTypeAAAA: 28, DNSTypeSRV: 33,
}

// UnmarshalYAML accepts one of DNSTypes, in either case.
func (t *DNSType) UnmarshalYAML(n *yaml.Node) error {
	return decodeScalar(n, "a DNS query type", t, func(s string) (DNSType, error) {
		v := DNSType(strings.ToUpper(s))
		if _, ok := DNSTypes[v]; !ok {
			return "", fmt.Errorf("unknown DNS query type %q (one of A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT)", s)
		}
		return v, nil
	})
}

// Limits of the probe monitors' fields.
const (
	MaxUDPPayload  = 1400 // bytes sent by a udp monitor: one unfragmented datagram
	MaxCommandArgs = 64
	MaxCommandArg  = 4096 // bytes per argument
)

var dnsLabelRE = regexp.MustCompile(`^[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?$`)

// probeFields says which monitor type uses each probe field.
var probeFields = []struct {
	field string
	typ   MonitorType
	set   func(m *Monitor) bool
}{
	{"send", MonitorUDP, func(m *Monitor) bool { return m.Send != "" }},
	{"send_hex", MonitorUDP, func(m *Monitor) bool { return m.SendHex != "" }},
	{"expect", MonitorUDP, func(m *Monitor) bool { return m.Expect != "" }},
	{"query", MonitorDNS, func(m *Monitor) bool { return m.Query != "" }},
	{"qtype", MonitorDNS, func(m *Monitor) bool { return m.QType != "" }},
	{"expect_answers", MonitorDNS, func(m *Monitor) bool { return m.ExpectAnswers != nil }},
	{"command", MonitorScript, func(m *Monitor) bool { return m.Command != nil }},
	{"dynamic_weight", MonitorScript, func(m *Monitor) bool { return m.DynamicWeight }},
}

// validateProbes checks the udp, dns, icmp and script fields.
func (m *Monitor) validateProbes(errs *cfgerr.List) {
	if m.Type == "" {
		return
	}
	for _, f := range probeFields {
		if f.typ != m.Type && f.set(m) {
			errs.Add(f.field, "only %s monitors use %s (type is %s)", f.typ, f.field, m.Type)
		}
	}
	switch m.Type {
	case MonitorUDP:
		m.validateUDP(errs)
	case MonitorDNS:
		m.validateDNS(errs)
	case MonitorICMP:
		if m.Port != 0 {
			errs.Add("port", "icmp monitors have no port")
		}
	case MonitorScript:
		m.validateScript(errs)
	}
}

// UDPPayload is the datagram a udp monitor sends (validated).
func (m Monitor) UDPPayload() []byte {
	if m.SendHex != "" {
		b, _ := hex.DecodeString(m.SendHex)
		return b
	}
	return []byte(m.Send)
}

func (m *Monitor) validateUDP(errs *cfgerr.List) {
	if m.Send != "" && m.SendHex != "" {
		errs.Add("send_hex", "set send or send_hex, not both")
	}
	if m.SendHex != "" {
		if _, err := hex.DecodeString(m.SendHex); err != nil {
			errs.Add("send_hex", "must be an even number of hex digits")
		}
	}
	if n := len(m.UDPPayload()); n > MaxUDPPayload {
		errs.Add("send", "%d bytes is too long for one datagram (at most %d)", n, MaxUDPPayload)
	}
	if m.Expect != "" {
		if _, err := regexp.Compile(m.Expect); err != nil {
			errs.Add("expect", "bad regular expression: %v", err)
		}
	}
}

func (m *Monitor) validateDNS(errs *cfgerr.List) {
	if m.Query == "" {
		errs.Add("query", "missing: the name to ask for")
	} else if err := checkDNSName(m.Query); err != "" {
		errs.Add("query", "%q is not a DNS name: %s", m.Query, err)
	}
	if len(m.ExpectAnswers) == 0 {
		if m.ExpectAnswers != nil {
			errs.Add("expect_answers", "empty: list addresses or leave it out")
		}
		return
	}
	if m.QType != DNSTypeA && m.QType != DNSTypeAAAA {
		errs.Add("expect_answers", "only A and AAAA queries have addresses to expect (qtype is %s)", m.QType)
		return
	}
	for i, a := range m.ExpectAnswers {
		if a.Is4() != (m.QType == DNSTypeA) {
			errs.Add(cfgerr.Index("expect_answers", i), "%s cannot be the answer to an %s query", a.Addr, m.QType)
		}
	}
}

// checkDNSName returns why name is not a DNS name, or "".
func checkDNSName(name string) string {
	n := strings.TrimSuffix(name, ".")
	if n == "" {
		return "empty"
	}
	if len(n) > 253 {
		return "longer than 253 characters"
	}
	for _, l := range strings.Split(n, ".") {
		if !dnsLabelRE.MatchString(l) {
			return "each label is 1-63 letters, digits, '-' or '_', not starting or ending with '-'"
		}
	}
	return ""
}

func (m *Monitor) validateScript(errs *cfgerr.List) {
	if len(m.Command) == 0 {
		errs.Add("command", "missing: the program and its arguments, e.g. [/etc/fulcrum/checks/db, \"{addr}\"]")
		return
	}
	if len(m.Command) > MaxCommandArgs {
		errs.Add("command", "%d arguments, at most %d", len(m.Command), MaxCommandArgs)
	}
	prog := m.Command[0]
	if !path.IsAbs(prog) || path.Clean(prog) != prog || strings.HasSuffix(prog, "/") {
		errs.Add(cfgerr.Index("command", 0), "%q must be an absolute, clean path to an executable in the image (no shell runs it)", prog)
	}
	for i, a := range m.Command {
		if strings.ContainsRune(a, 0) {
			errs.Add(cfgerr.Index("command", i), "contains a NUL byte")
		} else if len(a) > MaxCommandArg {
			errs.Add(cfgerr.Index("command", i), "%d bytes, at most %d", len(a), MaxCommandArg)
		}
	}
}
