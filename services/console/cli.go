package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/config/redact"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvslist"
	"github.com/fulcrum-lb/fulcrum/services/bondstat"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/power"
)

// ErrLogout ends the CLI session (exit, logout, Ctrl-D).
var ErrLogout = errors.New("logout")

// CLI is lbctl's command set.
type CLI struct {
	API *localapi.Appliance
	Out io.Writer
	// ReadLine reads one more line of input (config pasting); nil: none.
	ReadLine func(prompt string) (string, error)
	// Shell runs the maintenance shell; nil: not offered.
	Shell func() error
	// Power carries out reboot/poweroff (default power.Request).
	Power func(power.Action) error
	// BondDir, IPVSProc and IPVSConns override /proc/net/bonding,
	// /proc/net/ip_vs and /proc/net/ip_vs_conn.
	BondDir, IPVSProc, IPVSConns string
	// OpenIPVS opens the kernel's IPVS table for show ipvs (default: a
	// netlink handle in this namespace).
	OpenIPVS func() (ipvslist.Kernel, io.Closer, error)
	// Timeout bounds each command (default 30 s).
	Timeout time.Duration

	cmds []*command
}

type command struct {
	words []string // fixed words, e.g. show vs
	args  []argSpec
	help  string
	run   func(ctx context.Context, args []string) error
}

type argSpec struct {
	name     string
	optional bool
	complete func(ctx context.Context, prev []string) []string
}

// Init builds the command table; call once before Run/Complete.
func (c *CLI) Init() {
	if c.Power == nil {
		c.Power = power.Request
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	pool := argSpec{name: "POOL", complete: c.poolNames}
	member := argSpec{name: "MEMBER", complete: c.memberNames}
	src := argSpec{name: "URL", optional: true}
	c.cmds = []*command{
		{words: []string{"help"}, help: "list commands", run: c.help},
		{words: []string{"show", "interfaces"}, help: "bonds, members, link and LACP state", run: c.showInterfaces},
		{words: []string{"show", "vs"}, help: "virtual servers with counters (ipvsadm -Ln layout)", run: c.showVS},
		{words: []string{"show", "ipvs"}, args: []argSpec{{name: "--stats|--rate|-c", optional: true}, {name: "--exact", optional: true}},
			help: "the kernel's IPVS table as ipvsadm -Ln prints it (--stats, --rate, --exact, -c/--connections)", run: c.showIPVS},
		{words: []string{"show", "rates"}, help: "conn/s, packets/s and bytes/s of every virtual server and member (last 10 s)", run: c.showRates},
		{words: []string{"show", "pool"}, args: []argSpec{{name: "POOL", optional: true, complete: c.poolNames}}, help: "pools and their members with counters", run: c.showPool},
		{words: []string{"show", "members"}, help: "every member with health, admin state and counters", run: c.showPool},
		{words: []string{"show", "vrrp"}, help: "VRRP instances and state", run: c.showVRRP},
		{words: []string{"show", "sync"}, help: "IPVS connection sync daemons and synced connections", run: c.showSync},
		{words: []string{"show", "health"}, help: "health of every configured member", run: c.showHealth},
		{words: []string{"show", "snat"}, help: "SNAT IPools, rules and FullNAT local addresses", run: c.showSNAT},
		{words: []string{"show", "config"}, help: "the running config", run: c.showConfig},
		{words: []string{"show", "log"}, args: []argSpec{{name: "LINES", optional: true}}, help: "recent log lines (default 50)", run: c.showLog},
		{words: []string{"show", "services"}, help: "daemons as init supervises them", run: c.showServices},
		{words: []string{"show", "boot"}, help: "this boot's phases (kernel, modules, network, daemons, first apply, VRRP) and their times", run: c.showBoot},
		{words: []string{"member", "disable"}, args: []argSpec{pool, member}, help: "take a member out of service (weight 0: it drains)", run: c.member(false)},
		{words: []string{"member", "enable"}, args: []argSpec{pool, member}, help: "put a disabled member back", run: c.member(true)},
		{words: []string{"ha", "switchover"}, help: "hand VRRP mastership to the peer", run: c.switchover},
		{words: []string{"ha", "resume"}, help: "let this node preempt again after a switchover", run: c.resume},
		{words: []string{"config", "validate"}, args: []argSpec{src}, help: "check a config pasted here (end with a line '.') or fetched from URL", run: c.configOp(localapi.PathConfigCheck)},
		{words: []string{"config", "check"}, args: []argSpec{{name: "FILE"}}, help: "validate a config file exactly as the appliance loads it; nothing changes", run: c.configCheck},
		{words: []string{"config", "diff"}, args: []argSpec{{name: "FILE"}}, help: "what applying a config file (or URL) would change; nothing changes", run: c.configDiff},
		{words: []string{"config", "apply"}, args: []argSpec{src}, help: "validate and apply a config (pasted or from URL) here and on the HA peer; rejected by either → nothing changes", run: c.configOp(localapi.PathConfigApply)},
		{words: []string{"config", "apply", "--force-local"}, args: []argSpec{src}, help: "apply on this node only, without the HA peer (the nodes disagree until the peer takes it)", run: c.configOp(localapi.PathConfigApply + "?" + localapi.ForceLocal + "=true")},
		{words: []string{"config", "rollback"}, args: []argSpec{{name: "N", optional: true}}, help: "apply the stored config N back (default 1: the one before the last apply; see 'config history'), here and on the HA peer", run: c.rollback(false)},
		{words: []string{"config", "rollback", "--force-local"}, args: []argSpec{{name: "N", optional: true}}, help: "roll back on this node only", run: c.rollback(true)},
		{words: []string{"config", "history"}, help: "the stored configs (rollback N takes the N shown) and where they are kept", run: c.history},
		{words: []string{"config", "export"}, help: "print the running config in full (secrets included) to put on a config server or stick", run: c.export},
		{words: []string{"reboot"}, help: "stop the daemons cleanly and reboot", run: c.powerCmd(power.Reboot)},
		{words: []string{"poweroff"}, help: "stop the daemons cleanly and power off", run: c.powerCmd(power.PowerOff)},
		{words: []string{"shell"}, help: "the maintenance shell (/bin/sh); 'exit' comes back here", run: c.shell},
		{words: []string{"exit"}, help: "log out", run: func(context.Context, []string) error { return ErrLogout }},
		{words: []string{"logout"}, help: "log out", run: func(context.Context, []string) error { return ErrLogout }},
	}
}

// Run parses and runs one command line.
func (c *CLI) Run(ctx context.Context, line string) error {
	words := strings.Fields(line)
	if len(words) == 0 {
		return nil
	}
	cmd, args, err := c.lookup(words)
	if err != nil {
		return err
	}
	need := 0
	for _, a := range cmd.args {
		if !a.optional {
			need++
		}
	}
	if len(args) < need || len(args) > len(cmd.args) {
		return fmt.Errorf("usage: %s", usage(cmd))
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	return cmd.run(ctx, args)
}

func usage(cmd *command) string {
	s := strings.Join(cmd.words, " ")
	for _, a := range cmd.args {
		if a.optional {
			s += " [" + a.name + "]"
		} else {
			s += " " + a.name
		}
	}
	return s
}

func (c *CLI) lookup(words []string) (*command, []string, error) {
	var best *command
	for _, cmd := range c.cmds {
		if len(words) >= len(cmd.words) && equalWords(words[:len(cmd.words)], cmd.words) {
			if best == nil || len(cmd.words) > len(best.words) {
				best = cmd
			}
		}
	}
	if best == nil {
		var next []string
		for _, cmd := range c.cmds {
			if cmd.words[0] == words[0] && len(cmd.words) > 1 {
				next = append(next, cmd.words[1])
			}
		}
		if len(next) > 0 {
			return nil, nil, fmt.Errorf("%s what? one of: %s", words[0], strings.Join(next, ", "))
		}
		return nil, nil, fmt.Errorf("unknown command %q (try 'help')", words[0])
	}
	return best, words[len(best.words):], nil
}

func equalWords(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Complete is the editor's Completer: command words, then arguments (pool
// and member names from lbd).
func (c *CLI) Complete(line string) ([]string, int) {
	start := strings.LastIndexByte(line, ' ') + 1
	prefix := line[start:]
	done := strings.Fields(line[:start])
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if strings.HasPrefix(s, prefix) && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, cmd := range c.cmds {
		n := len(done)
		if n < len(cmd.words) {
			if equalWords(done, cmd.words[:n]) {
				add(cmd.words[n])
			}
			continue
		}
		if !equalWords(done[:len(cmd.words)], cmd.words) {
			continue
		}
		ai := n - len(cmd.words)
		if ai < len(cmd.args) && cmd.args[ai].complete != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			for _, s := range cmd.args[ai].complete(ctx, done[len(cmd.words):]) {
				add(s)
			}
			cancel()
		}
	}
	return out, start
}

func (c *CLI) help(context.Context, []string) error {
	for _, cmd := range c.cmds {
		fmt.Fprintf(c.Out, "  %-40s %s\n", usage(cmd), cmd.help)
	}
	fmt.Fprintln(c.Out, "Tab completes commands, pool and member names; Ctrl-D logs out.")
	return nil
}

func (c *CLI) poolNames(ctx context.Context, _ []string) []string {
	vss, err := c.API.VirtualServers(ctx)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, vs := range vss {
		if vs.Pool != "" && !seen[vs.Pool] {
			seen[vs.Pool] = true
			out = append(out, vs.Pool)
		}
	}
	return out
}

func (c *CLI) memberNames(ctx context.Context, prev []string) []string {
	hs, err := c.API.Health(ctx)
	if err != nil || len(prev) == 0 {
		return nil
	}
	var out []string
	for _, h := range hs {
		if h.Pool == prev[0] {
			out = append(out, h.Member)
		}
	}
	return out
}

func (c *CLI) showInterfaces(context.Context, []string) error {
	bonds, err := bondstat.Read(c.BondDir)
	if err != nil {
		return err
	}
	WriteInterfaces(c.Out, bonds, func(name string) string {
		b, err := os.ReadFile("/sys/class/net/" + name + "/operstate")
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	})
	return nil
}

func (c *CLI) ipvsHeader() string {
	p := c.IPVSProc
	if p == "" {
		p = "/proc/net/ip_vs"
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return first
}

func (c *CLI) showVS(ctx context.Context, _ []string) error {
	vss, err := c.API.VirtualServers(ctx)
	if err != nil {
		return err
	}
	WriteIPVS(c.Out, c.ipvsHeader(), vss)
	return nil
}

// showIPVS reads the kernel itself (not through lbd), as ipvsadm does: it
// answers even when lbd does not.
func (c *CLI) showIPVS(_ context.Context, args []string) error {
	o := ipvslist.Options{Header: ipvslist.ProcHeader(orDefault(c.IPVSProc, "/proc/net/ip_vs"))}
	conns := false
	for _, a := range args {
		switch a {
		case "--stats":
			o.Format = ipvslist.Stats
		case "--rate":
			o.Format = ipvslist.Rate
		case "--exact":
			o.Exact = true
		case "-c", "--connections":
			conns = true
		default:
			return fmt.Errorf("show ipvs: unknown option %q (have --stats, --rate, --exact, -c/--connections)", a)
		}
	}
	if conns {
		if o.Format != ipvslist.List || o.Exact {
			return errors.New("show ipvs: -c/--connections takes no other option")
		}
		cs, err := ipvslist.ReadConns(orDefault(c.IPVSConns, ipvslist.ConnPath))
		if err != nil {
			return err
		}
		return ipvslist.WriteConns(c.Out, cs)
	}
	if len(args) == 2 && !o.Exact {
		return errors.New("show ipvs: one of --stats or --rate, optionally with --exact")
	}
	open := c.OpenIPVS
	if open == nil {
		open = func() (ipvslist.Kernel, io.Closer, error) {
			h, err := ipvs.Open("")
			if err != nil {
				return nil, nil, err
			}
			return h, closerFunc(func() error { h.Close(); return nil }), nil
		}
	}
	k, closer, err := open()
	if err != nil {
		return err
	}
	defer closer.Close()
	svcs, err := ipvslist.Read(k)
	if err != nil {
		return err
	}
	return ipvslist.Write(c.Out, svcs, o)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (c *CLI) showRates(ctx context.Context, _ []string) error {
	vss, err := c.API.VirtualServers(ctx)
	if err != nil {
		return err
	}
	return WriteRates(c.Out, vss)
}

func (c *CLI) showPool(ctx context.Context, args []string) error {
	vss, err := c.API.VirtualServers(ctx)
	if err != nil {
		return err
	}
	pool := ""
	if len(args) > 0 {
		pool = args[0]
	}
	return WritePools(c.Out, vss, pool)
}

func (c *CLI) showVRRP(ctx context.Context, _ []string) error {
	st, err := c.API.VRRP(ctx)
	if err != nil {
		return err
	}
	WriteVRRP(c.Out, st)
	return nil
}

func (c *CLI) showSync(ctx context.Context, _ []string) error {
	st, err := c.API.Sync(ctx)
	if err != nil {
		return err
	}
	WriteSync(c.Out, st)
	return nil
}

func (c *CLI) showHealth(ctx context.Context, _ []string) error {
	hs, err := c.API.Health(ctx)
	if err != nil {
		return err
	}
	WriteHealth(c.Out, hs)
	return nil
}

func (c *CLI) showSNAT(ctx context.Context, _ []string) error {
	s, err := c.API.SNAT(ctx)
	if err != nil {
		return err
	}
	WriteSNAT(c.Out, s)
	return nil
}

func (c *CLI) showConfig(ctx context.Context, _ []string) error {
	b, err := c.API.Config(ctx)
	if err != nil {
		return err
	}
	s, serr := c.API.ConfigSync(ctx)
	WriteConfigSync(c.Out, s, serr)
	if b, err = redact.Config(b); err != nil {
		return err
	}
	c.Out.Write(b)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		fmt.Fprintln(c.Out)
	}
	return nil
}

func (c *CLI) showLog(ctx context.Context, args []string) error {
	n := 50
	if len(args) > 0 {
		v, err := strconv.Atoi(args[0])
		if err != nil || v < 1 {
			return fmt.Errorf("show log: %q is not a number of lines", args[0])
		}
		n = v
	}
	page, err := c.API.Log(ctx, 0, 0)
	if err != nil {
		return err
	}
	lines := page.Lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	WriteLog(c.Out, lines)
	return nil
}

func (c *CLI) showBoot(ctx context.Context, _ []string) error {
	bt, err := c.API.Boot(ctx)
	if err != nil {
		return err
	}
	WriteBootTimes(c.Out, bt)
	return nil
}

func (c *CLI) showServices(ctx context.Context, _ []string) error {
	ss, err := c.API.Services(ctx)
	if err != nil {
		return err
	}
	for _, s := range ss {
		state := "stopped"
		if s.Running {
			state = fmt.Sprintf("running pid %d since %s", s.PID, s.Since.Format("15:04:05"))
		}
		extra := ""
		if s.WatchdogKills > 0 {
			extra += fmt.Sprintf("  watchdog kills %d", s.WatchdogKills)
		}
		if s.OutputDropped > 0 {
			extra += fmt.Sprintf("  output lines dropped %d", s.OutputDropped)
		}
		fmt.Fprintf(c.Out, "%-10s %-40s restarts %d  %s%s\n", s.Name, state, s.Restarts, s.LastExit, extra)
	}
	return nil
}

func (c *CLI) member(enable bool) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		m, err := c.API.Member(ctx, enable, localapi.MemberRef{Pool: args[0], Member: args[1]})
		if err != nil {
			return err
		}
		fmt.Fprintln(c.Out, m.Message)
		return nil
	}
}

func (c *CLI) switchover(ctx context.Context, _ []string) error {
	m, err := c.API.Switchover(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.Out, m.Message)
	return nil
}

func (c *CLI) resume(ctx context.Context, _ []string) error {
	var m localapi.Message
	if err := c.API.VRRPD.Post(ctx, localapi.PathResume, nil, &m); err != nil {
		return err
	}
	fmt.Fprintln(c.Out, m.Message)
	return nil
}

// configOp reads the config (URL argument, or pasted lines up to a '.'
// line), and sends it to lbd.
func (c *CLI) configOp(path string) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		var yaml []byte
		if !strings.HasPrefix(path, localapi.PathConfigRevert) {
			var err error
			if len(args) > 0 {
				yaml, err = FetchConfig(ctx, args[0])
			} else {
				yaml, err = c.paste()
			}
			if err != nil {
				return err
			}
			if path == localapi.PathConfigCheck {
				// validation needs no daemon: the same parser lbd uses
				if _, err := config.Parse(yaml); err != nil {
					return fmt.Errorf("config is invalid; nothing changed:\n%v", err)
				}
				fmt.Fprintln(c.Out, "config is valid")
				return nil
			}
		}
		res, err := c.API.ConfigOp(ctx, path, yaml)
		if err != nil {
			return err
		}
		if !res.OK {
			msg := res.Message
			for _, e := range res.Errors {
				msg += "\n  " + e
			}
			return errors.New(msg)
		}
		fmt.Fprintln(c.Out, res.Message)
		return nil
	}
}

// rollback applies the stored config N back (force: this node only).
func (c *CLI) rollback(force bool) func(context.Context, []string) error {
	return func(ctx context.Context, args []string) error {
		back := 1
		if len(args) > 0 {
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return fmt.Errorf("config rollback: %q is not a number of configs back (1 or more; see 'config history'); nothing changed", args[0])
			}
			back = n
		}
		res, err := c.API.Rollback(ctx, back, force)
		if err != nil {
			return err
		}
		if !res.OK {
			msg := res.Message
			for _, e := range res.Errors {
				msg += "\n  " + e
			}
			return errors.New(msg)
		}
		fmt.Fprintln(c.Out, res.Message)
		return nil
	}
}

func (c *CLI) history(ctx context.Context, _ []string) error {
	h, err := c.API.ConfigHistory(ctx)
	if err != nil {
		return err
	}
	kept := "kept across reboots"
	if !h.Persistent {
		kept = "NOT kept across reboots"
	}
	fmt.Fprintf(c.Out, "Stored configs: %s, %s, the last %d\n", h.Store, kept, h.Keep)
	fmt.Fprintf(c.Out, "%-4s %-10s %-20s %-9s %-12s %s\n", "N", "GENERATION", "SAVED", "SOURCE", "SHA256", "")
	for _, e := range h.Configs {
		note := ""
		if e.Running {
			note = "running"
		}
		if e.Damaged != "" {
			note = "DAMAGED: " + e.Damaged
		}
		sum := e.SHA256
		if len(sum) > 12 {
			sum = sum[:12]
		}
		fmt.Fprintf(c.Out, "%-4d %-10d %-20s %-9s %-12s %s\n", e.Back, e.Generation, e.Saved.UTC().Format("2006-01-02 15:04:05"), e.Source, sum, note)
	}
	return nil
}

// export prints the running config as lbd holds it, unredacted: the file
// to put on the config server (PXE) or the stick.
func (c *CLI) export(ctx context.Context, _ []string) error {
	b, err := c.API.Config(ctx)
	if err != nil {
		return err
	}
	c.Out.Write(b)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		fmt.Fprintln(c.Out)
	}
	return nil
}

// configCheck validates a config file with the loader every daemon uses and
// lists every problem as `field.path (line N): reason`.
func (c *CLI) configCheck(_ context.Context, args []string) error {
	return config.Check(c.Out, args[0])
}

// configDiff shows what applying a config file (or http(s) URL) would
// change. A config that does not validate is refused with the same lines
// `config check` prints, and lbd is not asked.
func (c *CLI) configDiff(ctx context.Context, args []string) error {
	var yaml []byte
	var err error
	if strings.Contains(args[0], "://") {
		yaml, err = FetchConfig(ctx, args[0])
	} else {
		yaml, err = os.ReadFile(args[0])
	}
	if err != nil {
		return fmt.Errorf("config %s: %w", args[0], err)
	}
	if _, err := config.Parse(yaml); err != nil {
		probs := config.Problems(err)
		for _, p := range probs {
			fmt.Fprintln(c.Out, p)
		}
		return fmt.Errorf("%s is invalid: %d problem(s); nothing changed", args[0], len(probs))
	}
	res, err := c.API.ConfigDiff(ctx, yaml)
	if err != nil {
		return err
	}
	if !res.OK {
		msg := res.Message
		for _, e := range res.Errors {
			msg += "\n  " + e
		}
		return errors.New(msg)
	}
	fmt.Fprint(c.Out, res.Text)
	return nil
}

func (c *CLI) paste() ([]byte, error) {
	if c.ReadLine == nil {
		return nil, errors.New("no input to paste a config from; give a URL")
	}
	fmt.Fprintln(c.Out, "Paste the config; end with a line holding only '.' (Ctrl-C cancels).")
	var b strings.Builder
	for {
		l, err := c.ReadLine("")
		if err != nil {
			return nil, fmt.Errorf("config input cancelled: %w", err)
		}
		if strings.TrimSpace(l) == "." {
			break
		}
		b.WriteString(l)
		b.WriteByte('\n')
		if b.Len() > 1<<20 {
			return nil, errors.New("config longer than 1 MiB")
		}
	}
	return []byte(b.String()), nil
}

// FetchConfig gets a config over HTTP(S) (at most 1 MiB).
func FetchConfig(ctx context.Context, url string) ([]byte, error) {
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return nil, fmt.Errorf("config URL %q: only http:// and https:// are supported", url)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("config URL %q: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching config: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching config %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20+1))
	if err != nil {
		return nil, fmt.Errorf("fetching config %s: %w", url, err)
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("config at %s is larger than 1 MiB", url)
	}
	return b, nil
}

func (c *CLI) powerCmd(a power.Action) func(context.Context, []string) error {
	return func(context.Context, []string) error {
		fmt.Fprintf(c.Out, "%s requested\n", a)
		return c.Power(a)
	}
}

func (c *CLI) shell(context.Context, []string) error {
	if c.Shell == nil {
		return errors.New("no shell here")
	}
	return c.Shell()
}
