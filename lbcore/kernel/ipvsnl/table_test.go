package ipvsnl

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// TestEncodeDestChange decodes what Encode wrote, attribute by attribute,
// against the kernel's layout (ip_vs.h and ip_vs_ctl.c's policies).
func TestEncodeDestChange(t *testing.T) {
	s := &mobyipvs.Service{AddressFamily: unix.AF_INET, Protocol: unix.IPPROTO_TCP, Address: net.IPv4(203, 0, 113, 100), Port: 443,
		SchedName: "wrr", Flags: 0x1, Timeout: 600, Netmask: 0xffffff00}
	d := &mobyipvs.Destination{Address: net.IPv4(198, 51, 100, 11), Port: 8443, Weight: 3, ConnectionFlags: mobyipvs.ConnectionFlagDirectRoute | 0x100,
		UpperThreshold: 100, LowerThreshold: 10}
	b, err := Change{Cmd: SetDest, Service: s, Dest: d}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != byte(SetDest) || b[1] != FamilyVersion {
		t.Fatalf("genl header % x", b[:4])
	}
	top := attrMap(t, b[4:])
	if len(top) != 2 {
		t.Fatalf("top-level attributes %v, want service and dest", keys(top))
	}
	svc := attrMap(t, top[cmdAttrService])
	checks := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"af", svc[svcAttrAF], u16(unix.AF_INET)},
		{"protocol", svc[svcAttrProtocol], u16(unix.IPPROTO_TCP)},
		{"addr", svc[svcAttrAddr], []byte{203, 0, 113, 100}},
		{"port (network order)", svc[svcAttrPort], []byte{0x01, 0xbb}},
		{"sched", svc[svcAttrSchedName], []byte("wrr\x00")},
		{"flags+mask", svc[svcAttrFlags], append(u32(0x1), 0xff, 0xff, 0xff, 0xff)},
		{"timeout", svc[svcAttrTimeout], u32(600)},
		{"netmask", svc[svcAttrNetmask], u32(0xffffff00)},
	}
	dest := attrMap(t, top[cmdAttrDest])
	checks = append(checks, []struct {
		name string
		got  []byte
		want []byte
	}{
		{"dest addr", dest[destAttrAddr], []byte{198, 51, 100, 11}},
		{"dest port", dest[destAttrPort], []byte{0x20, 0xfb}},
		{"fwd method (masked)", dest[destAttrFwdMethod], u32(mobyipvs.ConnectionFlagDirectRoute)},
		{"weight", dest[destAttrWeight], u32(3)},
		{"upper threshold", dest[destAttrUThresh], u32(100)},
		{"lower threshold", dest[destAttrLThresh], u32(10)},
	}...)
	for _, c := range checks {
		if string(c.got) != string(c.want) {
			t.Errorf("%s: % x, want % x", c.name, c.got, c.want)
		}
	}
	if _, ok := svc[svcAttrFWMark]; ok {
		t.Error("an address service carries a fwmark")
	}
}

func TestEncodeFWMarkServiceAndConfig(t *testing.T) {
	b, err := Change{Cmd: NewService, Service: &mobyipvs.Service{AddressFamily: unix.AF_INET6, FWMark: 7, SchedName: "mh", PEName: "sip", Netmask: 128}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	svc := attrMap(t, attrMap(t, b[4:])[cmdAttrService])
	if string(svc[svcAttrFWMark]) != string(u32(7)) || string(svc[svcAttrPEName]) != "sip\x00" || string(svc[svcAttrAF]) != string(u16(unix.AF_INET6)) {
		t.Errorf("fwmark service attributes %v", svc)
	}
	for _, a := range []uint16{svcAttrProtocol, svcAttrAddr, svcAttrPort} {
		if _, ok := svc[a]; ok {
			t.Errorf("a fwmark service carries attribute %d", a)
		}
	}
	b, err = Change{Cmd: SetConfig, Config: &mobyipvs.Config{TimeoutTCP: 90 * time.Second, TimeoutTCPFin: 2 * time.Minute, TimeoutUDP: 0}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	top := attrMap(t, b[4:])
	if binary.NativeEndian.Uint32(top[cmdAttrTimeoutTCP]) != 90 || binary.NativeEndian.Uint32(top[cmdAttrTimeoutTCPFin]) != 120 || binary.NativeEndian.Uint32(top[cmdAttrTimeoutUDP]) != 0 {
		t.Errorf("timeouts %v", top)
	}
}

func TestEncodeRefusesIncompleteChanges(t *testing.T) {
	for _, c := range []Change{
		{Cmd: NewService},
		{Cmd: NewDest, Service: &mobyipvs.Service{}},
		{Cmd: SetConfig},
		{Cmd: TableCmd(4)}, // IPVS_CMD_GET_SERVICE reads, it changes nothing
	} {
		if _, err := c.Encode(); err == nil {
			t.Errorf("%s: encoded", c)
		}
	}
	if _, err := (&Conn{}).Batch([]Change{{Cmd: NewService}}); err == nil {
		t.Error("a batch with an unencodable change was accepted")
	}
}

// TestChunkBounds: chunks hold at most chunkMessages messages and
// chunkBytes bytes, and a single message larger than chunkBytes still goes.
func TestChunkBounds(t *testing.T) {
	small := make([][]byte, 300)
	for i := range small {
		small[i] = make([]byte, 100)
	}
	if e := chunkEnd(small, 0); e != chunkMessages {
		t.Errorf("300 small messages: first chunk ends at %d, want %d", e, chunkMessages)
	}
	if e := chunkEnd(small, 256); e != 300 {
		t.Errorf("last chunk ends at %d, want 300", e)
	}
	big := [][]byte{make([]byte, 40<<10), make([]byte, 40<<10), make([]byte, 100<<10)}
	if e := chunkEnd(big, 0); e != 1 {
		t.Errorf("two 40 KiB messages share a chunk (end %d)", e)
	}
	if e := chunkEnd(big, 2); e != 3 {
		t.Errorf("a 100 KiB message alone: end %d, want 3", e)
	}
}

func attrMap(t *testing.T, b []byte) map[uint16][]byte {
	t.Helper()
	as, err := parseAttrs(b)
	if err != nil {
		t.Fatal(err)
	}
	m := map[uint16][]byte{}
	for _, a := range as {
		if _, dup := m[a.Type]; dup {
			t.Fatalf("attribute %d twice", a.Type)
		}
		m[a.Type] = a.Data
	}
	return m
}

func keys(m map[uint16][]byte) []uint16 {
	var out []uint16
	for k := range m {
		out = append(out, k)
	}
	return out
}
