// Package dashboard is the operator's web view, served by mgmtd on the
// management side next to the API: one page (HTML, CSS and JS embedded,
// nothing fetched from elsewhere) that polls a JSON state every few
// seconds: the node, VRRP, bonds, virtual servers with their members'
// health, counters and rates, SNAT, sync, recent log lines, and 15-minute
// charts of conn/s and bytes/s per virtual server drawn as inline SVG.
//
// Login is the console's: user admin and the bcrypt hash in
// management.console.password_hash, failing closed the same way (no usable
// hash: nobody logs in; the console's passwordless recovery mode never
// applies here). A login gives an HttpOnly, SameSite=Strict session cookie
// (Secure under TLS) and a CSRF token the page sends in a header with every
// action; sessions expire when idle and after a fixed time; failed logins
// slow down as on the console. The bearer-token API stays for scripts.
package dashboard

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/bondstat"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/sirupsen/logrus"
)

//go:embed web
var webFS embed.FS

// Prefix is where the dashboard lives; "/" redirects here.
const Prefix = "/ui/"

// Paths under Prefix.
const (
	PathLogin  = Prefix + "login"
	PathLogout = Prefix + "logout"
	PathState  = Prefix + "api/state"
	PathMember = Prefix + "api/member"
	PathHA     = Prefix + "api/ha"
	// Config: diff first (what would change, nothing changes), then apply
	// the very text that was diffed.
	PathConfigDiff  = Prefix + "api/config/diff"
	PathConfigApply = Prefix + "api/config/apply"
)

// CookieName is the session cookie; CSRFHeader carries the CSRF token.
const (
	CookieName = "fulcrum_session"
	CSRFHeader = "X-CSRF-Token"
)

// User is the one account (the console's).
const User = "admin"

// Server is the dashboard.
type Server struct {
	API *localapi.Appliance
	// Hash returns the console's bcrypt hash, or why nobody may log in
	// (read at each login, so a changed password applies at once).
	Hash func() (string, error)
	// Check compares a password with the hash (console.CheckNiced).
	Check func(hash, pw string) bool
	// TLS: the cookie is marked Secure.
	TLS bool
	Log logrus.FieldLogger
	// BondDir and SysNet override /proc/net/bonding and /sys/class/net.
	BondDir, SysNet string
	// IdleTimeout and MaxAge end sessions (defaults 30 min and 12 h);
	// FailDelay and MaxFailDelay pace failed logins (2 s and 60 s).
	IdleTimeout, MaxAge     time.Duration
	FailDelay, MaxFailDelay time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	sessions *sessions
	limit    *limiter
	start    time.Time
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Handler serves everything under Prefix.
func (s *Server) Handler() http.Handler {
	if s.IdleTimeout == 0 {
		s.IdleTimeout = 30 * time.Minute
	}
	if s.MaxAge == 0 {
		s.MaxAge = 12 * time.Hour
	}
	if s.FailDelay == 0 {
		s.FailDelay = 2 * time.Second
	}
	if s.MaxFailDelay == 0 {
		s.MaxFailDelay = time.Minute
	}
	s.sessions = newSessions(s.IdleTimeout, s.MaxAge, 64)
	s.limit = newLimiter(s.FailDelay, s.MaxFailDelay)
	s.start = s.now()
	static, err := fs.Sub(webFS, "web")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	files := http.FileServer(http.FS(static))
	mux := http.NewServeMux()
	mux.Handle(Prefix, http.StripPrefix(Prefix, files))
	localapi.Route(mux, http.MethodPost, PathLogin, s.login)
	localapi.Route(mux, http.MethodPost, PathLogout, s.action(s.logout))
	localapi.Route(mux, http.MethodGet, PathState, s.authed(s.state))
	localapi.Route(mux, http.MethodPost, PathMember, s.action(s.member))
	localapi.Route(mux, http.MethodPost, PathHA, s.action(s.ha))
	localapi.Route(mux, http.MethodPost, PathConfigDiff, s.action(s.configDiff))
	localapi.Route(mux, http.MethodPost, PathConfigApply, s.action(s.configApply))
	return headers(mux)
}

// headers: no framing, no sniffing, no referrer, scripts and styles from
// this origin only, and nothing cached.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func clientAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

type loginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// LoginAnswer is what a successful login returns.
type LoginAnswer struct {
	User string `json:"user"`
	CSRF string `json:"csrf"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	client := clientAddr(r)
	if wait := s.limit.wait(client, s.now()); wait > 0 {
		secs := int(wait.Seconds() + 0.999)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		localapi.WriteError(w, http.StatusTooManyRequests, fmt.Errorf("too many failed logins: next attempt in %d s", secs))
		return
	}
	var req loginRequest
	if err := localapi.ReadJSON(r, &req); err != nil {
		localapi.WriteError(w, http.StatusBadRequest, err)
		return
	}
	hash, err := s.Hash()
	if err != nil {
		// Fail closed, and say why (the console prints the same reason).
		localapi.WriteError(w, http.StatusForbidden, fmt.Errorf("login disabled: %v", err))
		return
	}
	good := req.User == User
	// Compare even for a wrong user name: the answer takes as long.
	good = s.Check(hash, req.Password) && good
	if !good {
		s.limit.fail(client, s.now())
		if s.Log != nil {
			s.Log.WithField("remote", client.String()).Warn("dashboard: failed login")
		}
		localapi.WriteError(w, http.StatusUnauthorized, errors.New("login incorrect"))
		return
	}
	s.limit.succeed(client)
	id, se := s.sessions.create(s.now())
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: Prefix, HttpOnly: true, Secure: s.TLS, SameSite: http.SameSiteStrictMode})
	if s.Log != nil {
		s.Log.WithField("remote", client.String()).Info("dashboard: admin logged in")
	}
	localapi.WriteJSON(w, http.StatusOK, LoginAnswer{User: User, CSRF: se.csrf})
}

func (s *Server) session(r *http.Request) (string, *session, bool) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return "", nil, false
	}
	se, ok := s.sessions.get(c.Value, s.now())
	return c.Value, se, ok
}

// authed serves reads to a logged-in browser.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, se, ok := s.session(r)
		if !ok {
			localapi.WriteError(w, http.StatusUnauthorized, errors.New("not logged in (or the session expired)"))
			return
		}
		h(w, r, se)
	}
}

// action serves a change: a session and its CSRF token in the header, or
// nothing is done.
func (s *Server) action(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, se, ok := s.session(r)
		if !ok {
			localapi.WriteError(w, http.StatusUnauthorized, errors.New("not logged in (or the session expired); nothing done"))
			return
		}
		if !sameToken(r.Header.Get(CSRFHeader), se.csrf) {
			localapi.WriteError(w, http.StatusForbidden, errors.New("missing or wrong CSRF token; nothing done"))
			return
		}
		h(w, r, id)
	}
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, id string) {
	s.sessions.remove(id)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: Prefix, MaxAge: -1, HttpOnly: true, Secure: s.TLS, SameSite: http.SameSiteStrictMode})
	localapi.WriteJSON(w, http.StatusOK, localapi.Message{Message: "logged out"})
}

// MemberAction is the body of PathMember.
type MemberAction struct {
	Pool   string `json:"pool"`
	Member string `json:"member"`
	// Action is disable (weight 0: existing connections drain), drain
	// (the same) or enable.
	Action string `json:"action"`
}

func (s *Server) member(w http.ResponseWriter, r *http.Request, _ string) {
	var req MemberAction
	if err := localapi.ReadJSON(r, &req); err != nil {
		localapi.WriteError(w, http.StatusBadRequest, err)
		return
	}
	var enable bool
	switch req.Action {
	case "enable":
		enable = true
	case "disable", "drain":
	default:
		localapi.WriteError(w, http.StatusBadRequest, fmt.Errorf("action %q: want enable, disable or drain; nothing done", req.Action))
		return
	}
	m, err := s.API.Member(r.Context(), enable, localapi.MemberRef{Pool: req.Pool, Member: req.Member})
	if err != nil {
		fail(w, err)
		return
	}
	s.audit(r, "member "+req.Action, req.Pool+"/"+req.Member)
	localapi.WriteJSON(w, http.StatusOK, m)
}

func (s *Server) ha(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		Action string `json:"action"`
	}
	if err := localapi.ReadJSON(r, &req); err != nil {
		localapi.WriteError(w, http.StatusBadRequest, err)
		return
	}
	var m localapi.Message
	var err error
	switch req.Action {
	case "switchover":
		m, err = s.API.Switchover(r.Context())
	case "resume":
		err = s.API.VRRPD.Post(r.Context(), localapi.PathResume, nil, &m)
	default:
		localapi.WriteError(w, http.StatusBadRequest, fmt.Errorf("action %q: want switchover or resume; nothing done", req.Action))
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	s.audit(r, "ha "+req.Action, "")
	localapi.WriteJSON(w, http.StatusOK, m)
}

// ConfigRequest is the body of the config actions: the YAML, and for
// apply the digest its diff returned.
type ConfigRequest struct {
	YAML   string `json:"yaml"`
	Digest string `json:"digest,omitempty"`
}

// DiffAnswer is lbd's diff and the digest apply must quote.
type DiffAnswer struct {
	localapi.ConfigDiff
	Digest string `json:"digest"`
}

func digest(yaml string) string {
	h := sha256.Sum256([]byte(yaml))
	return hex.EncodeToString(h[:])
}

func (s *Server) configDiff(w http.ResponseWriter, r *http.Request, _ string) {
	var req ConfigRequest
	if err := localapi.ReadJSON(r, &req); err != nil {
		localapi.WriteError(w, http.StatusBadRequest, err)
		return
	}
	d, err := s.API.ConfigDiff(r.Context(), []byte(req.YAML))
	if err != nil {
		fail(w, err)
		return
	}
	// An invalid config is an answer too (OK false, its field errors);
	// the page offers no apply for it.
	localapi.WriteJSON(w, http.StatusOK, DiffAnswer{ConfigDiff: d, Digest: digest(req.YAML)})
}

// configApply applies a config only with the digest of its diff: the
// operator confirmed what they saw.
func (s *Server) configApply(w http.ResponseWriter, r *http.Request, _ string) {
	var req ConfigRequest
	if err := localapi.ReadJSON(r, &req); err != nil {
		localapi.WriteError(w, http.StatusBadRequest, err)
		return
	}
	if !sameToken(req.Digest, digest(req.YAML)) {
		localapi.WriteError(w, http.StatusConflict, errors.New("this config was not diffed (or changed since its diff): show the diff first; nothing changed"))
		return
	}
	res, err := s.API.ConfigOp(r.Context(), localapi.PathConfigApply, []byte(req.YAML))
	if err != nil {
		fail(w, err)
		return
	}
	s.audit(r, "config apply", digest(req.YAML)[:12])
	code := http.StatusOK
	if !res.OK {
		code = http.StatusUnprocessableEntity
		res.Message = strings.Join(append([]string{res.Message}, res.Errors...), "\n")
	}
	localapi.WriteJSON(w, code, res)
}

func (s *Server) audit(r *http.Request, what, target string) {
	if s.Log != nil {
		s.Log.WithFields(logrus.Fields{"remote": clientAddr(r).String(), "action": what, "target": target}).Info("dashboard action")
	}
}

func fail(w http.ResponseWriter, err error) {
	code := http.StatusBadGateway
	var se *localapi.StatusError
	if errors.As(err, &se) {
		code = se.Code
	}
	localapi.WriteError(w, code, err)
}

// Node is the appliance itself.
type Node struct {
	Hostname   string    `json:"hostname"`
	Version    string    `json:"version"`
	Kernel     string    `json:"kernel"`
	Uptime     float64   `json:"uptime_seconds"`
	ConfigHash string    `json:"config_hash"` // SHA-256 of the running config, first 12 hex digits
	Time       time.Time `json:"time"`
}

// PoolMember is one configured member of a virtual server's pool, joined
// with the kernel's view of it (Kernel nil: not in IPVS now).
type PoolMember struct {
	localapi.MemberHealth
	Kernel *localapi.Member `json:"kernel,omitempty"`
}

// VirtualServer is one VS with every configured member.
type VirtualServer struct {
	localapi.VirtualServer
	Pool    []PoolMember         `json:"pool_members"`
	History []localapi.RatePoint `json:"history"`
}

// State is everything the page shows, read fresh at each poll. A part
// that could not be read is left empty and its error put in Errors.
type State struct {
	User           string               `json:"user"`
	CSRF           string               `json:"csrf"`
	Node           Node                 `json:"node"`
	VRRP           *localapi.VRRPStatus `json:"vrrp,omitempty"`
	Bonds          []bondstat.Bond      `json:"bonds"`
	LinkState      map[string]string    `json:"link_state"`
	VirtualServers []VirtualServer      `json:"virtual_servers"`
	SNAT           *localapi.SNATStatus `json:"snat,omitempty"`
	Sync           *localapi.SyncStatus `json:"sync,omitempty"`
	Log            []localapi.LogLine   `json:"log"`
	Errors         map[string]string    `json:"errors,omitempty"`
}

func (s *Server) state(w http.ResponseWriter, r *http.Request, se *session) {
	ctx := r.Context()
	st := State{User: User, CSRF: se.csrf, Errors: map[string]string{}, Bonds: []bondstat.Bond{}, LinkState: map[string]string{},
		VirtualServers: []VirtualServer{}, Log: []localapi.LogLine{}}
	note := func(part string, err error) bool {
		if err != nil {
			st.Errors[part] = err.Error()
			return false
		}
		return true
	}
	st.Node = s.node(r)
	if v, err := s.API.VRRP(ctx); note("vrrp", err) {
		st.VRRP = &v
	}
	if b, err := bondstat.Read(s.BondDir); note("bonds", err) && b != nil {
		st.Bonds = b
		for _, bond := range b {
			st.LinkState[bond.Name] = s.operstate(bond.Name)
			for _, m := range bond.Members {
				st.LinkState[m.Name] = s.operstate(m.Name)
			}
		}
	}
	vss, err := s.API.VirtualServers(ctx)
	note("virtual_servers", err)
	hs, err := s.API.Health(ctx)
	note("health", err)
	hist, err := s.API.Rates(ctx)
	note("rates", err)
	st.VirtualServers = joinPools(vss, hs, hist)
	if v, err := s.API.SNAT(ctx); note("snat", err) {
		st.SNAT = &v
	}
	if v, err := s.API.Sync(ctx); note("sync", err) {
		st.Sync = &v
	}
	if page, err := s.API.Log(ctx, 0, 0); note("log", err) {
		lines := page.Lines
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		st.Log = lines
	}
	localapi.WriteJSON(w, http.StatusOK, st)
}

func (s *Server) node(r *http.Request) Node {
	n := Node{Time: s.now(), Version: version()}
	n.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		n.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			n.Uptime, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	if cfg, err := s.API.Config(r.Context()); err == nil {
		h := sha256.Sum256(cfg)
		n.ConfigHash = hex.EncodeToString(h[:])[:12]
	}
	return n
}

// version is the build's module version and VCS revision, when the build
// recorded them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "unversioned build"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " " + s.Value[:12]
		}
	}
	return v + " (" + bi.GoVersion + ")"
}

func (s *Server) operstate(name string) string {
	dir := s.SysNet
	if dir == "" {
		dir = "/sys/class/net"
	}
	b, err := os.ReadFile(dir + "/" + name + "/operstate")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// joinPools lists every configured member of each VS's pool with its
// health, joined with the kernel's destination (weight, connections,
// rates) when it is in IPVS.
func joinPools(vss []localapi.VirtualServer, hs []localapi.MemberHealth, hist []localapi.RateHistory) []VirtualServer {
	out := make([]VirtualServer, 0, len(vss))
	for _, vs := range vss {
		v := VirtualServer{VirtualServer: vs, Pool: []PoolMember{}, History: []localapi.RatePoint{}}
		for _, h := range hist {
			if h.Protocol == vs.Protocol && h.Address == vs.Address {
				v.History = h.Points
			}
		}
		vsPort := uint16(0)
		if ap, err := netip.ParseAddrPort(vs.Address); err == nil {
			vsPort = ap.Port()
		}
		used := map[int]bool{}
		for _, h := range hs {
			if vs.Pool == "" || h.Pool != vs.Pool {
				continue
			}
			pm := PoolMember{MemberHealth: h}
			want, err := netip.ParseAddrPort(h.Member)
			if err != nil {
				if a, aerr := netip.ParseAddr(h.Member); aerr == nil {
					want, err = netip.AddrPortFrom(a, vsPort), nil
				}
			}
			for i := range vs.Members {
				if got, gerr := netip.ParseAddrPort(vs.Members[i].Address); err == nil && gerr == nil && got == want && !used[i] {
					used[i] = true
					m := vs.Members[i]
					pm.Kernel = &m
				}
			}
			v.Pool = append(v.Pool, pm)
		}
		// Destinations the config does not name (a sorry server, an
		// unknown VS) still show.
		for i := range vs.Members {
			if !used[i] {
				m := vs.Members[i]
				v.Pool = append(v.Pool, PoolMember{MemberHealth: localapi.MemberHealth{Pool: vs.Pool, Member: m.Address, Health: m.Health, Disabled: m.Disabled}, Kernel: &m})
			}
		}
		out = append(out, v)
	}
	return out
}
