package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

// lbProbe answers the two questions the VRRP start gate asks.
type lbProbe interface {
	// lbSupervised says whether init runs lbd on this appliance.
	lbSupervised(ctx context.Context) (bool, error)
	// lbApplied says whether lbd has applied its config.
	lbApplied(ctx context.Context) (bool, error)
}

// gateTimes bound the gate: how long init's API may take to answer, how
// often lbd is asked, and how long VRRP waits for it at most.
type gateTimes struct {
	initGrace, poll, max time.Duration
}

func defaultGate() gateTimes {
	return gateTimes{initGrace: 3 * time.Second, poll: 200 * time.Millisecond, max: 60 * time.Second}
}

// errNoInit says there is no init local API at all (vrrpd run outside the
// appliance): nothing to wait for.
var errNoInit = errors.New("no init local API socket")

// waitForLB holds VRRP back until the LB daemon has applied its config, so
// a node never takes the virtual addresses (as a first master or by
// preempting) before IPVS and nftables can serve them. It does not wait
// when lbd is not one of the appliance's services (or init cannot be
// asked, e.g. vrrpd run on its own), and waits at most g.max: a node
// without its LB rules still beats a pair with no master at all.
func waitForLB(ctx context.Context, p lbProbe, g gateTimes, log logrus.FieldLogger) error {
	start := time.Now()
	var supervised bool
	for {
		var err error
		supervised, err = p.lbSupervised(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, errNoInit) {
			log.Info("not under the appliance's init: starting VRRP without waiting for lbd")
			return nil
		}
		if time.Since(start) >= g.initGrace {
			log.WithError(err).Info("init's service list not available: starting VRRP without waiting for lbd")
			return nil
		}
		if err := sleepCtx(ctx, g.poll); err != nil {
			return err
		}
	}
	if !supervised {
		log.Info("lbd is not one of this appliance's services: starting VRRP without waiting for it")
		return nil
	}
	for {
		applied, err := p.lbApplied(ctx)
		if err == nil && applied {
			log.WithField("waited", time.Since(start).Round(time.Millisecond).String()).Info("lbd has applied its config: starting VRRP")
			return nil
		}
		if time.Since(start) >= g.max {
			entry := log.WithField("waited", g.max.String())
			if err != nil {
				entry = entry.WithError(err)
			}
			entry.Warn("lbd has not applied its config: starting VRRP anyway")
			return nil
		}
		if err := sleepCtx(ctx, g.poll); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// localProbe asks init and lbd over the local API.

type localProbe struct {
	initSock  string
	init, lbd *localapi.Client
}

func newLocalProbe(dir string) localProbe {
	initSock := localapi.SocketPath(dir, localapi.Init)
	return localProbe{
		initSock: initSock,
		init:     localapi.NewClient(localapi.Init, initSock),
		lbd:      localapi.NewClient(localapi.LBD, localapi.SocketPath(dir, localapi.LBD)),
	}
}

func (p localProbe) lbSupervised(ctx context.Context) (bool, error) {
	// init serves its API before it starts any daemon: no socket, no init
	if _, err := os.Stat(p.initSock); errors.Is(err, fs.ErrNotExist) {
		return false, errNoInit
	}
	var svcs []localapi.ServiceStatus
	if err := p.init.Get(ctx, localapi.PathServices, &svcs); err != nil {
		return false, err
	}
	for _, s := range svcs {
		if s.Name == localapi.LBD {
			return true, nil
		}
	}
	return false, nil
}

func (p localProbe) lbApplied(ctx context.Context) (bool, error) {
	var st struct {
		AppliedAt time.Time `json:"applied_at"`
	}
	if err := p.lbd.Get(ctx, "/status", &st); err != nil {
		return false, fmt.Errorf("lbd status: %w", err)
	}
	return !st.AppliedAt.IsZero(), nil
}
