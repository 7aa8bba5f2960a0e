// Package lbd is the LB daemon's side of the local API (services/localapi): virtual
// servers with kernel counters, member health, SNAT, the running config,
// config validate/diff/apply/rollback, and member disable/enable.
//
// Every write goes through the LB controller's synchronous Apply and answers
// with its outcome. Disable is an operator override (engine.Overrides): the
// member stays in IPVS at weight 0, so new connections go elsewhere and its
// existing ones finish (it drains); the config file is not edited. Config
// apply applies the new config first and writes the file (mode 0600,
// atomically, the previous one kept for rollback) only once the kernel holds
// it; the apply runs to the end even if the client goes away, so the kernel,
// the API's view and the file never disagree.
package lbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/fulcrum-lb/fulcrum/lbcore/cfgdiff"
	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/fulcrum-lb/fulcrum/lbcore/rates"
	"github.com/fulcrum-lb/fulcrum/services/cfgpeer"
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

// lockedKernel serialises reads: a moby/ipvs handle is one netlink socket,
// and the API's requests and the rate sampler read concurrently.
type lockedKernel struct {
	mu sync.Mutex
	k  KernelIPVS
}

func (l *lockedKernel) GetServices() ([]*mobyipvs.Service, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.k.GetServices()
}

func (l *lockedKernel) GetDestinations(s *mobyipvs.Service) ([]*mobyipvs.Destination, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.k.GetDestinations(s)
}

// Server is lbd's local API.
type Server struct {
	path   string
	ctrl   *lbapply.Controller
	kernel KernelIPVS
	log    logrus.FieldLogger
	// statusHandler serves GET /status (the controller's own JSON).
	statusHandler http.Handler
	writeMu       sync.Mutex // one config or override change at a time
	// sync offers applies to the HA peer (nil: off, syncOff says why).
	sync    *cfgpeer.Node
	syncOff string
	// rates holds counter samples of every service and member (RunSampler).
	rates *rates.Ring
}

// New returns the local API server for the config at path, applying
// through ctrl.
func New(path string, ctrl *lbapply.Controller, k KernelIPVS, log logrus.FieldLogger) *Server {
	return &Server{path: path, ctrl: ctrl, kernel: &lockedKernel{k: k}, log: log, statusHandler: lbapply.StatusHandler(ctrl), rates: rates.New(rates.DefaultKeep)}
}

// Handler serves the local API.
func (a *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if a.statusHandler != nil {
		mux.Handle("/status", a.statusHandler)
	}
	localapi.Route(mux, "GET", localapi.PathVS, a.getVS)
	localapi.Route(mux, "GET", localapi.PathRates, a.getRates)
	localapi.Route(mux, "GET", localapi.PathHealth, a.getHealth)
	localapi.Route(mux, "GET", localapi.PathSNAT, a.getSNAT)
	localapi.Route(mux, "GET", localapi.PathConfig, a.getConfig)
	localapi.Route(mux, "POST", localapi.PathConfigCheck, a.postConfig(false))
	localapi.Route(mux, "POST", localapi.PathConfigApply, a.postConfig(true))
	localapi.Route(mux, "POST", localapi.PathConfigRevert, a.postRollback)
	localapi.Route(mux, "POST", localapi.PathConfigDiff, a.postDiff)
	localapi.Route(mux, "GET", localapi.PathConfigSync, func(w http.ResponseWriter, r *http.Request) {
		localapi.WriteJSON(w, http.StatusOK, a.syncStatus())
	})
	localapi.Route(mux, "POST", localapi.PathMemberDisable, a.postMember(false))
	localapi.Route(mux, "POST", localapi.PathMemberEnable, a.postMember(true))
	return mux
}

func (a *Server) runningConfig() (*config.Config, error) {
	cfg, _ := a.ctrl.Running()
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
	named := map[string]*config.VirtualServer{}
	if cfg != nil {
		for i := range cfg.VirtualServers {
			k := engine.ServiceKey(&cfg.VirtualServers[i])
			named[serviceID(k.Protocol, k.Addr, k.Port, k.FWMark)] = &cfg.VirtualServers[i]
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
		v.Rate = a.rate(id)
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
				Stats: localapi.Stats{Conns: uint64(kd.Stats.Connections), PacketsIn: uint64(kd.Stats.PacketsIn), PacketsOut: uint64(kd.Stats.PacketsOut), BytesIn: kd.Stats.BytesIn, BytesOut: kd.Stats.BytesOut},
				Rate:  a.rate(memberKey(id, ap))}
			if cfg != nil && v.Pool != "" {
				if p := cfg.Pools[v.Pool]; p != nil {
					for _, cm := range p.Members {
						if cm.Address.Addr == ap.Addr() && (cm.Port == 0 || uint16(cm.Port) == ap.Port()) {
							h := health[cm.Ref(v.Pool)]
							m.Health, m.Disabled, m.Check = h.Health, h.Disabled, h.Check
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

// memberHealth lists every configured member with its health and admin
// state, from the controller's status (the pool policy's view).
func (a *Server) memberHealth() map[config.MemberRef]localapi.MemberHealth {
	out := map[config.MemberRef]localapi.MemberHealth{}
	for _, p := range a.ctrl.Status().Pools {
		for _, m := range p.Members {
			h := localapi.MemberHealth{Pool: p.Name, Member: m.Ref.Label(), Monitor: p.Monitor, Health: "unmonitored", Disabled: m.Disabled}
			if p.Monitor != "" {
				h.Health = m.State.String()
				h.Check = localapi.Check{LastOK: m.LastOK, LastReason: m.LastReason, LastCheck: m.LastCheck, Since: m.Since}
			}
			out[m.Ref] = h
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

// readBody reads a request body of at most 1 MiB.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if len(b) > 1<<20 {
		return nil, errors.New("config larger than 1 MiB")
	}
	return b, err
}

func (a *Server) postConfig(apply bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		if err != nil {
			localapi.WriteJSON(w, http.StatusRequestEntityTooLarge, localapi.ConfigResult{Message: err.Error()})
			return
		}
		if _, err := config.Parse(body); err != nil {
			localapi.WriteJSON(w, http.StatusUnprocessableEntity, localapi.ConfigResult{Message: "config is invalid; nothing changed", Errors: config.Problems(err)})
			return
		}
		if !apply {
			localapi.WriteJSON(w, http.StatusOK, localapi.ConfigResult{OK: true, Message: "config is valid"})
			return
		}
		res := a.applyConfig(r.Context(), body, forceLocal(r))
		code := http.StatusOK
		if !res.OK {
			code = http.StatusUnprocessableEntity
		}
		localapi.WriteJSON(w, code, res)
	}
}

// postDiff answers what applying the posted config would change, from the
// kernel states the apply's own translation gives for the running and the
// posted config under the running overrides. Nothing changes; an invalid
// config is refused exactly as validate refuses it.
func (a *Server) postDiff(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		localapi.WriteJSON(w, http.StatusRequestEntityTooLarge, localapi.ConfigDiff{Message: err.Error()})
		return
	}
	cfg, err := config.Parse(body)
	if err != nil {
		localapi.WriteJSON(w, http.StatusUnprocessableEntity, localapi.ConfigDiff{Message: "config is invalid; nothing changed", Errors: config.Problems(err)})
		return
	}
	running, ov := a.ctrl.Running()
	d, err := cfgdiff.Compute(running, cfg, func(c *config.Config) (*engine.Desired, error) { return a.ctrl.Desired(c, ov) })
	if err != nil {
		localapi.WriteJSON(w, http.StatusUnprocessableEntity, localapi.ConfigDiff{Message: "config cannot be applied; nothing changed", Errors: []string{err.Error()}})
		return
	}
	res := localapi.ConfigDiff{OK: true, Message: "what an apply would change (nothing changed)", Reboot: d.NeedsReboot(), Text: d.String()}
	for _, s := range d.Sections {
		res.Sections = append(res.Sections, localapi.DiffSection{Title: s.Title, Live: s.Live, Lines: s.Lines})
	}
	localapi.WriteJSON(w, http.StatusOK, res)
}

// forceLocal: the request asks to change this node only (?force_local=true).
func forceLocal(r *http.Request) bool {
	v := r.URL.Query().Get(localapi.ForceLocal)
	return v == "1" || v == "true" || v == "yes"
}

// applyConfig applies body here, and with config sync on, on the peers
// too: all of them or none (cfgpeer). force changes this node only.
func (a *Server) applyConfig(ctx context.Context, body []byte, force bool) localapi.ConfigResult {
	ctx = context.WithoutCancel(ctx)
	p, refused := a.newPlan(body)
	if refused != nil {
		return *refused
	}
	if a.sync == nil {
		return a.applyFile(ctx, body, p.cfg, true)
	}
	res, err := a.sync.Apply(ctx, p, force)
	if err != nil {
		return localapi.ConfigResult{Message: "config not applied: " + err.Error()}
	}
	return localapi.ConfigResult{OK: true, Message: p.result + "; " + res.Message}
}

func (a *Server) prevPath() string { return filepath.Join(localapi.Dir, "config.prev.yaml") }

// applyFile applies body (already parsed as cfg) through the controller
// and, once the kernel holds it, writes it to the config path (the old file
// kept for rollback when keep). If the file cannot be written the old config
// is applied again, so the file and the running state stay the same.
func (a *Server) applyFile(ctx context.Context, body []byte, cfg *config.Config, keep bool) localapi.ConfigResult {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	ctx = context.WithoutCancel(ctx) // a client gone mid-apply must not stop it half-way
	old, err := os.ReadFile(a.path)
	if err != nil {
		return localapi.ConfigResult{Message: fmt.Sprintf("reading the running config file: %v; nothing changed", err)}
	}
	running, ov := a.ctrl.Running()
	if err := a.ctrl.Apply(ctx, a.path, cfg, ov); err != nil {
		return localapi.ConfigResult{Message: "config not applied; running state unchanged", Errors: []string{err.Error()}}
	}
	if err := writeAtomic(a.path, body); err != nil {
		msg := fmt.Sprintf("writing %s: %v", a.path, err)
		if running != nil {
			if rerr := a.ctrl.Apply(ctx, a.path, running, ov); rerr != nil {
				a.log.WithError(rerr).Error("config file not written and the old config could not be applied again")
				msg += "; the old config could not be applied again: " + rerr.Error()
			} else {
				msg += "; the old config is running again"
			}
		}
		return localapi.ConfigResult{Message: msg}
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

func (a *Server) postRollback(w http.ResponseWriter, r *http.Request) {
	prev, err := os.ReadFile(a.prevPath())
	if err != nil {
		localapi.WriteJSON(w, http.StatusConflict, localapi.ConfigResult{Message: "no earlier config to roll back to (no apply since boot); nothing changed"})
		return
	}
	if _, err := config.Parse(prev); err != nil {
		localapi.WriteJSON(w, http.StatusUnprocessableEntity, localapi.ConfigResult{Message: "the earlier config no longer parses; nothing changed", Errors: config.Problems(err)})
		return
	}
	res := a.applyConfig(r.Context(), prev, forceLocal(r))
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
		var req localapi.MemberRef
		if err := localapi.ReadJSON(r, &req); err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		a.writeMu.Lock()
		defer a.writeMu.Unlock()
		cfg, ov := a.ctrl.Running()
		if cfg == nil {
			localapi.WriteError(w, http.StatusServiceUnavailable, errors.New("lbd has not applied a config yet"))
			return
		}
		ref, err := cfg.FindMember(req.Pool, req.Member)
		if err != nil {
			localapi.WriteError(w, http.StatusNotFound, fmt.Errorf("%v; nothing changed", err))
			return
		}
		state := map[bool]string{true: "enabled", false: "disabled"}[enable]
		if ov.Disabled[ref] != enable {
			localapi.WriteJSON(w, http.StatusOK, localapi.Message{Message: fmt.Sprintf("member %s of pool %s is already %s", req.Member, req.Pool, state)})
			return
		}
		if err := a.ctrl.Apply(context.WithoutCancel(r.Context()), a.path, cfg, ov.With(ref, !enable)); err != nil {
			localapi.WriteError(w, http.StatusInternalServerError, fmt.Errorf("member %s: %v; admin state unchanged", req.Member, err))
			return
		}
		msg := fmt.Sprintf("member %s of pool %s disabled: weight 0, existing connections drain", req.Member, req.Pool)
		if enable {
			msg = fmt.Sprintf("member %s of pool %s enabled", req.Member, req.Pool)
		}
		_, now := a.ctrl.Running()
		if err := SaveOverrides(OverridesPath(a.path), now); err != nil {
			a.log.WithError(err).Error("member admin state not saved; it will not survive an lbd restart")
			msg += fmt.Sprintf(" (not saved, lost if lbd restarts: %v)", err)
		}
		a.log.WithFields(logrus.Fields{"pool": req.Pool, "member": ref.Label(), "enabled": enable}).Info("member admin state changed")
		localapi.WriteJSON(w, http.StatusOK, localapi.Message{Message: msg})
	}
}

func rangeStrings(rs []config.AddrRange) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}
