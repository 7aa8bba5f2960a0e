package keepalived

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// importPair converts src with the lb1 pair base (plus extra YAML) and
// returns the loaded config (nil if it does not validate) and the issues.
func importPair(t *testing.T, src, extraBase string) (*config.Config, string, error) {
	t.Helper()
	base, err := os.ReadFile("testdata/pair/base-lb1.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Import(fstest.MapFS{"k.conf": {Data: []byte(src)}}, "k.conf", append(base, extraBase...), "base.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, verr := config.Parse(res.YAML)
	return cfg, issueText(res.Issues), verr
}

func TestConvertDetails(t *testing.T) {
	const vrrp = `vrrp_instance V {
  interface eth1
  dont_track_primary
  virtual_router_id 7
  priority 150
  advert_int 2
  nopreempt
  unicast_peer {
    203.0.113.3
    192.0.2.2
  }
  track_interface {
    eth2 weight -30
  }
  virtual_ipaddress {
    203.0.113.100
    198.51.100.1/24
  }
}
`
	const vs = `virtual_server 203.0.113.100 80 {
  lb_kind DR
  quorum 4
  real_server 198.51.100.11 8080 {
    weight 2
    TCP_CHECK {
      connect_timeout 1
    }
    HTTP_GET {
      url {
        path /
      }
    }
  }
  real_server 198.51.100.12 80 {
    weight 2
  }
  bogus_directive 1
}
virtual_server_group UNUSED {
  203.0.113.100 81
}
virtual_server fwmark 5 {
  real_server 198.51.100.11 80
}
`
	cfg, issues, err := importPair(t, vrrp+vs, "vrrp:\n  peers: [192.0.2.2]\n")
	if err != nil {
		t.Fatalf("does not validate: %v\n%s", err, issues)
	}
	v := cfg.VRRP
	if v.Priority != 150 || v.AdvertInterval != 200 || !v.NoPreempt || len(v.Peers) != 1 || fmt.Sprint(v.UnicastPeers) != "[192.0.2.2]" {
		t.Errorf("vrrp %+v", v)
	}
	if len(v.Track) != 1 || v.Track[0].Group != "internal" || v.Track[0].Action != "decrement" || v.Track[0].Weight != 30 {
		t.Errorf("track %+v (want internal decrement 30: dont_track_primary leaves eth1 untracked)", v.Track)
	}
	in := v.Instances[0]
	if fmt.Sprint(in.External) != "[203.0.113.100/32]" || fmt.Sprint(in.Internal) != "[198.51.100.1/24]" {
		t.Errorf("addresses by BASE subnet: internal %v external %v", in.Internal, in.External)
	}
	pool := cfg.Pools["tcp-203-0-113-100-80"]
	if pool == nil || pool.Quorum != 2 || pool.Members[0].Port != 0 || pool.Members[1].Port != 0 {
		t.Fatalf("pool %+v (quorum 4 at weight 2 = 2 members; DR members carry no port)", pool)
	}
	for _, want := range []string{
		"k.conf:9: vrrp_instance V: unicast_peer 203.0.113.3 is not on the Failover subnet",
		"k.conf:23: virtual_server 203.0.113.100 80: real_server 198.51.100.11 8080: DR cannot change the destination port",
		"k.conf:28: virtual_server 203.0.113.100 80: real_server 198.51.100.11 8080: HTTP_GET: Fulcrum runs one check per member",
		"k.conf:34: virtual_server 203.0.113.100 80: real_server 198.51.100.12 80 has no check",
		"k.conf:37: virtual_server 203.0.113.100 80: bogus_directive: not converted: no Fulcrum equivalent",
		"k.conf:39: virtual_server_group UNUSED: no virtual_server uses it",
		"k.conf:42: virtual_server fwmark 5: a firewall-mark virtual server is not converted",
	} {
		if !strings.Contains(issues, want) {
			t.Errorf("issues lack %q:\n%s", want, issues)
		}
	}
}

// The base config's own virtual servers are replaced, with a word; a
// statement the converter never reads is reported by the fallback.
func TestBaseReplacedAndFallback(t *testing.T) {
	base := "version: 1\nnetwork: {}\nvirtual_servers: []\nvrrp: {peers: [192.0.2.2]}\n"
	nodes := []*Node{{File: "k.conf", Line: 1, Key: "virtual_server", Args: []string{"203.0.113.9", "80"}, IsBlock: true, Children: []*Node{
		{File: "k.conf", Line: 2, Key: "real_server", Args: []string{"198.51.100.9", "80"}, IsBlock: true, Children: []*Node{
			{File: "k.conf", Line: 3, Key: "weight", Args: []string{"2"}, IsBlock: true, Children: []*Node{{File: "k.conf", Line: 4, Key: "stray", Args: []string{"1"}}}},
			{File: "k.conf", Line: 5, Key: "TCP_CHECK", IsBlock: true},
		}},
	}}}
	res, err := Convert(nodes, nil, "k.conf", []byte(base), "base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := issueText(res.Issues)
	for _, want := range []string{
		"base.yaml:3: the base config's virtual_servers is replaced by the imported one",
		"k.conf:4: stray: not converted: the importer does not read it in this place",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("issues lack %q:\n%s", want, text)
		}
	}
	if !strings.Contains(string(res.YAML), "type: tcp") {
		t.Errorf("no tcp monitor:\n%s", res.YAML)
	}
}

// Strings from the input that YAML would misread come out quoted.
func TestYAMLQuoting(t *testing.T) {
	src := `virtual_server 203.0.113.100 80 {
  virtualhost "yes: #no"
  real_server 198.51.100.11 80 {
    HTTP_GET {
      url {
        path "/a: b #c"
        regex "^ok: [0-9]+$"
      }
    }
  }
}
`
	cfg, issues, err := importPair(t, src, "vrrp: {peers: [192.0.2.2]}\n")
	if err == nil {
		t.Fatalf("a VIP outside any vrrp instance validated?\n%s", issues)
	}
	_ = cfg
	res, ierr := Import(fstest.MapFS{"k.conf": {Data: []byte(src)}}, "k.conf", nil, "", Options{})
	if ierr != nil {
		t.Fatal(ierr)
	}
	y := string(res.YAML)
	for _, want := range []string{`path: '/a: b #c'`, `host: 'yes: #no'`, `expect_body: '^ok: [0-9]+$'`} {
		if !strings.Contains(y, want) {
			t.Errorf("YAML lacks %s:\n%s", want, y)
		}
	}
}
