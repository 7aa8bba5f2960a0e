package mgmtd

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/fulcrum-lb/fulcrum/services/power"
	"github.com/sirupsen/logrus"
)

// FuzzRequestBodies posts arbitrary bodies, with and without the right
// token, to the management API endpoints that read one (power, member
// disable/enable, config validate), through the real handler and an
// httptest recorder; no daemon answers behind it. No body may panic or get
// a 500; every answer is JSON; without the token nothing is done (401);
// power is asked only for a valid action, exactly when the answer is 202;
// a body that is not JSON is a 400 on the JSON endpoints. Seeds: valid and
// refused requests, testdata/fuzz.
func FuzzRequestBodies(f *testing.F) {
	f.Add(uint8(0), true, []byte(`{"action":"reboot"}`))
	f.Add(uint8(0), true, []byte(`{"action":"dance"}`))
	f.Add(uint8(0), false, []byte(`{"action":"poweroff"}`))
	f.Add(uint8(1), true, []byte(`{"pool":"web","member":"198.51.100.11"}`))
	f.Add(uint8(2), true, []byte(`{"pool":"web"}`))
	f.Add(uint8(3), true, []byte("version: 1\n"))

	const token = "0123456789abcdef-token"
	hash, err := TokenHash(config.APIAccess{Token: token})
	if err != nil {
		f.Fatal(err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	var asked []power.Action
	s := &Server{API: localapi.NewAppliance(f.TempDir()), TokenHash: hash, Log: log,
		Power: func(a power.Action) error { asked = append(asked, a); return nil }}
	h := s.Handler()
	paths := []string{"/power", "/members/disable", "/members/enable", "/config/validate"}

	f.Fuzz(func(t *testing.T, which uint8, auth bool, body []byte) {
		p := Prefix + paths[int(which)%len(paths)]
		r := httptest.NewRequest(http.MethodPost, p, bytes.NewReader(body))
		if auth {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		asked = asked[:0]
		h.ServeHTTP(w, r)
		if w.Code == http.StatusInternalServerError {
			t.Fatalf("POST %s %q: %d %s", p, body, w.Code, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("POST %s %q: answer is not JSON: %q", p, body, w.Body)
		}
		if !auth {
			if w.Code != http.StatusUnauthorized || len(asked) != 0 {
				t.Fatalf("POST %s without the token: %d, power asked %v", p, w.Code, asked)
			}
			return
		}
		if paths[int(which)%len(paths)] == "/config/validate" {
			return // the body is YAML, handed to lbd as it is
		}
		if !json.Valid(body) && w.Code != http.StatusBadRequest {
			t.Fatalf("POST %s with a body that is not JSON (%q): %d %s, want 400", p, body, w.Code, w.Body)
		}
		if p == Prefix+"/power" {
			if (w.Code == http.StatusAccepted) != (len(asked) == 1) {
				t.Fatalf("power %q: %d, power asked %v", body, w.Code, asked)
			}
			for _, a := range asked {
				if a != power.Reboot && a != power.PowerOff {
					t.Fatalf("power asked for %v from %q", a, body)
				}
			}
		}
	})
}
