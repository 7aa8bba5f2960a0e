package boot

import (
	"testing"

	"github.com/fulcrum-lb/fulcrum/services/manifest"
)

func TestParseCmdline(t *testing.T) {
	c := ParseCmdline(`console=ttyS0,115200 quiet fulcrum.config=/etc/fulcrum/lb2.yaml x="a b"` + "\n")
	for k, want := range map[string]string{"console": "ttyS0,115200", "quiet": "", "fulcrum.config": "/etc/fulcrum/lb2.yaml", "x": "a b"} {
		if got, ok := c[k]; !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, want)
		}
	}
	if len(c) != 4 {
		t.Errorf("got %d params %v, want 4", len(c), c)
	}
}

func TestServicesParamPicksManifestDaemons(t *testing.T) {
	names := func(c string) (out []string) {
		for _, d := range (&Init{Cmdline: ParseCmdline(c)}).daemons() {
			out = append(out, d.Name)
		}
		return out
	}
	if got := names("quiet"); len(got) != len(manifest.Daemons()) || got[0] != "lbd" || got[1] != "vrrpd" {
		t.Errorf("without fulcrum.services: %v, want all manifest daemons, lbd first", got)
	}
	if got := names("fulcrum.services=vrrpd,lbd"); len(got) != 2 || got[0] != "lbd" || got[1] != "vrrpd" {
		t.Errorf("fulcrum.services=vrrpd,lbd: %v, want lbd then vrrpd (manifest order)", got)
	}
	if got := names("fulcrum.services=none"); len(got) != 0 {
		t.Errorf("fulcrum.services=none: %v, want none", got)
	}
}
