package lbd

// Config sync with the HA peer (services/cfgpeer): lbd's side of it. The
// peer's offers are merged into this node's own file (its node sections
// stay), validated and planned by the controller, and applied through the
// same applyFile as an operator's apply. The generation of the running
// config is kept next to the config file (config-sync.json, 0600).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/engine"
	"github.com/fulcrum-lb/fulcrum/services/cfgpeer"
	"github.com/fulcrum-lb/fulcrum/services/cfgstore"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

// plan is a config checked and not applied (cfgpeer.Plan).
type plan struct {
	body    []byte
	cfg     *config.Config
	cluster []byte
	hash    string
	// set by commit: the file and generation it replaced, and the apply's
	// own message.
	prev    []byte
	prevGen uint64
	result  string
	// source is why the config is applied (the config store's record);
	// saved is the store entry the commit wrote (removed by Undo).
	source cfgstore.Source
	saved  cfgstore.Entry
}

func (p *plan) Hash() string    { return p.hash }
func (p *plan) Cluster() []byte { return p.cluster }

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// newPlan parses, validates and plans body (a whole config file); a
// refusal comes back as the API's answer.
func (a *Server) newPlan(body []byte) (*plan, *localapi.ConfigResult) {
	cfg, err := config.Parse(body)
	if err != nil {
		return nil, &localapi.ConfigResult{Message: "config is invalid; nothing changed", Errors: config.Problems(err)}
	}
	if err := a.ctrl.Plan(cfg); err != nil {
		return nil, &localapi.ConfigResult{Message: "config not applied; running state unchanged", Errors: []string{err.Error()}}
	}
	cluster, err := config.ClusterPart(body)
	if err != nil {
		return nil, &localapi.ConfigResult{Message: "config is invalid; nothing changed", Errors: []string{err.Error()}}
	}
	return &plan{body: body, cfg: cfg, cluster: cluster, hash: hashOf(cluster)}, nil
}

// syncLocal is cfgpeer.Local over the Server.
type syncLocal struct{ a *Server }

func (a *Server) genPath() string { return filepath.Join(filepath.Dir(a.path), "config-sync.json") }

type genFile struct {
	Generation uint64 `json:"generation"`
	Hash       string `json:"hash"`
}

// generation is the stored generation of the config with hash, 0 when the
// store is about another config (hand-edited, or none yet): such a config
// loses to any the peer applied.
func (a *Server) generation(hash string) uint64 {
	b, err := os.ReadFile(a.genPath())
	if err != nil {
		return 0
	}
	var g genFile
	if json.Unmarshal(b, &g) != nil || g.Hash != hash {
		return 0
	}
	return g.Generation
}

func (a *Server) setGeneration(gen uint64, hash string) error {
	b, _ := json.Marshal(genFile{Generation: gen, Hash: hash})
	return writeAtomic(a.genPath(), b)
}

func (l syncLocal) State() (cfgpeer.State, error) {
	cfg, _ := l.a.ctrl.Running()
	if cfg == nil {
		return cfgpeer.State{}, errors.New("lbd has not applied a config yet")
	}
	cluster, err := config.ClusterPart(cfg.Source())
	if err != nil {
		return cfgpeer.State{}, fmt.Errorf("running config: %w", err)
	}
	h := hashOf(cluster)
	return cfgpeer.State{Generation: l.a.generation(h), Hash: h, Cluster: cluster}, nil
}

// Prepare merges the peer's cluster sections into this node's running
// file and checks the result.
func (l syncLocal) Prepare(cluster []byte) (cfgpeer.Plan, error) {
	own, err := os.ReadFile(l.a.path)
	if err != nil {
		return nil, fmt.Errorf("reading this node's config: %w", err)
	}
	merged, err := config.MergeCluster(own, cluster)
	if err != nil {
		return nil, err
	}
	p, refused := l.a.newPlan(merged)
	if refused != nil {
		return nil, errors.New(strings.Join(refused.Errors, "; "))
	}
	p.source = cfgstore.SourcePeer
	return p, nil
}

func (l syncLocal) Commit(cp cfgpeer.Plan, gen uint64) error {
	p := cp.(*plan)
	prev, err := os.ReadFile(l.a.path)
	if err != nil {
		return fmt.Errorf("reading the running config file: %w", err)
	}
	prevHash := ""
	if h, err := config.ClusterPart(prev); err == nil {
		prevHash = hashOf(h)
	}
	p.prev, p.prevGen = prev, l.a.generation(prevHash)
	src := p.source
	if src == "" {
		src = cfgstore.SourceApply
	}
	res, saved := l.a.applyAndSave(context.Background(), p.body, p.cfg, src)
	if !res.OK {
		return errors.New(strings.Join(append([]string{res.Message}, res.Errors...), "; "))
	}
	p.result, p.saved = res.Message, saved
	if err := l.a.setGeneration(gen, p.hash); err != nil {
		l.a.log.WithError(err).Error("config sync: generation not stored; this node's config counts as oldest after a restart")
	}
	return nil
}

func (l syncLocal) Undo(cp cfgpeer.Plan) error {
	p := cp.(*plan)
	if p.prev == nil {
		return errors.New("nothing to go back to")
	}
	cfg, err := config.Parse(p.prev)
	if err != nil {
		return fmt.Errorf("the earlier config no longer parses: %w", err)
	}
	res := l.a.applyFile(context.Background(), p.prev, cfg, "")
	if !res.OK {
		return errors.New(strings.Join(append([]string{res.Message}, res.Errors...), "; "))
	}
	if p.saved.Gen != 0 {
		if err := l.a.Store.Remove(p.saved.Gen); err != nil {
			l.a.log.WithError(err).Error("config sync: the undone config stays in the config store")
		}
	}
	cluster, _ := config.ClusterPart(p.prev)
	return l.a.setGeneration(p.prevGen, hashOf(cluster))
}

// SyncSetup is how config sync runs for the config at path: a node, or
// why there is none.
type SyncSetup struct {
	Self  netip.Addr
	Peers []netip.Addr
	Key   []byte
	Off   string
}

// syncSetup reads the sync settings from the boot config (the network and
// vrrp sections change at the next boot only).
func syncSetup(cfg *config.Config) SyncSetup {
	v := &cfg.VRRP
	peers := v.AcceptFrom()
	switch {
	case len(peers) == 0:
		return SyncSetup{Off: "no vrrp.peers: a single node"}
	case v.SyncKey == "":
		return SyncSetup{Off: "vrrp.sync_key is not set: applies are not offered to the peer and the nodes' configs are not compared"}
	}
	for _, a := range cfg.Network.Failover.Addresses {
		if a.Addr().Is4() == peers[0].Is4() {
			return SyncSetup{Self: a.Addr(), Peers: peers, Key: []byte(v.SyncKey)}
		}
	}
	return SyncSetup{Off: "no failover address of the peers' family"}
}

// EnableSync starts config sync for the server (before Handler serves
// applies) and returns the node to run, or nil when sync is off.
func (a *Server) EnableSync(s SyncSetup, log logrus.FieldLogger) (*cfgpeer.Node, error) {
	if s.Off != "" {
		a.syncOff = s.Off
		log.Warn("config sync off: " + s.Off)
		return nil, nil
	}
	n, err := cfgpeer.New(cfgpeer.Options{Self: s.Self, Peers: s.Peers, Key: s.Key, Port: engine.ConfigSyncPort, Local: syncLocal{a}, Log: log})
	if err != nil {
		return nil, err
	}
	a.sync = n
	return n, nil
}

// syncStatus is the local API's view of config sync.
func (a *Server) syncStatus() localapi.ConfigSync {
	if a.sync == nil {
		out := localapi.ConfigSync{Off: a.syncOff, Peers: []localapi.ConfigSyncPeer{}}
		if st, err := (syncLocal{a}).State(); err == nil {
			out.Generation, out.Hash = st.Generation, st.Hash
		}
		return out
	}
	s := a.sync.Status()
	out := localapi.ConfigSync{On: true, Self: s.Self.String(), Generation: s.Generation, Hash: s.Hash, Agree: s.Agree, Dropped: s.Dropped, Peers: []localapi.ConfigSyncPeer{}}
	for _, p := range s.Peers {
		out.Peers = append(out.Peers, localapi.ConfigSyncPeer{Address: p.Addr.String(), Reachable: p.Reachable, Generation: p.Generation, Hash: p.Hash, Agree: p.Agree, LastSeen: p.LastSeen, Error: p.Error})
	}
	return out
}
