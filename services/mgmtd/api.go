// Package mgmtd is the appliance's HTTP management API: the console
// CLI's operations as JSON behind a bearer token, and /metrics in
// Prometheus text format. It reaches the daemons only through the local
// API (services/localapi).
package mgmtd

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/config/redact"
	"github.com/fulcrum-lb/fulcrum/services/bondstat"
	"github.com/fulcrum-lb/fulcrum/services/dashboard"
	"github.com/fulcrum-lb/fulcrum/services/guard"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/power"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
)

// Server is the HTTP API.
type Server struct {
	API *localapi.Appliance
	// TokenHash is the SHA-256 of the bearer token.
	TokenHash [32]byte
	Log       logrus.FieldLogger
	// BondDir overrides /proc/net/bonding.
	BondDir string
	// Power carries out reboot/poweroff (default power.Request).
	Power func(power.Action) error
	// Dashboard serves the web dashboard under dashboard.Prefix with its
	// own session login (nil: no dashboard). Everything else needs the
	// bearer token.
	Dashboard http.Handler

	authLog *guard.Every // rate limit of the unauthenticated-request log lines
}

// Logging client-controlled text: at most this many bytes of a request
// path or address, and at most authLogBurst lines about unauthenticated
// requests per second (the rest are counted in the next line).
const (
	maxLoggedText = 128
	authLogBurst  = 5
)

// TokenHash returns the SHA-256 the server compares tokens with, from the
// config's token or token_sha256.
func TokenHash(a config.APIAccess) ([32]byte, error) {
	var h [32]byte
	switch {
	case a.TokenSHA256 != "":
		b, err := hex.DecodeString(a.TokenSHA256)
		if err != nil || len(b) != 32 {
			return h, errors.New("management.api.token_sha256 is not a hex SHA-256")
		}
		copy(h[:], b)
	case a.Token != "":
		h = sha256.Sum256([]byte(a.Token))
	default:
		return h, errors.New("no management.api.token or token_sha256 in the config: the HTTP API stays off")
	}
	return h, nil
}

// Paths of the HTTP API.
const (
	PathMetrics = "/metrics"
	Prefix      = "/api/v1"
)

// Handler is the API with token checks on every path.
func (s *Server) Handler() http.Handler {
	if s.Power == nil {
		s.Power = power.Request
	}
	s.authLog = &guard.Every{Burst: authLogBurst, Per: time.Second}
	mux := http.NewServeMux()
	get := func(path string, h http.HandlerFunc) { localapi.Route(mux, http.MethodGet, Prefix+path, h) }
	post := func(path string, h http.HandlerFunc) { localapi.Route(mux, http.MethodPost, Prefix+path, h) }
	get("/vs", s.jsonOf(func(r *http.Request) (any, error) { return s.API.VirtualServers(r.Context()) }))
	get("/health", s.jsonOf(func(r *http.Request) (any, error) { return s.API.Health(r.Context()) }))
	get("/snat", s.jsonOf(func(r *http.Request) (any, error) { return s.API.SNAT(r.Context()) }))
	get("/vrrp", s.jsonOf(func(r *http.Request) (any, error) { return s.API.VRRP(r.Context()) }))
	get("/services", s.jsonOf(func(r *http.Request) (any, error) { return s.API.Services(r.Context()) }))
	get("/interfaces", s.jsonOf(func(r *http.Request) (any, error) { return bondstat.Read(s.BondDir) }))
	get("/log", s.jsonOf(func(r *http.Request) (any, error) {
		since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
		max, _ := strconv.Atoi(r.URL.Query().Get("max"))
		return s.API.Log(r.Context(), since, max)
	}))
	get("/config", func(w http.ResponseWriter, r *http.Request) {
		b, err := s.API.Config(r.Context())
		if err != nil {
			s.fail(w, err)
			return
		}
		if b, err = redact.Config(b); err != nil {
			localapi.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(b)
	})
	get("/config/sync", s.jsonOf(func(r *http.Request) (any, error) { return s.API.ConfigSync(r.Context()) }))
	get("/config/history", s.jsonOf(func(r *http.Request) (any, error) { return s.API.ConfigHistory(r.Context()) }))
	for _, op := range []struct{ name, path string }{{"validate", localapi.PathConfigCheck}, {"apply", localapi.PathConfigApply}, {"rollback", localapi.PathConfigRevert}} {
		post("/config/"+op.name, s.configOp(op.path))
	}
	post("/config/diff", s.configDiff)
	post("/members/disable", s.member(false))
	post("/members/enable", s.member(true))
	post("/ha/switchover", s.jsonOf(func(r *http.Request) (any, error) { return s.API.Switchover(r.Context()) }))
	post("/power", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Action string `json:"action"`
		}
		if err := localapi.ReadJSON(r, &req); err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		a, err := power.Parse(req.Action)
		if err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		if err := s.Power(a); err != nil {
			localapi.WriteError(w, http.StatusInternalServerError, err)
			return
		}
		localapi.WriteJSON(w, http.StatusAccepted, localapi.Message{Message: a.String() + " requested"})
	})
	reg := prometheus.NewRegistry()
	reg.MustRegister(&Collector{API: s.API, BondDir: s.BondDir, Log: s.Log})
	mux.Handle(PathMetrics, promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	api := s.auth(mux)
	if s.Dashboard == nil {
		return api
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, dashboard.Prefix):
			s.Dashboard.ServeHTTP(w, r)
		case r.URL.Path == "/" && r.Method == http.MethodGet:
			http.Redirect(w, r, dashboard.Prefix, http.StatusFound)
		default:
			api.ServeHTTP(w, r)
		}
	})
}

// auth lets a request through only with "Authorization: Bearer <token>".
func (s *Server) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !ok || subtle.ConstantTimeCompare(got[:], s.TokenHash[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fulcrum"`)
			msg := "missing bearer token"
			if ok {
				msg = "wrong bearer token"
			}
			if s.Log != nil {
				if ok, suppressed := s.authLog.Allow(time.Now()); ok {
					f := logrus.Fields{"remote": guard.Clip(r.RemoteAddr, maxLoggedText), "path": guard.Clip(r.URL.Path, maxLoggedText)}
					if suppressed > 0 {
						f["suppressed"] = suppressed
					}
					s.Log.WithFields(f).Warn("api: " + msg)
				}
			}
			localapi.WriteError(w, http.StatusUnauthorized, errors.New(msg+"; nothing done"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	code := http.StatusBadGateway
	var se *localapi.StatusError
	if errors.As(err, &se) {
		code = se.Code
	}
	localapi.WriteError(w, code, err)
}

func (s *Server) jsonOf(f func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r)
		if err != nil {
			s.fail(w, err)
			return
		}
		localapi.WriteJSON(w, http.StatusOK, v)
	}
}

func (s *Server) configOp(path string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
		if err != nil || len(body) > 1<<20 {
			localapi.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("config body unreadable or larger than 1 MiB"))
			return
		}
		var res localapi.ConfigResult
		// ?force_local=true: this node only, without the HA peer
		force := false
		if v := r.URL.Query().Get(localapi.ForceLocal); v == "true" || v == "1" || v == "yes" {
			force = path != localapi.PathConfigCheck
		}
		if path == localapi.PathConfigRevert {
			back := 1
			if v := r.URL.Query().Get("back"); v != "" {
				if back, err = strconv.Atoi(v); err != nil || back < 1 {
					localapi.WriteError(w, http.StatusBadRequest, fmt.Errorf("rollback back=%q: want a number of configs back, 1 or more; nothing changed", v))
					return
				}
			}
			res, err = s.API.Rollback(r.Context(), back, force)
		} else {
			if force {
				path += "?" + localapi.ForceLocal + "=true"
			}
			res, err = s.API.ConfigOp(r.Context(), path, body)
		}
		if err != nil {
			s.fail(w, err)
			return
		}
		code := http.StatusOK
		if !res.OK {
			code = http.StatusUnprocessableEntity
		}
		localapi.WriteJSON(w, code, res)
	}
}

// configDiff answers what applying the posted config would change;
// nothing changes. An invalid config is refused (422) with its field errors.
func (s *Server) configDiff(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil || len(body) > 1<<20 {
		localapi.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("config body unreadable or larger than 1 MiB"))
		return
	}
	res, err := s.API.ConfigDiff(r.Context(), body)
	if err != nil {
		s.fail(w, err)
		return
	}
	code := http.StatusOK
	if !res.OK {
		code = http.StatusUnprocessableEntity
	}
	localapi.WriteJSON(w, code, res)
}

func (s *Server) member(enable bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var ref localapi.MemberRef
		if err := localapi.ReadJSON(r, &ref); err != nil {
			localapi.WriteError(w, http.StatusBadRequest, err)
			return
		}
		m, err := s.API.Member(r.Context(), enable, ref)
		if err != nil {
			s.fail(w, err)
			return
		}
		localapi.WriteJSON(w, http.StatusOK, m)
	}
}
