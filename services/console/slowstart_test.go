package console

import (
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

// A ramping member's line says so, with its share and the time left, in
// show pools and show health; a member not ramping says nothing of it.
func TestSlowStartShown(t *testing.T) {
	ramp := &localapi.SlowStart{Percent: 40, LeftSeconds: 12}
	vss := []localapi.VirtualServer{{Name: "web", Pool: "web", Members: []localapi.Member{
		{Address: "198.51.100.11:8080", Health: "up", Weight: 10},
		{Address: "198.51.100.12:8080", Health: "up", Weight: 4, SlowStart: ramp},
	}}}
	var b strings.Builder
	if err := WritePools(&b, vss, ""); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if len(lines) < 3 || !strings.Contains(lines[2], "198.51.100.12:8080  up, slow start 40% (12 s left)") || strings.Contains(lines[1], "slow start") {
		t.Fatalf("show pools:\n%s", b.String())
	}
	b.Reset()
	WriteHealth(&b, []localapi.MemberHealth{{Pool: "web", Member: "198.51.100.12:8080", Monitor: "web", Health: "up", SlowStart: ramp}})
	if !strings.Contains(b.String(), "up, slow start 40% (12 s left)") {
		t.Fatalf("show health:\n%s", b.String())
	}
}
