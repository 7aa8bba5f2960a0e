package lbd

// Rates computed on the appliance: lbd samples the kernel's IPVS counters
// every few seconds into a 15-minute ring (lbcore/rates); /v1/vs carries
// each service's and member's current rate, /v1/rates the history per
// service for the dashboard's charts.

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/rates"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

// SampleEvery is how often RunSampler reads the counters; RateWindow is
// the span a current rate is measured over.
const (
	SampleEvery = 5 * time.Second
	RateWindow  = 10 * time.Second
)

func memberKey(service string, member netip.AddrPort) string {
	return service + " -> " + member.String()
}

// Sample reads the kernel's counters once into the ring.
func (a *Server) Sample(at time.Time) error {
	kss, err := a.kernel.GetServices()
	if err != nil {
		return fmt.Errorf("reading IPVS services: %w", err)
	}
	c := map[string]rates.Counters{}
	for _, ks := range kss {
		id := serviceID(ks.Protocol, toAddr(ks.Address), ks.Port, ks.FWMark)
		c[id] = rates.Counters{Conns: uint64(ks.Stats.Connections), PacketsIn: uint64(ks.Stats.PacketsIn),
			PacketsOut: uint64(ks.Stats.PacketsOut), BytesIn: ks.Stats.BytesIn, BytesOut: ks.Stats.BytesOut}
		kds, err := a.kernel.GetDestinations(ks)
		if err != nil {
			return fmt.Errorf("reading IPVS destinations of %s: %w", id, err)
		}
		for _, kd := range kds {
			c[memberKey(id, netip.AddrPortFrom(toAddr(kd.Address), kd.Port))] = rates.Counters{Conns: uint64(kd.Stats.Connections),
				PacketsIn: uint64(kd.Stats.PacketsIn), PacketsOut: uint64(kd.Stats.PacketsOut), BytesIn: kd.Stats.BytesIn, BytesOut: kd.Stats.BytesOut}
		}
	}
	a.rates.Add(at, c)
	return nil
}

// RunSampler samples the counters every interval until ctx ends.
func (a *Server) RunSampler(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	for {
		if err := a.Sample(time.Now()); err != nil && !failing {
			a.log.WithError(err).Warn("rates: counters not sampled")
			failing = true
		} else if err == nil {
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func toRate(r rates.Rate) *localapi.Rate {
	return &localapi.Rate{Conns: r.Conns, PacketsIn: r.PacketsIn, PacketsOut: r.PacketsOut, BytesIn: r.BytesIn, BytesOut: r.BytesOut}
}

// rate is key's current rate, nil until two samples exist.
func (a *Server) rate(key string) *localapi.Rate {
	r, ok := a.rates.Current(key, RateWindow)
	if !ok {
		return nil
	}
	return toRate(r)
}

func (a *Server) getRates(w http.ResponseWriter, r *http.Request) {
	out := []localapi.RateHistory{}
	for _, k := range a.rates.Keys() {
		if strings.Contains(k, " -> ") {
			continue // members: current rates only (in /v1/vs)
		}
		proto, addr, _ := strings.Cut(k, "  ")
		h := localapi.RateHistory{Protocol: proto, Address: addr, Points: []localapi.RatePoint{}}
		for _, p := range a.rates.History(k) {
			h.Points = append(h.Points, localapi.RatePoint{Time: p.Time, Rate: *toRate(p.Rate)})
		}
		out = append(out, h)
	}
	localapi.WriteJSON(w, http.StatusOK, out)
}
