package console

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/ctsync"

	"github.com/fulcrum-lb/fulcrum/services/bondstat"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

// IPVSHeader is the first line of `ipvsadm -Ln` (the kernel's
// /proc/net/ip_vs first line when readable).
const IPVSHeader = "IP Virtual Server version 1.2.1 (size=4096)"

// WriteIPVS prints services in the layout of `ipvsadm -Ln`, then their
// counters in the layout of `ipvsadm -Ln --stats --exact`.
func WriteIPVS(w io.Writer, header string, vss []localapi.VirtualServer) {
	if header == "" {
		header = IPVSHeader
	}
	fmt.Fprintln(w, header)
	fmt.Fprintln(w, "Prot LocalAddress:Port Scheduler Flags")
	fmt.Fprintln(w, "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn")
	for _, vs := range vss {
		line := fmt.Sprintf("%s  %s %s", vs.Protocol, vs.Address, vs.Scheduler)
		if vs.Persistent > 0 {
			line += fmt.Sprintf(" persistent %d", vs.Persistent)
		}
		fmt.Fprintln(w, line)
		for _, m := range vs.Members {
			fmt.Fprintf(w, "  -> %-28s %-7s %-6d %-10d %-10d\n", m.Address, m.Forward, m.Weight, m.Active, m.Inactive)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes")
	fmt.Fprintln(w, "  -> RemoteAddress:Port")
	for _, vs := range vss {
		s := vs.Stats
		fmt.Fprintf(w, "%-33s %8d %8d %8d %8d %8d\n", vs.Protocol+"  "+vs.Address, s.Conns, s.PacketsIn, s.PacketsOut, s.BytesIn, s.BytesOut)
		for _, m := range vs.Members {
			s := m.Stats
			fmt.Fprintf(w, "  -> %-28s %8d %8d %8d %8d %8d\n", m.Address, s.Conns, s.PacketsIn, s.PacketsOut, s.BytesIn, s.BytesOut)
		}
	}
}

// WriteRates prints each virtual server's and member's rates, computed by
// lbd from counter deltas ("-" until it has two samples).
func WriteRates(w io.Writer, vss []localapi.VirtualServer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "VIRTUAL SERVER / MEMBER\tCONN/S\tPKT/S IN\tPKT/S OUT\tBYTES/S IN\tBYTES/S OUT\t")
	row := func(name string, r *localapi.Rate) {
		if r == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t\n", name)
			return
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.1f\t%s\t%s\t\n", name, r.Conns, r.PacketsIn, r.PacketsOut, HumanBytes(r.BytesIn), HumanBytes(r.BytesOut))
	}
	for _, vs := range vss {
		name := vs.Protocol + "  " + vs.Address
		if vs.Name != "" {
			name = vs.Name + " (" + name + ")"
		}
		row(name, vs.Rate)
		for _, m := range vs.Members {
			row("  -> "+m.Address, m.Rate)
		}
	}
	return tw.Flush()
}

// HumanBytes writes a byte rate with a binary unit (B, KiB, MiB, GiB).
func HumanBytes(v float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// WritePools prints members grouped by pool (all pools, or only pool).
func WritePools(w io.Writer, vss []localapi.VirtualServer, pool string) error {
	type row struct {
		vs string
		m  localapi.Member
	}
	pools := map[string][]row{}
	for _, vs := range vss {
		p := vs.Pool
		if p == "" {
			p = "(unknown)"
		}
		for _, m := range vs.Members {
			pools[p] = append(pools[p], row{vs.Name, m})
		}
		if _, ok := pools[p]; !ok {
			pools[p] = nil
		}
	}
	if pool != "" {
		if _, ok := pools[pool]; !ok {
			return fmt.Errorf("no pool %q in the running virtual servers (have: %s)", pool, strings.Join(sortedKeys(pools), ", "))
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tVS\tMEMBER\tHEALTH\tADMIN\tWEIGHT\tACTIVE\tINACTIVE\tCONNS\tBYTES_IN\tBYTES_OUT")
	for _, p := range sortedKeys(pools) {
		if pool != "" && p != pool {
			continue
		}
		for _, r := range pools[p] {
			admin := "enabled"
			if r.m.Disabled {
				admin = "disabled"
			}
			health := r.m.Health
			if r.m.SlowStart != nil {
				health += ", " + r.m.SlowStart.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", p, r.vs, r.m.Address, health, admin, r.m.Weight, r.m.Active, r.m.Inactive, r.m.Stats.Conns, r.m.Stats.BytesIn, r.m.Stats.BytesOut)
		}
	}
	return tw.Flush()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// WriteInterfaces prints bonds and their members.
func WriteInterfaces(w io.Writer, bonds []bondstat.Bond, operstate func(string) string) {
	if len(bonds) == 0 {
		fmt.Fprintln(w, "no bonds (maintenance state, or network not set up)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BOND\tMODE\tSTATE\tMEMBER\tLINK\tSPEED\tFAILURES\tLACP\tACTIVE")
	for _, b := range bonds {
		state := b.MII
		if operstate != nil {
			if s := operstate(b.Name); s != "" {
				state = s
			}
		}
		if len(b.Members) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t-\n", b.Name, b.Mode, state)
		}
		for _, m := range b.Members {
			active := ""
			if b.ActiveMember == m.Name {
				active = "*"
			}
			lacp := b.LACP(m)
			if lacp == "" {
				lacp = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", b.Name, b.Mode, state, m.Name, m.MII, m.Speed, m.LinkFailures, lacp, active)
		}
	}
	tw.Flush()
}

// WriteVRRP prints VRRP instances.
func WriteVRRP(w io.Writer, st localapi.VRRPStatus) {
	if !st.Enabled {
		fmt.Fprintln(w, "vrrp: no instances configured (standalone node)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tVRID\tFAMILY\tSTATE\tPRIORITY\tMASTER\tTRANSITIONS")
	for _, in := range st.Instances {
		m := in.Master
		if m == "" {
			m = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%d\n", in.Instance, in.VRID, in.Family, in.State, in.Priority, m, in.Transitions)
	}
	tw.Flush()
	keys := sortedKeys(st.Counters)
	if len(keys) > 0 {
		var parts []string
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", k, st.Counters[k]))
		}
		fmt.Fprintln(w, "counters: "+strings.Join(parts, " "))
	}
}

// WriteSync prints the IPVS connection sync state, then conntrack sync's.
func WriteSync(w io.Writer, st localapi.SyncStatus) {
	writeIPVSSync(w, st)
	writeConntrackSync(w, st.Conntrack)
}

func writeConntrackSync(w io.Writer, c localapi.ConntrackSync) {
	if !c.Enabled {
		if c.Error != "" {
			fmt.Fprintln(w, c.Error)
		}
		return
	}
	synced := "no"
	if c.Synced {
		synced = "yes, since " + c.SyncedAt.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "conntrack sync: %s, peer %s port %d, sync id %d, holds the peer's table: %s\n", c.Role, c.Peer, c.Port, c.SyncID, synced)
	fmt.Fprintf(w, "  sent %d messages (%d entries), %d events, %d table dumps, %d resent\n", c.Sent.Messages, c.Sent.Entries, c.Events, c.Dumps, c.Resent)
	fmt.Fprintf(w, "  received %d messages (%d entries): %d installed, %d deleted, %d refused; gaps %d, nacks %d, resyncs asked %d\n",
		c.Received.Messages, c.Received.Entries, c.Installed, c.Deleted, c.InstallErr, c.Gaps, c.Nacks, c.Resyncs)
	var parts []string
	for _, k := range []string{ctsync.DropMalformed, ctsync.DropWrongPeer, ctsync.DropForeign, ctsync.DropReplay, ctsync.DropDuplicate, ctsync.DropUnexpected} {
		parts = append(parts, fmt.Sprintf("%s=%d", k, c.Dropped[k]))
	}
	fmt.Fprintf(w, "  dropped: %s; send errors %d\n", strings.Join(parts, " "), c.SendErr)
	if c.LastError != "" {
		fmt.Fprintf(w, "  last error: %s\n", c.LastError)
	}
}

func writeIPVSSync(w io.Writer, st localapi.SyncStatus) {
	if !st.Enabled {
		msg := "sync: off (standalone node)"
		if st.LastError != "" {
			msg = "sync: off: " + st.LastError
		}
		fmt.Fprintln(w, msg)
		return
	}
	fmt.Fprintf(w, "role %s, sync id %d on %s\n", st.Role, st.SyncID, st.Interface)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DAEMON\tINTERFACE\tSYNCID\tGROUP\tPORT\tTTL\tMAXLEN")
	for _, d := range st.Daemons {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\n", d.State, d.Interface, d.SyncID, d.Group, d.Port, d.TTL, d.MaxLen)
	}
	tw.Flush()
	if len(st.Daemons) == 0 {
		fmt.Fprintln(w, "(no daemon running)")
	}
	if st.ConnsError != "" {
		fmt.Fprintf(w, "connections: %s\n", st.ConnsError)
	} else {
		fmt.Fprintf(w, "connections: %d local, %d synced from the peer\n", st.ConnsLocal, st.ConnsSynced)
	}
	fmt.Fprintf(w, "reconciles=%d started=%d stopped=%d errors=%d\n", st.Reconciles, st.Started, st.Stopped, st.Errors)
	if st.LastError != "" {
		fmt.Fprintf(w, "last error: %s\n", st.LastError)
	}
}

// WriteHealth prints member health.
func WriteHealth(w io.Writer, hs []localapi.MemberHealth) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POOL\tMEMBER\tMONITOR\tHEALTH\tADMIN")
	for _, h := range hs {
		admin := "enabled"
		if h.Disabled {
			admin = "disabled"
		}
		mon := h.Monitor
		if mon == "" {
			mon = "-"
		}
		health := h.Health
		if h.PoolPanic {
			health += " (POOL IN PANIC: serving anyway)"
		}
		if h.SlowStart != nil {
			health += ", " + h.SlowStart.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Pool, h.Member, mon, health, admin)
	}
	tw.Flush()
}

// WriteSNAT prints the SNAT setup.
func WriteSNAT(w io.Writer, s localapi.SNATStatus) {
	if len(s.IPools) == 0 && len(s.Rules) == 0 && len(s.LocalAddressPools) == 0 {
		fmt.Fprintln(w, "snat: nothing configured")
		return
	}
	for _, n := range sortedKeys(s.IPools) {
		fmt.Fprintf(w, "ipool %s: %s\n", n, strings.Join(s.IPools[n], ", "))
	}
	for _, r := range s.Rules {
		fmt.Fprintf(w, "rule: from %s out %s → ipool %s\n", r.Source, r.Out, r.IPool)
	}
	for _, n := range sortedKeys(s.LocalAddressPools) {
		fmt.Fprintf(w, "local address pool %s (FullNAT): %s\n", n, strings.Join(s.LocalAddressPools[n], ", "))
	}
}

// WriteLog prints log lines.
func WriteLog(w io.Writer, lines []localapi.LogLine) {
	for _, l := range lines {
		fmt.Fprintf(w, "%s %s| %s\n", l.Time.Format("15:04:05.000"), l.Source, l.Text)
	}
}

// WriteConfigSync prints whether the HA nodes run the same config, as
// YAML comment lines (the config shown after them stays valid YAML):
// each node's config generation and hash, and AGREE or DISAGREE.
func WriteConfigSync(w io.Writer, s localapi.ConfigSync, err error) {
	short := func(h string) string {
		if len(h) > 16 {
			return h[:16]
		}
		return h
	}
	switch {
	case err != nil:
		fmt.Fprintf(w, "# config sync: unknown (%v)\n", err)
		return
	case !s.On:
		fmt.Fprintf(w, "# config: generation %d hash %s\n# config sync: off (%s)\n", s.Generation, short(s.Hash), s.Off)
		return
	}
	fmt.Fprintf(w, "# config: this node %s generation %d hash %s\n", s.Self, s.Generation, short(s.Hash))
	for _, p := range s.Peers {
		switch {
		case !p.Reachable:
			fmt.Fprintf(w, "# config: peer %s UNREACHABLE (%s); last known generation %d hash %s\n", p.Address, p.Error, p.Generation, short(p.Hash))
		case p.Agree:
			fmt.Fprintf(w, "# config: peer %s generation %d hash %s: same config\n", p.Address, p.Generation, short(p.Hash))
		default:
			fmt.Fprintf(w, "# config: peer %s generation %d hash %s: DIFFERENT config\n", p.Address, p.Generation, short(p.Hash))
		}
	}
	if s.Agree {
		fmt.Fprintln(w, "# config sync: the nodes AGREE")
	} else {
		fmt.Fprintln(w, "# config sync: the nodes DISAGREE")
	}
	var drops []string
	for r, n := range s.Dropped {
		if n > 0 {
			drops = append(drops, fmt.Sprintf("%s %d", r, n))
		}
	}
	if len(drops) > 0 {
		sort.Strings(drops)
		fmt.Fprintf(w, "# config sync: messages dropped: %s\n", strings.Join(drops, ", "))
	}
}

// WriteBootTimes renders init's record of this boot: each phase, when it
// ended since the kernel started and how long it took.
func WriteBootTimes(w io.Writer, bt localapi.BootTimes) {
	fmt.Fprintf(w, "%-12s %10s %10s\n", "PHASE", "AT", "TOOK")
	for _, s := range bt.Steps() {
		fmt.Fprintf(w, "%-12s %9.3fs %9.3fs\n", s.Phase, s.At.Seconds(), s.Took.Seconds())
	}
	state := "complete"
	if !bt.Complete {
		state = "still booting (first apply or VRRP not reported yet)"
	}
	fmt.Fprintf(w, "kernel %.2fs, init %.2fs (kernel start to last phase); %s\n", bt.KernelShare().Seconds(), bt.InitShare().Seconds(), state)
}
