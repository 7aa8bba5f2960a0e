package localapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
)

// Appliance is a client of every daemon's local API, as lbctl and mgmtd use
// them.
type Appliance struct {
	LBD, VRRPD, Init, L7D *Client
}

// NewAppliance returns clients of the sockets in dir ("" = Dir).
func NewAppliance(dir string) *Appliance {
	return &Appliance{
		LBD:   NewClient(LBD, SocketPath(dir, LBD)),
		VRRPD: NewClient(VRRPD, SocketPath(dir, VRRPD)),
		Init:  NewClient(Init, SocketPath(dir, Init)),
		L7D:   NewClient(L7D, SocketPath(dir, L7D)),
	}
}

// VirtualServers lists IPVS services with members and counters.
func (a *Appliance) VirtualServers(ctx context.Context) ([]VirtualServer, error) {
	var out []VirtualServer
	return out, a.LBD.Get(ctx, PathVS, &out)
}

// Rates is the rate history of every virtual server.
func (a *Appliance) Rates(ctx context.Context) ([]RateHistory, error) {
	var out []RateHistory
	return out, a.LBD.Get(ctx, PathRates, &out)
}

// Health lists every configured member's health.
func (a *Appliance) Health(ctx context.Context) ([]MemberHealth, error) {
	var out []MemberHealth
	return out, a.LBD.Get(ctx, PathHealth, &out)
}

// SNAT is the running SNAT setup.
func (a *Appliance) SNAT(ctx context.Context) (SNATStatus, error) {
	var out SNATStatus
	return out, a.LBD.Get(ctx, PathSNAT, &out)
}

// Config is the running config's YAML.
func (a *Appliance) Config(ctx context.Context) ([]byte, error) {
	var out []byte
	return out, a.LBD.Do(ctx, "GET", PathConfig, nil, "", &out)
}

// ConfigOp runs validate (PathConfigCheck), apply (PathConfigApply) or
// rollback (PathConfigRevert, yaml nil).
func (a *Appliance) ConfigOp(ctx context.Context, path string, yaml []byte) (ConfigResult, error) {
	var out ConfigResult
	err := a.LBD.Do(ctx, "POST", path, yaml, "application/yaml", &out)
	if se, ok := err.(*StatusError); ok && se.Code == 422 {
		// rejected configs come back as a ConfigResult too
		if json.Unmarshal(se.Body, &out) != nil || out.Message == "" {
			out = ConfigResult{Message: se.Msg}
		}
		out.OK = false
		return out, nil
	}
	return out, err
}

// ConfigDiff asks lbd what applying yaml would change; nothing changes.
// An invalid config comes back with OK false and its field errors.
func (a *Appliance) ConfigDiff(ctx context.Context, yaml []byte) (ConfigDiff, error) {
	var out ConfigDiff
	err := a.LBD.Do(ctx, "POST", PathConfigDiff, yaml, "application/yaml", &out)
	if se, ok := err.(*StatusError); ok && se.Code == 422 {
		if json.Unmarshal(se.Body, &out) != nil || out.Message == "" {
			out = ConfigDiff{Message: se.Msg}
		}
		out.OK = false
		return out, nil
	}
	return out, err
}

// ConfigSync is lbd's view of whether the HA nodes agree on the config.
func (a *Appliance) ConfigSync(ctx context.Context) (ConfigSync, error) {
	var out ConfigSync
	return out, a.LBD.Get(ctx, PathConfigSync, &out)
}

// Rollback applies the stored config back generations before the newest
// (lbd's config store; 1: the one before the last apply); force: on this
// node only, not offered to the HA peer.
func (a *Appliance) Rollback(ctx context.Context, back int, force bool) (ConfigResult, error) {
	p := fmt.Sprintf("%s?back=%d", PathConfigRevert, back)
	if force {
		p += "&" + ForceLocal + "=true"
	}
	return a.ConfigOp(ctx, p, nil)
}

// ConfigHistory lists the stored configs, newest first.
func (a *Appliance) ConfigHistory(ctx context.Context) (ConfigHistory, error) {
	var out ConfigHistory
	return out, a.LBD.Get(ctx, PathConfigHistory, &out)
}

// Member disables (drain) or enables a pool member.
func (a *Appliance) Member(ctx context.Context, enable bool, ref MemberRef) (Message, error) {
	p := PathMemberDisable
	if enable {
		p = PathMemberEnable
	}
	var out Message
	return out, a.LBD.Post(ctx, p, ref, &out)
}

// VRRP is vrrpd's state.
func (a *Appliance) VRRP(ctx context.Context) (VRRPStatus, error) {
	var out VRRPStatus
	return out, a.VRRPD.Get(ctx, PathVRRP, &out)
}

// Switchover hands mastership to the peer.
func (a *Appliance) Switchover(ctx context.Context) (Message, error) {
	var out Message
	return out, a.VRRPD.Post(ctx, PathSwitchover, nil, &out)
}

// Services is init's view of the daemons.
func (a *Appliance) Services(ctx context.Context) ([]ServiceStatus, error) {
	var out []ServiceStatus
	return out, a.Init.Get(ctx, PathServices, &out)
}

// Boot is init's record of this boot's phases.
func (a *Appliance) Boot(ctx context.Context) (BootTimes, error) {
	var out BootTimes
	return out, a.Init.Get(ctx, PathBoot, &out)
}

// Log returns log lines after since (max 0: all the ring holds).
func (a *Appliance) Log(ctx context.Context, since uint64, max int) (LogPage, error) {
	var out LogPage
	q := url.Values{"since": {fmt.Sprint(since)}, "max": {fmt.Sprint(max)}}
	return out, a.Init.Get(ctx, PathLog+"?"+q.Encode(), &out)
}

// L7 lists the L7 proxy's virtual servers with their counters.
func (a *Appliance) L7(ctx context.Context) ([]L7VirtualServer, error) {
	var out []L7VirtualServer
	return out, a.L7D.Get(ctx, PathL7, &out)
}
