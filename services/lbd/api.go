// Package lbd is the LB daemon's side of the local API (services/localapi): virtual
// servers with kernel counters, member health, SNAT, the running config,
// config validate/apply/rollback, and member disable/enable.
//
// Disable works through the config loader: a disabled member is loaded with
// weight 0, so the next apply keeps it in IPVS without new connections and
// its existing ones finish (it drains). Config apply writes the new file
// (keeping the previous one for rollback) and asks for a reload through the
// same channel as SIGHUP.
package lbd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	mobyipvs "github.com/moby/ipvs"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// KernelIPVS reads services and destinations with counters.
type KernelIPVS interface {
	GetServices() ([]*mobyipvs.Service, error)
	GetDestinations(*mobyipvs.Service) ([]*mobyipvs.Destination, error)
}

// applyStatus reports the outcome of applies (the LB controller's status):
// when the last config was applied and the last error.
type applyStatus func() (appliedAt time.Time, lastErr string, lastErrAt time.Time)

// healthStates maps "pool/addr:port" (configured port) to up/down/unknown;
// nil: no health checks run.
type healthStates func() map[string]string

type Server struct {
	path   string
	load   func(string) (*config.Config, error)
	reload chan<- struct{}
	kernel KernelIPVS
	log    logrus.FieldLogger
	status applyStatus  // optional
	health healthStates // optional
	// statusHandler serves GET /status (the controller's own JSON).
	statusHandler http.Handler

	mu       sync.Mutex
	disabled map[string]bool // "pool/addr" or "pool/addr:port" as given
	running  *config.Config  // as loaded, before disables
	loads    uint64
	applyMu  sync.Mutex
}

// New returns the local API server for the config at path.
func New(path string, load func(string) (*config.Config, error), reload chan<- struct{}, k KernelIPVS, log logrus.FieldLogger) *Server {
	return &Server{path: path, load: load, reload: reload, kernel: k, log: log, disabled: map[string]bool{}}
}

// Loader is what the apply loop loads configs with: the file, then disabled
// members at weight 0.
func (a *Server) Loader(path string) (*config.Config, error) {
	cfg, err := a.load(path)
	if err != nil {
		return nil, err
	}
	pristine, _ := config.Parse(cfg.Source())
	a.mu.Lock()
	defer a.mu.Unlock()
	a.loads++
	if pristine != nil {
		a.running = pristine
	} else {
		a.running = cfg
	}
	zero := 0
	for name, p := range cfg.Pools {
		for i := range p.Members {
			if a.isDisabled(name, p.Members[i]) {
				p.Members[i].Weight = &zero
			}
		}
	}
	return cfg, nil
}

func memberKeys(pool string, m config.Member) []string {
	keys := []string{pool + "/" + m.Address.String()}
	if m.Port != 0 {
		keys = append(keys, pool+"/"+netip.AddrPortFrom(m.Address.Addr, uint16(m.Port)).String())
	}
	return keys
}

func (a *Server) isDisabled(pool string, m config.Member) bool {
	for _, k := range memberKeys(pool, m) {
		if a.disabled[k] {
			return true
		}
	}
	return false
}

// Handler serves the local API.
func (a *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if a.statusHandler != nil {
		mux.Handle("/status", a.statusHandler)
	}
	localapi.Route(mux, "GET", localapi.PathVS, a.getVS)
	localapi.Route(mux, "GET", localapi.PathHealth, a.getHealth)
	localapi.Route(mux, "GET", localapi.PathSNAT, a.getSNAT)
	localapi.Route(mux, "GET", localapi.PathConfig, a.getConfig)
	localapi.Route(mux, "POST", localapi.PathConfigCheck, a.postConfig(false))
	localapi.Route(mux, "POST", localapi.PathConfigApply, a.postConfig(true))
	localapi.Route(mux, "POST", localapi.PathConfigRevert, a.postRollback)
	localapi.Route(mux, "POST", localapi.PathMemberDisable, a.postMember(false))
	localapi.Route(mux, "POST", localapi.PathMemberEnable, a.postMember(true))
	return mux
}

func (a *Server) runningConfig() (*config.Config, error) {
	a.mu.Lock()
	cfg := a.running
	a.mu.Unlock()
	if cfg == nil {
		return nil, errors.New("lbd has not applied a config yet")
	}
	return cfg, nil
}

func fwdName(flags uint32) string {
	switch flags & mobyipvs.ConnFwdMask {
	case mobyipvs.ConnectionFlagMasq:
		return "Masq"
	case mobyipvs.ConnectionFlagTunnel:
		return "Tunnel"
	case mobyipvs.ConnectionFlagDirectRoute:
		return "Route"
	case mobyipvs.ConnectionFlagLocalNode:
		return "Local"
	}
	return "?"
}

func serviceID(protocol uint16, addr netip.Addr, port uint16, mark uint32) string {
	if mark != 0 {
		return fmt.Sprintf("FWM  %d", mark)
	}
	p := "TCP"
	if protocol == unix.IPPROTO_UDP {
		p = "UDP"
	}
	return p + "  " + netip.AddrPortFrom(addr, port).String()
}

func toAddr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// virtualServers reads the kernel table and names it from the config.
func (a *Server) virtualServers() ([]localapi.VirtualServer, error) {
	cfg, _ := a.runningConfig()
	type vsInfo struct {
		vs *config.VirtualServer
	}
	named := map[string]*config.VirtualServer{}
	if cfg != nil {
		if st, err := ipvs.Desired(cfg, nil); err == nil {
			byName := map[string]*config.VirtualServer{}
			for i := range cfg.VirtualServers {
				byName[cfg.VirtualServers[i].Name] = &cfg.VirtualServers[i]
			}
			for k, s := range st.Services {
				named[serviceID(k.Protocol, k.Addr, k.Port, k.FWMark)] = byName[s.Name]
			}
		}
	}
	health := a.memberHealth()
	kss, err := a.kernel.GetServices()
	if err != nil {
		return nil, fmt.Errorf("reading IPVS services: %w", err)
	}
	out := []localapi.VirtualServer{}
	for _, ks := range kss {
		id := serviceID(ks.Protocol, toAddr(ks.Address), ks.Port, ks.FWMark)
		proto, addr, _ := strings.Cut(id, "  ")
		v := localapi.VirtualServer{Protocol: proto, Address: addr, Scheduler: ks.SchedName, Members: []localapi.Member{},
			Stats: localapi.Stats{Conns: uint64(ks.Stats.Connections), PacketsIn: uint64(ks.Stats.PacketsIn), PacketsOut: uint64(ks.Stats.PacketsOut), BytesIn: ks.Stats.BytesIn, BytesOut: ks.Stats.BytesOut}}
		if ks.Flags&ipvs.FlagPersistent != 0 {
			v.Persistent = ks.Timeout
		}
		cvs := named[id]
		if cvs != nil {
			v.Name, v.Pool, v.Mode = cvs.Name, cvs.Pool, string(cvs.Mode)
		}
		kds, err := a.kernel.GetDestinations(ks)
		if err != nil {
			return nil, fmt.Errorf("reading IPVS destinations of %s: %w", id, err)
		}
		for _, kd := range kds {
			ap := netip.AddrPortFrom(toAddr(kd.Address), kd.Port)
			m := localapi.Member{Pool: v.Pool, Address: ap.String(), Forward: fwdName(kd.ConnectionFlags), Weight: kd.Weight,
				Active: kd.ActiveConnections, Inactive: kd.InactiveConnections, Health: "unmonitored",
				Stats: localapi.Stats{Conns: uint64(kd.Stats.Connections), PacketsIn: uint64(kd.Stats.PacketsIn), PacketsOut: uint64(kd.Stats.PacketsOut), BytesIn: kd.Stats.BytesIn, BytesOut: kd.Stats.BytesOut}}
			if cfg != nil && v.Pool != "" {
				if p := cfg.Pools[v.Pool]; p != nil {
					for _, cm := range p.Members {
						if cm.Address.Addr == ap.Addr() && (cm.Port == 0 || uint16(cm.Port) == ap.Port()) {
							h := health[v.Pool+"/"+cm.Address.String()+"/"+fmt.Sprint(cm.Port)]
							m.Health, m.Disabled = h.Health, h.Disabled
						}
					}
				}
			}
			v.Members = append(v.Members, m)
		}
		sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].Address < v.Members[j].Address })
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Protocol+out[i].Address < out[j].Protocol+out[j].Address })
	return out, nil
}

// memberHealth lists every configured member, keyed "pool/addr/port".
func (a *Server) memberHealth() map[string]localapi.MemberHealth {
	out := map[string]localapi.MemberHealth{}
	cfg, err := a.runningConfig()
	if err != nil {
		return out
	}
	var states map[string]string
	if a.health != nil {
		states = a.health()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, p := range cfg.Pools {
		for _, m := range p.Members {
			ap := m.Address.Addr
			label := ap.String()
			if m.Port != 0 {
				label = netip.AddrPortFrom(ap, uint16(m.Port)).String()
			}
			h := localapi.MemberHealth{Pool: name, Member: label, Monitor: p.Monitor, Health: "unmonitored", Disabled: a.isDisabled(name, m)}
			if p.Monitor != "" {
				h.Health = "unknown"
				if s, ok := states[name+"/"+netip.AddrPortFrom(ap, uint16(m.Port)).String()]; ok {
					h.Health = s
				}
			}
			out[name+"/"+m.Address.String()+"/"+fmt.Sprint(m.Port)] = h
		}
	}
	return out
}

func (a *Server) getVS(w http.ResponseWriter, r *http.Request) {
	vss, err := a.virtualServers()
	if err != nil {
		localapi.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	localapi.WriteJSON(w, http.StatusOK, vss)
}

func (a *Server) getHealth(w http.ResponseWriter, r *http.Request) {
	m := a.memberHealth()
	out := make([]localapi.MemberHealth, 0, len(m))
	for _, h := range m {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pool != out[j].Pool {
			return out[i].Pool < out[j].Pool
		}
		return out[i].Member < out[j].Member
	})
	localapi.WriteJSON(w, http.StatusOK, out)
}

func (a *Server) getSNAT(w http.ResponseWriter, r *http.Request) {
	cfg, err := a.runningConfig()
	if err != nil {
		localapi.WriteError(w, http.StatusServiceUnavailable, err)
		return
	}
	s := localapi.SNATStatus{IPools: map[string][]string{}, Rules: []localapi.SNATRule{}, LocalAddressPools: map[string][]string{}}
	for n, p := range cfg.SNAT.IPools {
		s.IPools[n] = rangeStrings(p.Addresses)
	}
	for _, r := range cfg.SNAT.Rules {
		s.Rules = append(s.Rules, localapi.SNATRule{Source: r.Source.String(), Out: r.Out, IPool: r.IPool})
	}
	for n, p := range cfg.LocalAddressPools {
		s.LocalAddressPools[n] = rangeStrings(p.Addresses)
	}
	localapi.WriteJSON(w, http.StatusOK, s)
}

func (a *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	cfg, err := a.runningConfig()
	if err != nil {
		localapi.WriteError(w, http.StatusServiceUnavailable, err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(cfg.Source())
}

// configErrors lists a config error's field errors one per line.
func configErrors(err error) []string {
	var l *cfgerr.List
	if errors.As(err, &l) {
		var out []string
		for _, e := range l.Errors() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

func readBody(r *http.Request) ([]byte, error) {
	b := make([]byte, 0, 4096)
	buf := make([]byte, 4096)
	for {
		n, err := r.Body.Read(buf)
		b = append(b, buf[:n]...)
		if len(b) > 1<<20 {
			return nil, errors.New("config larger than 1 MiB")
		}
		if err != nil {
			break
		}
	}
	return b, nil
}

func (a *Server) postConfig(apply bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		if err != nil {
			localapi.WriteJSON(w, http.StatusRequestEntityTooLarge, localapi.ConfigResult{Message: err.Error()})
			return
		}
		if _, err := config.Parse(body); err != nil {
			localapi.WriteJSON(w, http.StatusUnprocessableEntity, localapi.ConfigResult{Message: "config is invalid; nothing changed", Errors: configErrors(err)})
			return
		}
		if !apply {
			localapi.WriteJSON(w, http.StatusOK, localapi.ConfigResult{OK: true, Message: "config is valid"})
			return
		}
		res := a.applyFile(r.Context(), body, true)
		code := http.StatusOK
		if !res.OK {
			code = http.StatusUnprocessableEntity
		}
		localapi.WriteJSON(w, code, res)
	}
}

func (a *Server) prevPath() string { return filepath.Join(localapi.Dir, "config.prev.yaml") }

// applyFile writes body to the config path (the old file kept for
// rollback when keep), asks for a reload and waits for its outcome; a
// failed apply puts the old file back.
func (a *Server) applyFile(ctx context.Context, body []byte, keep bool) localapi.ConfigResult {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	old, err := os.ReadFile(a.path)
	if err != nil {
		return localapi.ConfigResult{Message: fmt.Sprintf("reading the running config file: %v; nothing changed", err)}
	}
	if err := writeAtomic(a.path, body); err != nil {
		return localapi.ConfigResult{Message: fmt.Sprintf("writing %s: %v; nothing changed", a.path, err)}
	}
	if err := a.reloadAndWait(ctx); err != nil {
		if werr := writeAtomic(a.path, old); werr != nil {
			a.log.WithError(werr).Error("config apply failed and the old file could not be put back")
		}
		a.reloadAndWait(ctx)
		return localapi.ConfigResult{Message: "config not applied; running state unchanged", Errors: []string{err.Error()}}
	}
	if keep {
		if err := os.MkdirAll(filepath.Dir(a.prevPath()), 0o755); err == nil {
			_ = writeAtomic(a.prevPath(), old)
		}
	}
	a.log.WithField("path", a.path).Info("config applied through the local API")
	return localapi.ConfigResult{OK: true, Message: "config applied (LB part now; vrrp and network changes take effect at the next boot)"}
}

// writeAtomic replaces the config at path; only root may read it (it
// holds the API token and the console password hash).
func writeAtomic(path string, b []byte) error {
	tmp := path + ".new"
	os.Remove(tmp) // a leftover keeps its mode
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// reloadAndWait asks for a reload and waits until the loader ran and the
// apply loop reported success or failure.
func (a *Server) reloadAndWait(ctx context.Context) error {
	a.mu.Lock()
	loads := a.loads
	a.mu.Unlock()
	var before time.Time
	if a.status != nil {
		before, _, _ = a.status()
	}
	start := time.Now()
	select {
	case a.reload <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		loaded := a.loads > loads
		a.mu.Unlock()
		if loaded {
			if a.status == nil {
				return nil
			}
			applied, lastErr, errAt := a.status()
			if applied.After(before) {
				return nil
			}
			if lastErr != "" && !errAt.Before(start) {
				return errors.New(lastErr)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return errors.New("the LB daemon did not finish the reload within 20s")
}

func (a *Server) postRollback(w http.ResponseWriter, r *http.Request) {
	prev, err := os.ReadFile(a.prevPath())
	if err != nil {
		localapi.WriteJSON(w, http.StatusConflict, localapi.ConfigResult{Message: "no earlier config to roll back to (no apply since boot); nothing changed"})
		return
	}
	res := a.applyFile(r.Context(), prev, false)
	if res.OK {
		os.Remove(a.prevPath())
		res.Message = "rolled back to the config before the last apply"
	}
	code := http.StatusOK
	if !res.OK {
		code = http.StatusUnprocessableEntity
	}
	localapi.WriteJSON(w, code, res)
}

func (a *Server) postMember(enable bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var ref localapi.MemberRef
		if err := localapi.ReadJSON(r, &ref); err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		cfg, err := a.runningConfig()
		if err != nil {
			localapi.WriteError(w, http.StatusServiceUnavailable, err)
			return
		}
		p := cfg.Pools[ref.Pool]
		if p == nil {
			var names []string
			for n := range cfg.Pools {
				names = append(names, n)
			}
			sort.Strings(names)
			localapi.WriteError(w, http.StatusNotFound, fmt.Errorf("no pool %q (pools: %s); nothing changed", ref.Pool, strings.Join(names, ", ")))
			return
		}
		key := ""
		for _, m := range p.Members {
			for _, k := range memberKeys(ref.Pool, m) {
				if k == ref.Pool+"/"+ref.Member {
					key = memberKeys(ref.Pool, m)[0]
				}
			}
		}
		if key == "" {
			var names []string
			for _, m := range p.Members {
				names = append(names, m.Address.String())
			}
			localapi.WriteError(w, http.StatusNotFound, fmt.Errorf("pool %s has no member %q (members: %s); nothing changed", ref.Pool, ref.Member, strings.Join(names, ", ")))
			return
		}
		a.applyMu.Lock()
		defer a.applyMu.Unlock()
		a.mu.Lock()
		was := a.disabled[key]
		if enable {
			delete(a.disabled, key)
		} else {
			a.disabled[key] = true
		}
		a.mu.Unlock()
		if was == !enable {
			localapi.WriteJSON(w, http.StatusOK, localapi.Message{Message: fmt.Sprintf("member %s of pool %s is already %s", ref.Member, ref.Pool, map[bool]string{true: "enabled", false: "disabled"}[enable])})
			return
		}
		if err := a.reloadAndWait(r.Context()); err != nil {
			a.mu.Lock()
			if enable {
				a.disabled[key] = true
			} else {
				delete(a.disabled, key)
			}
			a.mu.Unlock()
			localapi.WriteError(w, http.StatusInternalServerError, fmt.Errorf("member %s: %v; admin state unchanged", ref.Member, err))
			return
		}
		msg := fmt.Sprintf("member %s of pool %s disabled: weight 0, existing connections drain", ref.Member, ref.Pool)
		if enable {
			msg = fmt.Sprintf("member %s of pool %s enabled", ref.Member, ref.Pool)
		}
		a.log.WithFields(logrus.Fields{"pool": ref.Pool, "member": ref.Member, "enabled": enable}).Info("member admin state changed")
		localapi.WriteJSON(w, http.StatusOK, localapi.Message{Message: msg})
	}
}

// UseController takes apply outcomes, health states and /status from the
// LB controller.
func (a *Server) UseController(c *lbapply.Controller) {
	a.status = func() (time.Time, string, time.Time) {
		st := c.Status()
		return st.AppliedAt, st.LastError, st.LastErrorAt
	}
	a.health = func() map[string]string {
		out := map[string]string{}
		for _, p := range c.Status().Pools {
			for _, m := range p.Members {
				out[p.Name+"/"+m.Address] = m.State.String()
			}
		}
		return out
	}
	a.statusHandler = lbapply.StatusHandler(c)
}

func rangeStrings(rs []config.AddrRange) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}
