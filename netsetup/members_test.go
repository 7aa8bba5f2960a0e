package netsetup

import (
	"net"
	"reflect"
	"testing"
)

func mac(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }

func TestResolveMembersByNameAndMAC(t *testing.T) {
	nics := []NIC{
		{Name: "eth0", MAC: mac("52:54:00:01:01:01"), Index: 2},
		{Name: "eth1", MAC: mac("52:54:00:01:01:02"), Index: 3},
		{Name: "ens5", MAC: mac("52:54:00:01:02:01"), Index: 4},
	}
	found, missing, err := ResolveMembers([]string{"ens5", "52:54:00:01:02:01"}, nics)
	if err == nil {
		t.Fatalf("ens5 selected by name and by MAC must be an error, got found=%v", found)
	}
	found, missing, err = ResolveMembers([]string{"52:54:00:01:01:02", "ens5", "eth9", "52:54:00:aa:aa:aa"}, nics)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range found {
		names = append(names, f.Name)
	}
	if !reflect.DeepEqual(names, []string{"eth1", "ens5"}) {
		t.Fatalf("found %v, want [eth1 ens5] in selector order", names)
	}
	if !reflect.DeepEqual(missing, []string{"eth9", "52:54:00:aa:aa:aa"}) {
		t.Fatalf("missing %v", missing)
	}
}

func TestMACSelectorIsCaseInsensitive(t *testing.T) {
	found, _, err := ResolveMembers([]string{"52:54:00:0A:0B:0C"}, []NIC{{Name: "eth3", MAC: mac("52:54:00:0a:0b:0c")}})
	if err != nil || len(found) != 1 || found[0].Name != "eth3" {
		t.Fatalf("found %v err %v", found, err)
	}
}
