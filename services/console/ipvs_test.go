package console

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvslist"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

type oneService struct{}

func (oneService) GetServices() ([]*mobyipvs.Service, error) {
	return []*mobyipvs.Service{{Address: net.ParseIP("203.0.113.100"), Protocol: unix.IPPROTO_TCP, Port: 80, AddressFamily: unix.AF_INET,
		SchedName: "rr", Netmask: 0xffffffff, Stats: mobyipvs.SvcStats{Connections: 123456789, CPS: 42}}}, nil
}
func (oneService) GetDestinations(*mobyipvs.Service) ([]*mobyipvs.Destination, error) {
	return []*mobyipvs.Destination{{Address: net.ParseIP("198.51.100.11"), Port: 8080, Weight: 1}}, nil
}

// show ipvs picks the ipvsadm layout from its options and refuses what
// ipvsadm would not combine.
func TestShowIPVSOptions(t *testing.T) {
	dir := t.TempDir()
	connFile := filepath.Join(dir, "ip_vs_conn")
	os.WriteFile(connFile, []byte("Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"+
		"TCP CB00710A A2C4 CB007164 0050 C633640B 1F90 ESTABLISHED     899\n"), 0o644)
	var out strings.Builder
	c := &CLI{Out: &out, IPVSProc: filepath.Join(dir, "none"), IPVSConns: connFile,
		OpenIPVS: func() (ipvslist.Kernel, io.Closer, error) { return oneService{}, io.NopCloser(nil), nil }}
	c.Init()
	for line, want := range map[string]string{
		"show ipvs":                 "TCP  203.0.113.100:80 rr\n  -> 198.51.100.11:8080           Masq    1 ",
		"show ipvs --stats":         "TCP  203.0.113.100:80              123456K",
		"show ipvs --stats --exact": "TCP  203.0.113.100:80             123456789",
		"show ipvs --rate":          "TCP  203.0.113.100:80                   42",
		"show ipvs -c":              "TCP 14:59  ESTABLISHED 203.0.113.10:41668 203.0.113.100:80   198.51.100.11:8080\n",
		"show ipvs --connections":   "IPVS connection entries\n",
	} {
		out.Reset()
		if err := c.Run(context.Background(), line); err != nil {
			t.Errorf("%s: %v", line, err)
			continue
		}
		if !strings.Contains(out.String(), want) {
			t.Errorf("%s printed\n%s\nwant it to contain %q", line, out.String(), want)
		}
		if !strings.HasPrefix(out.String(), ipvslist.DefaultHeader) && !strings.HasPrefix(out.String(), "IPVS connection entries") {
			t.Errorf("%s: no ipvsadm header:\n%s", line, out.String())
		}
	}
	for _, line := range []string{"show ipvs --bogus", "show ipvs -c --stats", "show ipvs --stats --rate", "show ipvs --exact --exact --x"} {
		out.Reset()
		if err := c.Run(context.Background(), line); err == nil {
			t.Errorf("%s: no error, printed %q", line, out.String())
		}
	}
}

func TestWriteRates(t *testing.T) {
	var out strings.Builder
	err := WriteRates(&out, []localapi.VirtualServer{{Name: "web", Protocol: "TCP", Address: "203.0.113.100:80",
		Rate:    &localapi.Rate{Conns: 12.5, PacketsIn: 100, BytesIn: 3 << 20},
		Members: []localapi.Member{{Address: "198.51.100.11:80"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"web (TCP  203.0.113.100:80)", "12.5", "3.0 MiB", "  -> 198.51.100.11:80", "CONN/S"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("rates output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Count(out.String(), "-") < 5 {
		t.Errorf("a member without samples must show dashes:\n%s", out.String())
	}
}
