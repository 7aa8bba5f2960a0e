package localapi

import (
	"fmt"
	"time"
)

// Paths served by the daemons.
const (
	// lbd
	PathVS            = "/v1/vs"              // GET []VirtualServer
	PathSNAT          = "/v1/snat"            // GET SNATStatus
	PathConfig        = "/v1/config"          // GET: the running config (YAML, raw)
	PathConfigCheck   = "/v1/config/validate" // POST YAML → ConfigResult
	PathConfigApply   = "/v1/config/apply"    // POST YAML → ConfigResult
	PathConfigDiff    = "/v1/config/diff"     // POST YAML → ConfigDiff (nothing changes)
	PathConfigSync    = "/v1/config/sync"     // GET ConfigSync
	PathConfigRevert  = "/v1/config/rollback" // POST [?back=N] → ConfigResult
	PathConfigHistory = "/v1/config/history"  // GET → ConfigHistory
	PathMemberDisable = "/v1/member/disable"  // POST MemberRef → MemberResult
	PathMemberEnable  = "/v1/member/enable"   // POST MemberRef → MemberResult
	// ForceLocal is the query flag of apply and rollback that changes this
	// node only, without offering the config to the HA peer.
	ForceLocal = "force_local"
	// vrrpd
	PathVRRP       = "/v1/vrrp"            // GET VRRPStatus
	PathSwitchover = "/v1/vrrp/switchover" // POST → Message
	PathResume     = "/v1/vrrp/resume"     // POST → Message
	// init
	PathServices = "/v1/services" // GET []ServiceStatus
	PathLog      = "/v1/log"      // GET ?since=SEQ&max=N → LogPage
)

// Stats are IPVS traffic counters.
type Stats struct {
	Conns      uint64 `json:"conns"`
	PacketsIn  uint64 `json:"packets_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesIn    uint64 `json:"bytes_in"`
	BytesOut   uint64 `json:"bytes_out"`
}

// VirtualServer is one IPVS service as the kernel has it, named from the
// config.
type VirtualServer struct {
	Name       string `json:"name"` // "" when the config does not know it
	Pool       string `json:"pool,omitempty"`
	Mode       string `json:"mode,omitempty"`
	Protocol   string `json:"protocol"` // TCP, UDP or FWM
	Address    string `json:"address"`  // addr:port, or the fwmark
	Scheduler  string `json:"scheduler"`
	Persistent uint32 `json:"persistent,omitempty"` // seconds
	Stats      Stats  `json:"stats"`
	// Rate is computed by lbd from counter deltas (nil until it has two
	// samples).
	Rate    *Rate    `json:"rate,omitempty"`
	Members []Member `json:"members"`
}

// Rate is a per-second rate of each counter.
type Rate struct {
	Conns      float64 `json:"conns"`
	PacketsIn  float64 `json:"packets_in"`
	PacketsOut float64 `json:"packets_out"`
	BytesIn    float64 `json:"bytes_in"`
	BytesOut   float64 `json:"bytes_out"`
}

// PathRates (lbd) is the rate history of every virtual server.
const PathRates = "/v1/rates" // GET []RateHistory

// RateHistory is one virtual server's rates over the last 15 minutes,
// one point per sample interval, oldest first.
type RateHistory struct {
	Protocol string      `json:"protocol"`
	Address  string      `json:"address"`
	Points   []RatePoint `json:"points"`
}

// RatePoint is the rate over the interval ending at Time.
type RatePoint struct {
	Time time.Time `json:"time"`
	Rate
}

// Member is one IPVS destination with its health and admin state.
type Member struct {
	Pool     string `json:"pool,omitempty"`
	Address  string `json:"address"` // addr:port
	Forward  string `json:"forward"` // Masq, Route, Tunnel
	Weight   int    `json:"weight"`
	Active   int    `json:"active"`
	Inactive int    `json:"inactive"`
	Stats    Stats  `json:"stats"`
	Rate     *Rate  `json:"rate,omitempty"`
	// Health is up, down or unmonitored.
	Health   string `json:"health"`
	Disabled bool   `json:"disabled"`
	Check    Check  `json:"check"`
	// PoolPanic: the member's pool is in panic (too many members failed at
	// once: every enabled member serves regardless of its checks).
	PoolPanic bool `json:"pool_panic,omitempty"`
	// SlowStart: the member ramps to its weight (pools.NAME.slow_start);
	// Weight is its ramped weight on the pool's ramp scale.
	SlowStart *SlowStart `json:"slow_start,omitempty"`
}

// SlowStart is where a member is in its slow-start ramp.
type SlowStart struct {
	Percent     int `json:"percent"`      // of its weight it has now
	LeftSeconds int `json:"left_seconds"` // until it has its whole weight
}

// String is the ramp as status lines show it: "slow start 40% (12 s left)".
func (s *SlowStart) String() string {
	return fmt.Sprintf("slow start %d%% (%d s left)", s.Percent, s.LeftSeconds)
}

// Check is a monitored member's last health check (zero when unmonitored
// or not checked yet).
type Check struct {
	LastOK     bool      `json:"last_ok"`
	LastReason string    `json:"last_reason,omitempty"` // "HTTP 200", "connection refused", ...
	LastCheck  time.Time `json:"last_check,omitzero"`
	Since      time.Time `json:"since,omitzero"` // in its health state since
}

// MemberHealth is one configured member's health (show health).
type MemberHealth struct {
	Pool     string `json:"pool"`
	Member   string `json:"member"`
	Monitor  string `json:"monitor"`
	Health   string `json:"health"`
	Disabled bool   `json:"disabled"`
	Check    Check  `json:"check"`
	// PoolPanic: the pool is in panic (see Member.PoolPanic).
	PoolPanic bool `json:"pool_panic,omitempty"`
	// SlowStart: the member ramps (see Member.SlowStart).
	SlowStart *SlowStart `json:"slow_start,omitempty"`
}

// PathHealth (lbd) lists every configured member's health.
const PathHealth = "/v1/health" // GET []MemberHealth

// SNATStatus is the SNAT part of the running config.
type SNATStatus struct {
	IPools map[string][]string `json:"ipools"`
	Rules  []SNATRule          `json:"rules"`
	// LocalAddressPools are the FullNAT source pools.
	LocalAddressPools map[string][]string `json:"local_address_pools"`
}

// SNATRule is one SNAT rule.
type SNATRule struct {
	Source string `json:"source"`
	Out    string `json:"out"`
	IPool  string `json:"ipool"`
}

// MemberRef names a pool member ("addr" or "addr:port").
type MemberRef struct {
	Pool   string `json:"pool"`
	Member string `json:"member"`
}

// Message is a plain success answer.
type Message struct {
	Message string `json:"message"`
}

// ConfigResult answers config validate/apply/rollback. Errors are the
// config's field errors (path (line N): what is wrong).
type ConfigResult struct {
	OK      bool     `json:"ok"`
	Message string   `json:"message"`
	Errors  []string `json:"errors,omitempty"`
}

// ConfigDiff answers config diff: what applying the config would change
// (lbcore/cfgdiff), or, for an invalid config, its field errors as
// ConfigResult has them.
type ConfigDiff struct {
	OK       bool          `json:"ok"`
	Message  string        `json:"message"`
	Errors   []string      `json:"errors,omitempty"`
	Sections []DiffSection `json:"sections,omitempty"`
	// Reboot: some change takes effect only at the next boot.
	Reboot bool `json:"reboot"`
	// Text is the diff as `lbctl config diff` prints it.
	Text string `json:"text"`
}

// DiffSection is one part of a config diff: lines starting with "+ "
// (added), "- " (removed) or "~ " (changed).
type DiffSection struct {
	Title string   `json:"title"`
	Live  bool     `json:"live"` // an apply changes it at once; false: at the next boot
	Lines []string `json:"lines"`
}

// ConfigHistory lists the stored configs, newest first.
type ConfigHistory struct {
	Store      string         `json:"store"`
	Persistent bool           `json:"persistent"`
	Keep       int            `json:"keep"`
	Configs    []StoredConfig `json:"configs"`
}

// StoredConfig is one stored config; Back is the N of `rollback N`.
type StoredConfig struct {
	Back       int       `json:"back"`
	File       string    `json:"file"`
	Generation uint64    `json:"generation"`
	Saved      time.Time `json:"saved"`
	Source     string    `json:"source"`
	SHA256     string    `json:"sha256"`
	Running    bool      `json:"running"`
	Damaged    string    `json:"damaged,omitempty"`
}

// VRRPInstance is one VRRP instance's state.
type VRRPInstance struct {
	Instance    string `json:"instance"`
	VRID        int    `json:"vrid"`
	Family      string `json:"family"`
	State       string `json:"state"`
	Priority    int    `json:"priority"`
	Master      string `json:"master,omitempty"`
	Transitions uint64 `json:"transitions"`
}

// VRRPStatus is vrrpd's state.
type VRRPStatus struct {
	Enabled   bool              `json:"enabled"`
	Instances []VRRPInstance    `json:"instances"`
	Counters  map[string]uint64 `json:"counters"`
}

// ServiceStatus is one supervised daemon's state, from init.
type ServiceStatus struct {
	Name     string    `json:"name"`
	PID      int       `json:"pid"`
	Running  bool      `json:"running"`
	Restarts int       `json:"restarts"`
	LastExit string    `json:"last_exit,omitempty"`
	Since    time.Time `json:"since"`
	// Ready: the daemon has reported ready (services After it may run).
	Ready bool `json:"ready"`
	// WatchdogKills counts the runs killed for missing heartbeats.
	WatchdogKills int `json:"watchdog_kills"`
	// Output lines cut at the line cap, and dropped because the console
	// could not take them.
	OutputCut     uint64 `json:"output_lines_cut"`
	OutputDropped uint64 `json:"output_lines_dropped"`
}

// LogLine is one line of the console log ring.
type LogLine struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Source string    `json:"source"` // daemon name, or "init"
	Text   string    `json:"text"`
}

// LogPage is an answer of PathLog: lines after the asked sequence number
// and the sequence number to ask from next.
type LogPage struct {
	Lines []LogLine `json:"lines"`
	Next  uint64    `json:"next"`
	// Dropped counts lines that left the ring before they were read.
	Dropped uint64 `json:"dropped"`
}

// ConfigSync is whether the HA nodes run the same config: this node's
// config generation and hash (of the cluster sections, config.ClusterHash)
// and each peer's.
type ConfigSync struct {
	// On is false when config sync is off (no vrrp.peers or no
	// vrrp.sync_key); Off then says why.
	On  bool   `json:"on"`
	Off string `json:"off,omitempty"`
	// Self is this node's failover address.
	Self       string `json:"self,omitempty"`
	Generation uint64 `json:"generation"`
	Hash       string `json:"hash"`
	// Agree: every peer answers and runs this node's hash.
	Agree   bool              `json:"agree"`
	Peers   []ConfigSyncPeer  `json:"peers"`
	Dropped map[string]uint64 `json:"dropped,omitempty"`
}

// ConfigSyncPeer is one peer as this node last heard it.
type ConfigSyncPeer struct {
	Address    string    `json:"address"`
	Reachable  bool      `json:"reachable"`
	Generation uint64    `json:"generation"`
	Hash       string    `json:"hash"`
	Agree      bool      `json:"agree"`
	LastSeen   time.Time `json:"last_seen,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// PathL7 (l7d) lists the L7 virtual servers with their counters.
const PathL7 = "/v1/l7" // GET []L7VirtualServer

// L7VirtualServer is one http/https virtual server as the L7 proxy serves it.
type L7VirtualServer struct {
	Name    string `json:"name"`
	Mode    string `json:"mode"`
	Address string `json:"address"` // VIP:port
	Pool    string `json:"pool"`
	// Requests count answered requests by status class (1xx..5xx, other).
	Requests     map[string]uint64 `json:"requests"`
	BytesOut     uint64            `json:"bytes_out"`
	BadCookies   uint64            `json:"bad_cookies"` // forged, expired or malformed
	ConnsOpen    int               `json:"conns_open"`
	ConnsEvicted uint64            `json:"conns_evicted"` // idle ones closed at the cap
	ConnsRefused uint64            `json:"conns_refused"`
	Members      []L7Member        `json:"members"`
}

// L7Member is one member of an L7 virtual server.
type L7Member struct {
	Pool     string `json:"pool"`
	Member   string `json:"member"`  // as the config spells it
	Address  string `json:"address"` // addr:port dialled
	Weight   int    `json:"weight"`
	Usable   bool   `json:"usable"` // healthy and enabled
	Active   int64  `json:"active"` // requests in flight
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"` // failed to answer (502/504)
	BytesOut uint64 `json:"bytes_out"`
}
