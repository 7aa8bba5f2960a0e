// Package bondstat reads the state of the appliance's bonds and their
// members from /proc/net/bonding (mode, MII link state, active member, LACP
// aggregator and port states) for the console and the metrics.
package bondstat

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Bond is one bond's state.
type Bond struct {
	Name         string   `json:"name"`
	Mode         string   `json:"mode"`
	MII          string   `json:"mii"` // up or down
	ActiveMember string   `json:"active_member,omitempty"`
	Aggregator   int      `json:"aggregator,omitempty"` // 802.3ad active aggregator ID
	LACPRate     string   `json:"lacp_rate,omitempty"`
	Members      []Member `json:"members"`
}

// Member is one bond member (slave).
type Member struct {
	Name          string `json:"name"`
	MII           string `json:"mii"`
	Speed         string `json:"speed,omitempty"`
	Duplex        string `json:"duplex,omitempty"`
	LinkFailures  int    `json:"link_failures"`
	MAC           string `json:"mac,omitempty"`
	Aggregator    int    `json:"aggregator,omitempty"`
	ActorState    int    `json:"actor_state"`   // LACP port state bits, -1 when unknown
	PartnerState  int    `json:"partner_state"` // -1 when unknown
	ActorChurn    string `json:"actor_churn,omitempty"`
	PartnerChurn  string `json:"partner_churn,omitempty"`
	lacpDetailsOf string
}

// LACP port state bits (IEEE 802.1AX).
const (
	LACPActivity     = 0x01
	LACPTimeout      = 0x02
	LACPAggregation  = 0x04
	LACPSync         = 0x08
	LACPCollecting   = 0x10
	LACPDistributing = 0x20
	LACPDefaulted    = 0x40
	LACPExpired      = 0x80
)

// Up reports whether the member's link is up.
func (m Member) Up() bool { return m.MII == "up" }

// LACP summarises an 802.3ad member's state in b: "bundled" (collecting and
// distributing in the active aggregator), "standby" (other aggregator),
// "negotiating", "defaulted" (no partner PDUs), or "" for other modes.
func (b Bond) LACP(m Member) string {
	if !strings.Contains(b.Mode, "802.3ad") || m.ActorState < 0 {
		return ""
	}
	switch {
	case m.Aggregator != 0 && b.Aggregator != 0 && m.Aggregator != b.Aggregator:
		return "standby"
	case m.ActorState&(LACPCollecting|LACPDistributing) == LACPCollecting|LACPDistributing:
		if m.PartnerState >= 0 && m.PartnerState&LACPDefaulted == 0 && m.ActorState&LACPDefaulted == 0 {
			return "bundled"
		}
		return "bundled(defaulted partner)"
	case m.ActorState&LACPDefaulted != 0:
		return "defaulted"
	}
	return "negotiating"
}

// Parse reads one /proc/net/bonding/<name> file.
func Parse(name string, r io.Reader) (Bond, error) {
	b := Bond{Name: name}
	var cur *Member
	section := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		lk := strings.ToLower(k)
		switch {
		case k == "Slave Interface":
			b.Members = append(b.Members, Member{Name: v, ActorState: -1, PartnerState: -1})
			cur = &b.Members[len(b.Members)-1]
			section = ""
			continue
		case lk == "details actor lacp pdu":
			section = "actor"
			continue
		case lk == "details partner lacp pdu":
			section = "partner"
			continue
		}
		if cur == nil {
			switch k {
			case "Bonding Mode":
				b.Mode = v
			case "MII Status":
				b.MII = v
			case "Currently Active Slave":
				if v != "None" {
					b.ActiveMember = v
				}
			case "LACP rate":
				b.LACPRate = v
			case "Aggregator ID":
				b.Aggregator, _ = strconv.Atoi(v)
			}
			continue
		}
		switch {
		case k == "MII Status":
			cur.MII = v
		case k == "Speed":
			cur.Speed = v
		case k == "Duplex":
			cur.Duplex = v
		case k == "Link Failure Count":
			cur.LinkFailures, _ = strconv.Atoi(v)
		case k == "Permanent HW addr":
			cur.MAC = v
		case k == "Aggregator ID" && section == "":
			cur.Aggregator, _ = strconv.Atoi(v)
		case k == "Actor Churn State":
			cur.ActorChurn = v
		case k == "Partner Churn State":
			cur.PartnerChurn = v
		case lk == "port state" && section == "actor":
			cur.ActorState, _ = strconv.Atoi(v)
		case lk == "port state" && section == "partner":
			cur.PartnerState, _ = strconv.Atoi(v)
		}
	}
	if err := sc.Err(); err != nil {
		return b, fmt.Errorf("bond %s: %w", name, err)
	}
	if b.Mode == "" {
		return b, fmt.Errorf("bond %s: no 'Bonding Mode' line: not a bonding status file", name)
	}
	return b, nil
}

// Read reads every bond under dir ("" = /proc/net/bonding), by name.
func Read(dir string) ([]Bond, error) {
	if dir == "" {
		dir = "/proc/net/bonding"
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("bonds: %w", err)
	}
	var out []Bond
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("bonds: %w", err)
		}
		b, err := Parse(e.Name(), f)
		f.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
