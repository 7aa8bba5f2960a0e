package ipvslist

import (
	"bytes"
	"net"
	"strings"
	"testing"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

type fakeKernel struct {
	svcs  []*mobyipvs.Service
	dests map[*mobyipvs.Service][]*mobyipvs.Destination
}

func (f fakeKernel) GetServices() ([]*mobyipvs.Service, error) { return f.svcs, nil }
func (f fakeKernel) GetDestinations(s *mobyipvs.Service) ([]*mobyipvs.Destination, error) {
	return f.dests[s], nil
}

// The layouts and sort order, written out from ipvsadm 1.31's format
// strings (the guest test compares with ipvsadm itself on a real kernel).
func TestWriteLayouts(t *testing.T) {
	tcp := &mobyipvs.Service{Address: net.ParseIP("203.0.113.100"), Protocol: unix.IPPROTO_TCP, Port: 80, AddressFamily: unix.AF_INET,
		SchedName: "rr", Netmask: 0xffffffff, Stats: mobyipvs.SvcStats{Connections: 6, PacketsIn: 40, PacketsOut: 30, BytesIn: 2400, BytesOut: 123456789012, CPS: 1, BPSIn: 300}}
	pers := &mobyipvs.Service{Address: net.ParseIP("203.0.113.100"), Protocol: unix.IPPROTO_TCP, Port: 443, AddressFamily: unix.AF_INET,
		SchedName: "wlc", Flags: 1, Timeout: 600, Netmask: 0x00ffffff}
	fwm := &mobyipvs.Service{FWMark: 7, AddressFamily: unix.AF_INET, SchedName: "lc", Netmask: 0xffffffff}
	k := fakeKernel{svcs: []*mobyipvs.Service{fwm, pers, tcp}, dests: map[*mobyipvs.Service][]*mobyipvs.Destination{
		tcp: {
			{Address: net.ParseIP("198.51.100.12"), Port: 8080, Weight: 3, ActiveConnections: 2, InactiveConnections: 1},
			{Address: net.ParseIP("198.51.100.11"), Port: 8080, Weight: 1, Stats: mobyipvs.DstStats{Connections: 6, BytesIn: 2400}},
		},
		pers: {{Address: net.ParseIP("198.51.100.11"), Port: 443, ConnectionFlags: mobyipvs.ConnectionFlagDirectRoute}},
	}}
	svcs, err := Read(k)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[Format]string{
		List: `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  203.0.113.100:80 rr
  -> 198.51.100.11:8080           Masq    1      0          0         
  -> 198.51.100.12:8080           Masq    3      2          1         
TCP  203.0.113.100:443 wlc persistent 600 mask 255.255.255.0
  -> 198.51.100.11:443            Route   0      0          0         
FWM  7 lc
`,
		Stats: `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  203.0.113.100:80                    6       40       30     2400     123G
  -> 198.51.100.11:8080                  6        0        0     2400        0
  -> 198.51.100.12:8080                  0        0        0        0        0
TCP  203.0.113.100:443                   0        0        0        0        0
  -> 198.51.100.11:443                   0        0        0        0        0
FWM  7                                   0        0        0        0        0
`,
		Rate: `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS
  -> RemoteAddress:Port
TCP  203.0.113.100:80                    1        0        0      300        0
  -> 198.51.100.11:8080                  0        0        0        0        0
  -> 198.51.100.12:8080                  0        0        0        0        0
TCP  203.0.113.100:443                   0        0        0        0        0
  -> 198.51.100.11:443                   0        0        0        0        0
FWM  7                                   0        0        0        0        0
`,
	}
	for f, want := range cases {
		var b bytes.Buffer
		if err := Write(&b, svcs, Options{Format: f, Header: DefaultHeader}); err != nil {
			t.Fatal(err)
		}
		if b.String() != want {
			t.Errorf("format %d:\n--- got\n%s--- want\n%s", f, b.String(), want)
		}
	}
}

func TestLargeNum(t *testing.T) {
	for v, want := range map[uint64]string{0: "        0", 99_999_999: " 99999999", 100_000_000: "  100000K",
		123456789012: "     123G", 2_000_000_000_000_000: "    2000T"} {
		if got := largeNum(v, false); got != want {
			t.Errorf("largeNum(%d) = %q, want %q", v, got, want)
		}
	}
	if got := largeNum(123456789012, true); got != " 123456789012" {
		t.Errorf("exact: %q", got)
	}
	if got := largeNum(5, true); got != "        5" {
		t.Errorf("exact small: %q", got)
	}
}

func TestConns(t *testing.T) {
	proc := `Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
TCP CB00710A A2C4 CB007164 0050 C633640B 1F90 ESTABLISHED     899
IP  CB00710A 0000 CB007165 01BB C633640B 01BB NONE            542
TCP 2001:0db8:0000:0000:0000:0000:0000:0010 D431 2001:0db8:0001:0000:0000:0000:0000:0100 20FB 2001:0db8:0002:0000:0000:0000:0000:0011 20FB TIME_WAIT        61
`
	conns, err := ParseConns(strings.NewReader(proc))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteConns(&b, conns); err != nil {
		t.Fatal(err)
	}
	want := `IPVS connection entries
pro expire state       source             virtual            destination
TCP 14:59  ESTABLISHED 203.0.113.10:41668 203.0.113.100:80   198.51.100.11:8080
IP  09:02  NONE        203.0.113.10:0     203.0.113.101:443  198.51.100.11:443
TCP 01:01  TIME_WAIT   [2001:db8::10]:54321 [2001:db8:1::100]:8443 [2001:db8:2::11]:8443
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	for _, bad := range []string{"hdr\nTCP CB00710A A2C4 CB007164 0050 C633640B 1F90 ESTABLISHED\n",
		"hdr\nTCP CB00710 A2C4 CB007164 0050 C633640B 1F90 ESTABLISHED 5\n",
		"hdr\nTCP CB00710A ZZZZ CB007164 0050 C633640B 1F90 ESTABLISHED 5\n"} {
		if _, err := ParseConns(strings.NewReader(bad)); err == nil {
			t.Errorf("no error for %q", bad)
		}
	}
}
