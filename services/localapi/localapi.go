// Package localapi is the one local API the appliance's daemons share: JSON
// over HTTP on unix sockets under /run/fulcrum (one socket per daemon, mode
// 0600, so only root reaches it). The console CLI (lbctl) and the management
// daemon (mgmtd) talk to lbd, vrrpd and init through it, never by reading
// each other's files.
package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Dir holds the sockets.
const Dir = "/run/fulcrum"

// Socket names of the daemons that serve the local API.
const (
	LBD   = "lbd"
	VRRPD = "vrrpd"
	Init  = "init"
	L7D   = "l7d"
)

// SocketPath is the socket of daemon name under dir ("" = Dir).
func SocketPath(dir, name string) string {
	if dir == "" {
		dir = Dir
	}
	return filepath.Join(dir, name+".sock")
}

// Listen opens the unix socket at path (replacing a stale one) with mode 0600.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("local api: %w", err)
	}
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("local api: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("local api: %w", err)
	}
	return l, nil
}

// Serve serves h on the unix socket at path until ctx ends.
func Serve(ctx context.Context, path string, h http.Handler, log logrus.FieldLogger) error {
	l, err := Listen(path)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if log != nil {
		log.WithField("socket", path).Info("local api listening")
	}
	err = srv.Serve(l)
	_ = os.Remove(path)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("local api %s: %w", path, err)
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// WriteJSON writes v as JSON with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// WriteError writes err as an Error body with status code.
func WriteError(w http.ResponseWriter, code int, err error) {
	WriteJSON(w, code, Error{Error: err.Error()})
}

// ReadJSON decodes a request body (at most 1 MiB) into v, rejecting unknown
// fields.
func ReadJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad request body: %w", err)
	}
	// One JSON value and nothing after it: `{...} {...}` or `{...}x` was
	// acted on as its first object (found by lbd's FuzzRequestBodies).
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("bad request body: data after the JSON value")
	}
	return nil
}

// StatusError is a non-2xx answer from a daemon.
type StatusError struct {
	Code int
	Msg  string
	Body []byte // the answer as it came
}

func (e *StatusError) Error() string { return e.Msg }

// Client calls one daemon's local API.
type Client struct {
	Name string // daemon name for error messages
	http *http.Client
}

// NewClient returns a client of the daemon's socket at path.
func NewClient(name, path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{Name: name, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Get fetches path and decodes the JSON answer into out (nil: discard).
func (c *Client) Get(ctx context.Context, path string, out any) error {
	return c.Do(ctx, http.MethodGet, path, nil, "", out)
}

// Post sends in as JSON (nil: empty body) and decodes the answer into out.
func (c *Client) Post(ctx context.Context, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	return c.Do(ctx, http.MethodPost, path, body, "application/json", out)
}

// Do sends a request with a raw body and decodes a JSON answer into out;
// when out is a *[]byte the raw answer is stored there.
func (c *Client) Do(ctx context.Context, method, path string, body []byte, ctype string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Name+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s is not answering: %w", c.Name, unwrapURL(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s: reading answer: %w", c.Name, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return &StatusError{Code: resp.StatusCode, Msg: e.Error, Body: b}
		}
		return &StatusError{Code: resp.StatusCode, Msg: fmt.Sprintf("%s: %s: %s", c.Name, resp.Status, strings.TrimSpace(string(b))), Body: b}
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = b
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: bad answer: %w", c.Name, err)
	}
	return nil
}

func unwrapURL(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}

// Route registers h for method and path on mux. It checks the method itself
// rather than using "METHOD /path" patterns: the busybox build of the image
// compiles with Go 1.21 mux semantics, where such a pattern is a literal
// path.
func Route(mux *http.ServeMux, method, path string, h http.HandlerFunc) {
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			WriteError(w, http.StatusMethodNotAllowed, fmt.Errorf("%s takes %s, not %s", path, method, r.Method))
			return
		}
		h(w, r)
	})
}
