package qemu

// The web dashboard in a real browser: Debian's chromium, headless, driven
// through the DevTools protocol (chromedp) against the appliance that
// TestManagementAPIAuthMetricsAndSyslog boots (no boot of its own), over
// TLS.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/fulcrum-lb/fulcrum/qemu/appliance"
	"github.com/fulcrum-lb/fulcrum/qemu/netlab"
	"github.com/fulcrum-lb/fulcrum/services/dashboard"
	"github.com/fulcrum-lb/fulcrum/services/localapi"
	"github.com/u-root/mkuimage/cpio"
)

// Where the appliance finds the API's certificate (the config names them).
const (
	apiCertPath = "/etc/fulcrum/api.crt"
	apiKeyPath  = "/etc/fulcrum/api.key"
)

// apiCert makes a self-signed certificate for the Internal self IP (and
// 127.0.0.1, where the browser reaches it through a forwarder), the cpio
// records that put it in the guest, and a pool that trusts it.
func apiCert(t *testing.T) ([]cpio.Record, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lb1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("198.51.100.2"), net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return []cpio.Record{
		cpio.StaticFile(strings.TrimPrefix(apiCertPath, "/"), string(certPEM), 0o644),
		cpio.StaticFile(strings.TrimPrefix(apiKeyPath, "/"), string(keyPEM), 0o600),
	}, pool
}

// nsTLSClient is nsClient verifying the API's certificate against pool.
func nsTLSClient(ns *netlab.Namespace, pool *x509.CertPool) *http.Client {
	c := nsClient(ns)
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return c
}

// forwardFrom listens on 127.0.0.1 on the host and connects each
// connection to target from inside ns (the browser runs on the host; the
// API answers only on the Internal side).
func forwardFrom(t *testing.T, ns *netlab.Namespace, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var u net.Conn
				if err := ns.Do(func() error {
					var err error
					u, err = net.DialTimeout("tcp", target, 5*time.Second)
					return err
				}); err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(u, c); done <- struct{}{} }()
				go func() { io.Copy(c, u); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return l.Addr().String()
}

// tcpMember accepts and closes TCP connections at addr inside ns (a TCP
// monitor's member) until stop is called.
func tcpMember(t *testing.T, ns *netlab.Namespace, addr string) (stop func()) {
	t.Helper()
	var l net.Listener
	if err := ns.Do(func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return func() { l.Close() }
}

// trafficTo opens a TCP connection to addr from ns every interval until
// stop is called (for the page's rates and charts).
func trafficTo(ns *netlab.Namespace, addr string, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-time.After(interval):
			}
			ns.Do(func() error {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					c.Write([]byte("hello\n"))
					c.Close()
				}
				return nil
			})
		}
	}()
	return func() { close(done); <-finished }
}

// dashboardInBrowser logs in with chromium, sees the VIPs and members,
// watches the app member go down when its server stops (the page is not
// reloaded), disables member .12 of web from the page and sees its kernel
// weight become 0 through the API; requests without the session or
// without the CSRF token change nothing. Screenshots go to
// out/screenshots/.
func dashboardInBrowser(t *testing.T, hc *http.Client, base string, fwd string, client *netlab.Namespace, stopApp func()) {
	testkit.Require(t, testkit.Tool("/usr/bin/chromium"))
	// Without session or CSRF token nothing changes (.11 stays disabled).
	enable := `{"pool":"web","member":"198.51.100.11","action":"enable"}`
	if code, body := call(t, hc, "POST", base+dashboard.PathMember, "", enable); code != http.StatusUnauthorized {
		t.Errorf("dashboard action without a session: %d %s", code, body)
	}
	if code, _ := call(t, hc, "GET", base+dashboard.PathState, "", ""); code != http.StatusUnauthorized {
		t.Errorf("dashboard state without a session: %d", code)
	}
	resp, err := hc.Post(base+dashboard.PathLogin, "application/json", strings.NewReader(`{"user":"admin","password":"`+appliance.LabPassword+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == dashboard.CookieName {
			cookie = c
		}
	}
	if resp.StatusCode != 200 || cookie == nil {
		t.Fatalf("dashboard login over TLS: %s, cookie %v", resp.Status, cookie)
	}
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "Secure") || !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Strict") {
		t.Errorf("session cookie over TLS: %q, want Secure; HttpOnly; SameSite=Strict", sc)
	}
	req, _ := http.NewRequest("POST", base+dashboard.PathMember, strings.NewReader(enable))
	req.AddCookie(cookie)
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("dashboard action with the session but no CSRF token: %v %v, want 403", resp.Status, err)
	} else {
		resp.Body.Close()
	}
	weight := func(member string) int {
		t.Helper()
		code, body := call(t, hc, "GET", base+"/api/v1/vs", apiToken, "")
		if code != 200 {
			t.Fatalf("GET /api/v1/vs: %d %s", code, body)
		}
		var vss []localapi.VirtualServer
		if err := json.Unmarshal([]byte(body), &vss); err != nil {
			t.Fatal(err)
		}
		for _, vs := range vss {
			for _, m := range vs.Members {
				if m.Address == member && vs.Name == "web" {
					return m.Weight
				}
			}
		}
		t.Fatalf("no member %s of web in the kernel: %s", member, body)
		return -1
	}
	if w := weight("198.51.100.11:80"); w != 0 {
		t.Fatalf("refused dashboard requests changed .11: weight %d, want 0 (disabled)", w)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath("/usr/bin/chromium"), chromedp.NoSandbox,
		chromedp.Flag("ignore-certificate-errors", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelT()
	page := "https://" + fwd + "/"
	start := time.Now()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SendKeys(chromedp.CSS("#password"), appliance.LabPassword),
		chromedp.Click(chromedp.CSS("#login-button")),
		chromedp.WaitVisible(chromedp.CSS("#app")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-member="web/198.51.100.12:80"]`)),
	); err != nil {
		t.Fatalf("browser login: %v", err)
	}
	// A marker that a reload would wipe.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded = true`)); err != nil {
		t.Fatal(err)
	}
	t.Logf("browser logged in and sees the members after %s", time.Since(start).Round(100*time.Millisecond))
	text := func() string {
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#vs-body")))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		return s
	}
	for _, want := range []string{"203.0.113.100:80", "203.0.113.101:80", "198.51.100.11:80", "198.51.100.12:80", "198.51.100.11:8081"} {
		if !strings.Contains(text(), want) {
			t.Errorf("the page does not show %s:\n%s", want, text())
		}
	}
	attr := func(sel, name string) string {
		v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
		if err != nil {
			t.Fatalf("reading %s of %s: %v", name, sel, err)
		}
		return v.Value
	}
	appRow := `tr[data-member="app/198.51.100.11:8081"]`
	waitAttr := func(sel, name, want string, within time.Duration) {
		t.Helper()
		testkit.Eventually(t, within, 500*time.Millisecond, func() error {
			if got := attr(sel, name); got != want {
				return fmt.Errorf("%s %s = %q, want %q", sel, name, got, want)
			}
			return nil
		})
	}
	waitAttr(appRow, "data-health", "up", 30*time.Second)
	// Clients through the app VIP until the page charts three sample
	// intervals of it (lbd samples every 5 s).
	stopTraffic := trafficTo(client, "203.0.113.101:80", 100*time.Millisecond)
	testkit.Eventually(t, 40*time.Second, time.Second, func() error {
		pts, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector('div[data-vs="TCP 203.0.113.101:80"] polyline') || {getAttribute: () => ""}).getAttribute("points") || ""`))
		if err != nil {
			return err
		}
		if n := len(strings.Fields(pts)); n < 3 {
			return fmt.Errorf("the app VS chart has %d points", n)
		}
		return nil
	})
	shot(t, ctx, "dashboard.png")
	stopTraffic()

	// The member's server stops: the open page shows it down.
	stopApp()
	stopped := time.Now()
	waitAttr(appRow, "data-health", "down", 30*time.Second)
	t.Logf("the page showed the app member down %s after its server stopped", time.Since(stopped).Round(100*time.Millisecond))
	if kept, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.notReloaded === true`)); err != nil || !kept {
		t.Errorf("the page was reloaded (marker gone: %v %v)", kept, err)
	}

	// Disable .12 from the page (the confirmation answered yes).
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(window.confirm = () => true, true)`)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`tr[data-member="web/198.51.100.12:80"] button[data-action="disable"]`))); err != nil {
		t.Fatalf("clicking disable: %v", err)
	}
	testkit.Eventually(t, 20*time.Second, 500*time.Millisecond, func() error {
		if w := weight("198.51.100.12:80"); w != 0 {
			return fmt.Errorf("kernel weight of .12 is %d after the click, want 0", w)
		}
		return nil
	})
	waitAttr(`tr[data-member="web/198.51.100.12:80"]`, "data-weight", "0", 10*time.Second)
	msg, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#message")))
	t.Logf("after the click: %q; kernel weight of .12 is 0", msg)

	// A phone-sized view.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // one poll at the new size
	shot(t, ctx, "dashboard-phone.png")

	// Logout: the session no longer works.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form"))); err != nil {
		t.Fatalf("logout: %v", err)
	}
}

// shot saves the visible page as out/screenshots/NAME (PNG).
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dir := filepath.Join("..", "out", "screenshots") // tests run in qemu/
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", filepath.Join(dir, name), len(png))
}
