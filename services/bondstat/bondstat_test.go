package bondstat

import (
	"strings"
	"testing"
)

// An 802.3ad bond as Linux 6.1 prints it (trimmed), one member bundled and
// one down.
const lacpBond = `Ethernet Channel Bonding Driver: v6.1.0

Bonding Mode: IEEE 802.3ad Dynamic link aggregation
Transmit Hash Policy: layer3+4 (1)
MII Status: up
MII Polling Interval (ms): 100

802.3ad info
LACP active: on
LACP rate: fast
Min links: 0
Aggregator selection policy (ad_select): stable
System priority: 65535
System MAC address: 52:54:00:01:02:01
Active Aggregator Info:
	Aggregator ID: 1
	Number of ports: 1
	Actor Key: 15
	Partner Key: 1
	Partner Mac Address: 00:00:00:00:00:00

Slave Interface: eth2
MII Status: up
Speed: 10000 Mbps
Duplex: full
Link Failure Count: 2
Permanent HW addr: 52:54:00:01:02:01
Slave queue ID: 0
Aggregator ID: 1
Actor Churn State: none
Partner Churn State: churned
details actor lacp pdu:
    system priority: 65535
    port state: 63
details partner lacp pdu:
    system priority: 65535
    port state: 1

Slave Interface: eth3
MII Status: down
Speed: Unknown
Duplex: Unknown
Link Failure Count: 1
Permanent HW addr: 52:54:00:01:02:02
Aggregator ID: 2
details actor lacp pdu:
    port state: 71
details partner lacp pdu:
    port state: 1
`

func TestParseLACPBond(t *testing.T) {
	b, err := Parse("internal", strings.NewReader(lacpBond))
	if err != nil {
		t.Fatal(err)
	}
	if b.Mode != "IEEE 802.3ad Dynamic link aggregation" || b.MII != "up" || b.Aggregator != 1 || b.LACPRate != "fast" || len(b.Members) != 2 {
		t.Fatalf("bond %+v", b)
	}
	e2, e3 := b.Members[0], b.Members[1]
	if e2.Name != "eth2" || !e2.Up() || e2.LinkFailures != 2 || e2.ActorState != 63 || e2.PartnerState != 1 || e2.Aggregator != 1 || e2.PartnerChurn != "churned" {
		t.Errorf("eth2 %+v", e2)
	}
	if got := b.LACP(e2); got != "bundled" {
		t.Errorf("eth2 LACP %q, want bundled", got)
	}
	if e3.Up() || b.LACP(e3) != "standby" {
		t.Errorf("eth3 %+v LACP %q, want down/standby", e3, b.LACP(e3))
	}
}

func TestParseActiveBackupAndRejectsOtherFiles(t *testing.T) {
	ab := "Bonding Mode: fault-tolerance (active-backup)\nMII Status: up\nCurrently Active Slave: eth1\n\nSlave Interface: eth0\nMII Status: down\n\nSlave Interface: eth1\nMII Status: up\n"
	b, err := Parse("failover", strings.NewReader(ab))
	if err != nil || b.ActiveMember != "eth1" || len(b.Members) != 2 || b.Members[0].Up() || b.LACP(b.Members[1]) != "" {
		t.Fatalf("%+v %v", b, err)
	}
	if _, err := Parse("x", strings.NewReader("hello: world\n")); err == nil {
		t.Error("a file without a bonding mode was accepted")
	}
}
