package localapi

import (
	"context"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/ctsync"
)

// PathSync (vrrpd) is the IPVS connection sync state.
const PathSync = "/v1/sync" // GET SyncStatus

// SyncDaemon is one kernel IPVS sync daemon.
type SyncDaemon struct {
	State     string `json:"state"` // master or backup
	Interface string `json:"interface"`
	SyncID    int    `json:"sync_id"`
	Group     string `json:"group"`
	Port      int    `json:"port"`
	TTL       int    `json:"ttl"`
	MaxLen    int    `json:"maxlen"`
}

// SyncStatus is the IPVS connection sync state (lbcore/ipvssync): the
// daemons vrrpd runs for its role, what it did, and the connection
// entries of this node by origin.
type SyncStatus struct {
	Enabled    bool         `json:"enabled"` // false: standalone node or no ip_vs
	Role       string       `json:"role"`
	Interface  string       `json:"interface"`
	SyncID     int          `json:"sync_id"`
	Daemons    []SyncDaemon `json:"daemons"`
	Reconciles uint64       `json:"reconciles"`
	Started    uint64       `json:"started"`
	Stopped    uint64       `json:"stopped"`
	Errors     uint64       `json:"errors"`
	LastError  string       `json:"last_error,omitempty"`
	LastChange time.Time    `json:"last_change,omitzero"`
	// ConnsLocal and ConnsSynced count the IPVS connection entries:
	// forwarded by this node, or installed from the peer's sync messages.
	ConnsLocal  uint64 `json:"conns_local"`
	ConnsSynced uint64 `json:"conns_synced"`
	ConnsError  string `json:"conns_error,omitempty"`
	// Conntrack is the conntrack sync (lbcore/ctsync) vrrpd runs beside
	// the IPVS daemons.
	Conntrack ConntrackSync `json:"conntrack"`
}

// ConntrackSync is the conntrack sync state: off (Enabled false, Error
// says why) or its status.
type ConntrackSync struct {
	Enabled bool   `json:"enabled"`
	Error   string `json:"error,omitempty"`
	Port    int    `json:"port,omitempty"`
	ctsync.Status
}

// Sync is vrrpd's IPVS connection sync state.
func (a *Appliance) Sync(ctx context.Context) (SyncStatus, error) {
	var out SyncStatus
	return out, a.VRRPD.Get(ctx, PathSync, &out)
}
