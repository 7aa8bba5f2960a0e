// Package lbd is the LB daemon's side of the local API (services/localapi): virtual
// servers with kernel counters, member health, SNAT, the running config,
// config validate/diff/apply/rollback/history, and member disable/enable.
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
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/cfgdiff"
	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/lbcore/kernel/ipvs"
	"github.com/fulcrum-lb/fulcrum/lbcore/lbapply"
	"github.com/fulcrum-lb/fulcrum/lbcore/rates"
	"github.com/fulcrum-lb/fulcrum/services/cfgpeer"
	"github.com/fulcrum-lb/fulcrum/services/cfgstore"
	"github.com/fulcrum-lb/fulcrum/services/l7"
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
	// Store keeps applied configs and overrides for the next boot and
	// for rollback (New: a RAM store next to the config file).
	Store *cfgstore.Store
}

// New returns the local API server for the config at path, applying
// through ctrl.
func New(path string, ctrl *lbapply.Controller, k KernelIPVS, log logrus.FieldLogger) *Server {
	store := cfgstore.NewDir(filepath.Join(filepath.Dir(path), "store"), cfgstore.DefaultKeep, false, "RAM only (no config partition)")
	return &Server{path: path, ctrl: ctrl, kernel: &lockedKernel{k: k}, log: log, statusHandler: lbapply.StatusHandler(ctrl), rates: rates.New(rates.DefaultKeep), Store: store}
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
	localapi.Route(mux, "GET", localapi.PathConfigHistory, a.getHistory)
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
							m.Health, m.Disabled, m.Check, m.PoolPanic, m.SlowStart = h.Health, h.Disabled, h.Check, h.PoolPanic, h.SlowStart
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
			h := localapi.MemberHealth{Pool: p.Name, Member: m.Ref.Label(), Monitor: p.Monitor, Health: "unmonitored", Disabled: m.Disabled, PoolPanic: p.Panic}
			if r := m.SlowStart; r.Active() {
				h.SlowStart = &localapi.SlowStart{Percent: int(r.Share*100 + 0.5), LeftSeconds: int((r.Left + time.Second - 1) / time.Second)}
			}
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
		cfg, err := config.Parse(body)
		if err == nil {
			err = l7.CheckFiles(cfg) // the L7 proxy's certificates, read where l7d reads them
		}
		if err != nil {
			localapi.WriteJSON(w, http.StatusUnprocessableEntity, localapi.ConfigResult{Message: "config is invalid; nothing changed", Errors: config.Problems(err)})
			return
		}
		if !apply {
			localapi.WriteJSON(w, http.StatusOK, localapi.ConfigResult{OK: true, Message: "config is valid"})
			return
		}
		res := a.applyConfig(r.Context(), body, forceLocal(r), cfgstore.SourceApply)
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
// too: all of them or none (cfgpeer). force changes this node only. src
// says why, in the config store.
func (a *Server) applyConfig(ctx context.Context, body []byte, force bool, src cfgstore.Source) localapi.ConfigResult {
	ctx = context.WithoutCancel(ctx)
	p, refused := a.newPlan(body)
	if refused != nil {
		return *refused
	}
	p.source = src
	if a.sync == nil {
		return a.applyFile(ctx, body, p.cfg, src)
	}
	res, err := a.sync.Apply(ctx, p, force)
	if err != nil {
		return localapi.ConfigResult{Message: "config not applied: " + err.Error()}
	}
	return localapi.ConfigResult{OK: true, Message: p.result + "; " + res.Message}
}

// applyFile applies body (already parsed as cfg) through the controller
// and, once the kernel holds it, writes it to the config path and saves it
// in the config store (a new generation, src saying why). If either write
// fails the old config is applied again and its file put back, so the
// kernel, the file and the store stay as they were.
func (a *Server) applyFile(ctx context.Context, body []byte, cfg *config.Config, src cfgstore.Source) localapi.ConfigResult {
	res, _ := a.applyAndSave(ctx, body, cfg, src)
	return res
}

// applyAndSave is applyFile, also returning the stored entry. An empty src
// saves nothing in the store (undoing an apply the HA peer refused: the
// caller removes the entry that apply saved).
func (a *Server) applyAndSave(ctx context.Context, body []byte, cfg *config.Config, src cfgstore.Source) (localapi.ConfigResult, cfgstore.Entry) {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	ctx = context.WithoutCancel(ctx) // a client gone mid-apply must not stop it half-way
	old, err := os.ReadFile(a.path)
	if err != nil {
		return localapi.ConfigResult{Message: fmt.Sprintf("reading the running config file: %v; nothing changed", err)}, cfgstore.Entry{}
	}
	running, ov := a.ctrl.Running()
	if err := a.ctrl.Apply(ctx, a.path, cfg, ov); err != nil {
		return localapi.ConfigResult{Message: "config not applied; running state unchanged", Errors: []string{err.Error()}}, cfgstore.Entry{}
	}
	undo := func(msg string) localapi.ConfigResult {
		if running != nil {
			if rerr := a.ctrl.Apply(ctx, a.path, running, ov); rerr != nil {
				a.log.WithError(rerr).Error("new config not kept and the old config could not be applied again")
				return localapi.ConfigResult{Message: msg + "; the old config could not be applied again: " + rerr.Error()}
			}
		}
		if werr := writeAtomic(a.path, old); werr != nil {
			a.log.WithError(werr).Error("old config file not put back")
		}
		return localapi.ConfigResult{Message: msg + "; the old config is running again, nothing changed"}
	}
	if err := writeAtomic(a.path, body); err != nil {
		return undo(fmt.Sprintf("writing %s: %v", a.path, err)), cfgstore.Entry{}
	}
	if src == "" {
		a.log.WithField("path", a.path).Info("config applied again (not saved in the store)")
		return localapi.ConfigResult{OK: true, Message: "config applied"}, cfgstore.Entry{}
	}
	var replaces []byte
	if running != nil {
		replaces = running.Source()
	}
	a.Store.SetKeep(cfg.Access.ConfigHistory)
	e, err := a.Store.Save(body, cfgstore.Meta{Source: src, Replaces: replaces})
	if err != nil {
		a.log.WithError(err).Error("config not saved to the store; old config applied again")
		return undo(fmt.Sprintf("config not saved: %v", err)), cfgstore.Entry{}
	}
	a.log.WithFields(logrus.Fields{"path": a.path, "store": a.Store.Where(), "generation": e.Gen, "source": src}).Info("config applied through the local API")
	return localapi.ConfigResult{OK: true, Message: a.appliedMessage(running, cfg, e)}, e
}

// appliedMessage tells the operator what the apply did and what it did
// not: lbd applies the LB part at once; network, VRRP, host name and
// kernel settings are read at boot, so they take effect at the next boot
// only if the config was saved where that boot reads it.
func (a *Server) appliedMessage(old, cfg *config.Config, e cfgstore.Entry) string {
	var atBoot []string
	if old != nil {
		if !reflect.DeepEqual(old.Network, cfg.Network) {
			atBoot = append(atBoot, "network")
		}
		if !reflect.DeepEqual(old.VRRP, cfg.VRRP) {
			atBoot = append(atBoot, "vrrp")
		}
		if old.Hostname != cfg.Hostname {
			atBoot = append(atBoot, "hostname")
		}
		if !reflect.DeepEqual(old.Kernel, cfg.Kernel) {
			atBoot = append(atBoot, "kernel")
		}
	}
	if a.Store.Persistent() {
		msg := fmt.Sprintf("config applied and saved to the %s as generation %d (the last %d are kept for rollback)", a.Store.Where(), e.Gen, a.Store.Keep())
		if len(atBoot) > 0 {
			return msg + fmt.Sprintf("; the load-balancing part runs now, its %s changes take effect at the next boot", strings.Join(atBoot, ", "))
		}
		return msg + "; all of it is in effect now"
	}
	msg := fmt.Sprintf("config applied; NOT saved across a reboot (%s): it lasts until the appliance reboots, which brings back the config it booted with. To keep it, put it on the config server (`lbctl config export` prints it)", a.Store.Where())
	if len(atBoot) > 0 {
		msg += fmt.Sprintf("; its %s changes are NOT in effect and will not be until the appliance boots with this config", strings.Join(atBoot, ", "))
	}
	return msg
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

// postRollback applies the stored config ?back=N generations before the
// newest (default 1: the one before the last apply) through the same
// validated apply, which saves it as a new generation (so a rollback can
// itself be rolled back).
func (a *Server) postRollback(w http.ResponseWriter, r *http.Request) {
	back := 1
	if v := r.URL.Query().Get("back"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			localapi.WriteJSON(w, http.StatusBadRequest, localapi.ConfigResult{Message: fmt.Sprintf("rollback %q: want a number of configs back, 1 or more; nothing changed", v)})
			return
		}
		back = n
	}
	prev, e, err := a.Store.Load(back)
	var missing *cfgstore.MissingError
	switch {
	case errors.As(err, &missing):
		localapi.WriteJSON(w, http.StatusConflict, localapi.ConfigResult{Message: err.Error() + "; nothing changed"})
		return
	case err != nil:
		localapi.WriteJSON(w, http.StatusUnprocessableEntity, localapi.ConfigResult{Message: err.Error() + "; nothing changed"})
		return
	}
	if _, err := config.Parse(prev); err != nil {
		localapi.WriteJSON(w, http.StatusUnprocessableEntity, localapi.ConfigResult{Message: fmt.Sprintf("stored config %s no longer validates; nothing changed", e.File), Errors: config.Problems(err)})
		return
	}
	res := a.applyConfig(r.Context(), prev, forceLocal(r), cfgstore.SourceRollback)
	code := http.StatusOK
	if !res.OK {
		code = http.StatusUnprocessableEntity
	} else {
		res.Message = fmt.Sprintf("rolled back %d config(s) to %s (saved %s); %s", back, e.File, e.Saved.Format(time.RFC3339), res.Message)
	}
	localapi.WriteJSON(w, code, res)
}

// getHistory lists the stored configs, newest first.
func (a *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	l, err := a.Store.List()
	if err != nil {
		localapi.WriteError(w, http.StatusInternalServerError, err)
		return
	}
	h := localapi.ConfigHistory{Store: a.Store.Where(), Persistent: a.Store.Persistent(), Keep: a.Store.Keep(), Configs: []localapi.StoredConfig{}}
	cfg, _ := a.ctrl.Running()
	marked := false // the newest copy of the running config
	for i, e := range l {
		sc := localapi.StoredConfig{Back: i, File: e.File, Generation: e.Gen, Saved: e.Saved, Source: string(e.Source), SHA256: e.SHA256, Damaged: e.Damaged}
		if !marked && cfg != nil && e.Damaged == "" && e.SHA256 == sha256Hex(cfg.Source()) {
			sc.Running, marked = true, true
		}
		h.Configs = append(h.Configs, sc)
	}
	localapi.WriteJSON(w, http.StatusOK, h)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// RecordRunning saves the running config in the store when the store's
// newest config is not it (first boot of a stick, config.yaml edited by
// hand, a PXE boot's RAM store), so `rollback` counts from what runs.
func (a *Server) RecordRunning() {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	cfg, _ := a.ctrl.Running()
	if cfg == nil {
		return
	}
	a.Store.SetKeep(cfg.Access.ConfigHistory)
	l, err := a.Store.List()
	if err != nil {
		a.log.WithError(err).Warn("config store unreadable")
		return
	}
	for _, e := range l {
		if e.Damaged == "" {
			if e.SHA256 == sha256Hex(cfg.Source()) {
				return
			}
			break
		}
	}
	if _, err := a.Store.Save(cfg.Source(), cfgstore.Meta{Source: cfgstore.SourceBoot}); err != nil {
		a.log.WithError(err).Warn("running config not recorded in the config store")
	}
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
		} else if err := a.Store.SaveOverrides(EncodeOverrides(now)); err != nil {
			// The change stands (an operator draining a failing member
			// must not be stopped by a full stick) and says so.
			a.log.WithError(err).Error("member admin state not saved in the config store; lost at reboot")
			msg += fmt.Sprintf(" (in effect, but NOT saved for the next boot: %v)", err)
		} else if !a.Store.Persistent() {
			msg += fmt.Sprintf(" (until reboot: %s)", a.Store.Where())
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
