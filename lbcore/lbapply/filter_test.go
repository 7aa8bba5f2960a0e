package lbapply

import (
	"sort"
	"strings"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/filter"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/nat"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/google/nftables/userdata"
)

func desiredFor(t *testing.T, a *Applier, doc string) *engine.Desired {
	t.Helper()
	d, err := a.Desired(parse(t, doc), engine.Overrides{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestIPVSFailureKeepsPreviousFilter: a rejected apply (IPVS fails) leaves
// the input filter of the previous config in the kernel.
func TestIPVSFailureKeepsPreviousFilter(t *testing.T) {
	ns := testkit.NewNS(t, "lbapply")
	fm := filter.NewManager(ns.Fd(), quiet())
	fi := &fakeIPVS{}
	a := &Applier{IPVS: fi, NAT: nat.NewManager(ns.Fd(), quiet()), Filter: fm, Log: quiet()}
	if _, err := a.Apply(ctx, desiredFor(t, a, cfgA)); err != nil {
		t.Fatal(err)
	}
	comments := func() string {
		rules, err := fm.Rules()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ch := range []string{filter.ChainInput, filter.ZoneChain("external"), filter.ZoneChain("internal"), filter.ZoneChain("failover")} {
			for _, r := range rules[ch] {
				c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
				out = append(out, ch+": "+c)
			}
		}
		sets, err := fm.Sets()
		if err != nil {
			t.Fatal(err)
		}
		var el []string
		for n, elems := range sets {
			for _, e := range elems {
				el = append(el, "set "+n+": "+e.Comment)
			}
		}
		sort.Strings(el)
		return strings.Join(append(out, el...), "\n")
	}
	before := comments()
	if !strings.Contains(before, "service api 203.0.113.101 tcp/80-80") || !strings.Contains(before, "port api tcp/8080") {
		t.Fatalf("filter of config A not in the kernel:\n%s", before)
	}
	fi.fail = true
	if _, err := a.Apply(ctx, desiredFor(t, a, cfgB)); err == nil {
		t.Fatal("apply with failing IPVS succeeded")
	}
	if after := comments(); after != before {
		t.Fatalf("input filter not restored after IPVS failure:\n%s\nwas:\n%s", after, before)
	}
	fi.fail = false
	if _, err := a.Apply(ctx, desiredFor(t, a, cfgB)); err != nil {
		t.Fatal(err)
	}
	if after := comments(); !strings.Contains(after, "service api 203.0.113.105") {
		t.Fatalf("good apply did not change the filter:\n%s", after)
	}
}
