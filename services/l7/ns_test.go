package l7

// Real sockets in network namespaces: a client namespace (203.0.113.10), the
// proxy's namespace (External 203.0.113.2 + the VIP, Internal 198.51.100.2)
// and a members' namespace (198.51.100.11 and .12). Run as root, under
// flock /tmp/fulcrum-lab.lock.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"github.com/fulcrum-lb/fulcrum/lbcore/l7/proxyproto"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

type lab struct {
	cl, lb, srv *testkit.NS
	log         *test.Hook
	dir         string
	certPool    *x509.CertPool
}

func newLab(t *testing.T) *lab {
	t.Helper()
	s := testkit.Suffix()
	l := &lab{cl: testkit.NewNS(t, "client"), lb: testkit.NewNS(t, "lb"), srv: testkit.NewNS(t, "members"), dir: t.TempDir()}
	testkit.Veth(t, l.cl, "c"+s, "203.0.113.10/24", l.lb, "x"+s, "203.0.113.2/24")
	testkit.Veth(t, l.lb, "i"+s, "198.51.100.2/24", l.srv, "m"+s, "198.51.100.11/24")
	l.srv.AddAddr(t, "m"+s, "198.51.100.12/24")
	l.lb.WaitOperUp(t, "x"+s)
	l.lb.WaitOperUp(t, "i"+s)
	l.certPool = x509.NewCertPool()
	for _, n := range []string{"a.example", "b.example"} {
		l.certPool.AddCert(writeCert(t, l.dir, n))
	}
	// members: echo who they are and what the proxy sent
	for _, a := range []string{"198.51.100.11:8080", "198.51.100.12:8080"} {
		l.member(t, a, func(w http.ResponseWriter, r *http.Request) {
			if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
				time.Sleep(d)
			}
			fmt.Fprintf(w, "member=%s xff=%s proto=%s host=%s", a, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Host)
		})
	}
	return l
}

func (l *lab) member(t *testing.T, addr string, h http.HandlerFunc) {
	t.Helper()
	var ln net.Listener
	if err := l.srv.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func writeCert(t *testing.T, dir, name string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	c, _ := x509.ParseCertificate(der)
	return c
}

const labCfg = `
version: 1
network:
  failover: {members: [eth0, eth1], addresses: [192.0.2.1/25]}
  internal: {members: [eth2], addresses: [198.51.100.2/24]}
  external: {members: [eth3], addresses: [203.0.113.2/24]}
virtual_servers:
  - name: web
    vip: 203.0.113.100
    port: 80
    mode: http
    pool: web
    scheduler: rr
    http:
      cookie: {secret: "0123456789abcdef"}
      timeouts: {header: 500ms, read: 5s, idle: 1s, backend: 3s}
      max_header_bytes: 2048
      max_body_bytes: 1000
      hosts: [shop.example, "*.example"]
  - name: tls
    vip: 203.0.113.100
    port: 443
    mode: https
    pool: web
    http:
      cookie: {secret: "0123456789abcdef"}
      certificates:
        - {cert: DIR/a.example.pem, key: DIR/a.example.key}
        - {cert: DIR/b.example.pem, key: DIR/b.example.key}
pools:
  web:
    members:
      - {address: 198.51.100.11, port: 8080}
      - {address: 198.51.100.12, port: 8080}
`

func (l *lab) config(t *testing.T, doc string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(strings.ReplaceAll(doc, "DIR", l.dir)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// proxy starts a proxy in the lb namespace with doc applied.
func (l *lab) proxy(t *testing.T, doc string) *Proxy {
	t.Helper()
	logger, hook := test.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	l.log = hook
	p := New(logger.WithField("daemon", "l7d"))
	p.Listen = func(ctx context.Context, a netip.AddrPort) (ln net.Listener, err error) {
		err = l.lb.Do(func() error { ln, err = Listen(ctx, a); return err })
		return
	}
	p.Dial = func(ctx context.Context, network, addr string) (c net.Conn, err error) {
		err = l.lb.Do(func() error {
			c, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return
	}
	if err := p.Apply(context.Background(), l.config(t, doc)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	return p
}

func (l *lab) dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	err = l.cl.Do(func() error {
		c, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
		return err
	})
	return
}

// client is an HTTP client in the client namespace (jar: keep cookies).
func (l *lab) client(jar bool, sni string) *http.Client {
	tr := &http.Transport{DialContext: l.dial, ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: l.certPool, ServerName: sni}}
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	if jar {
		c.Jar, _ = cookiejar.New(nil)
	}
	return c
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	req.Host = "shop.example"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func memberOf(body string) string {
	f, _, _ := strings.Cut(strings.TrimPrefix(body, "member="), " ")
	return f
}

func TestL7InNamespaces(t *testing.T) {
	testkit.Require(t, testkit.Root)
	l := newLab(t)
	// The VIP is not on the node yet (a VRRP backup): IP_FREEBIND lets the
	// proxy listen anyway; it serves once the address arrives.
	p := l.proxy(t, labCfg)
	if got := p.Addrs(); len(got) != 2 {
		t.Fatalf("listening on %v, want the VIP's ports 80 and 443", got)
	}
	l.lb.AddAddr(t, l.lbExt(t), "203.0.113.100/32")
	cur := labCfg
	const base = "http://203.0.113.100"

	t.Run("round robin without cookie", func(t *testing.T) {
		c := l.client(false, "")
		seen := map[string]int{}
		for range 10 {
			resp, body := get(t, c, base+"/")
			if resp.StatusCode != 200 || resp.Header.Get("Set-Cookie") == "" {
				t.Fatalf("status %d, Set-Cookie %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
			}
			seen[memberOf(body)]++
		}
		if seen["198.51.100.11:8080"] != 5 || seen["198.51.100.12:8080"] != 5 {
			t.Fatalf("rr over two members: %v", seen)
		}
	})

	t.Run("cookie pins 50 requests", func(t *testing.T) {
		c := l.client(true, "")
		_, first := get(t, c, base+"/")
		for i := range 50 {
			resp, body := get(t, c, base+"/")
			if memberOf(body) != memberOf(first) {
				t.Fatalf("request %d went to %s, pinned to %s", i, memberOf(body), memberOf(first))
			}
			if resp.Header.Get("Set-Cookie") != "" {
				t.Fatalf("request %d: a pinned client got a new cookie", i)
			}
		}
	})

	t.Run("forwarded headers and access log", func(t *testing.T) {
		l.log.Reset()
		_, body := get(t, l.client(false, ""), base+"/x?y=1")
		if !strings.Contains(body, "xff=203.0.113.10 proto=http host=shop.example") {
			t.Fatalf("member saw %q", body)
		}
		var line string
		for _, e := range l.log.AllEntries() {
			if strings.Contains(e.Message, `"GET /x?y=1 HTTP/1.1" 200`) {
				line = e.Message
				if e.Data["vs"] != "web" || !strings.HasSuffix(e.Data["member"].(string), ":8080") {
					t.Errorf("access log fields: %v", e.Data)
				}
			}
		}
		if !strings.HasPrefix(line, "203.0.113.10 - - [") {
			t.Fatalf("no common-log-format access line; got %v", l.log.AllEntries())
		}
	})

	t.Run("re-pin on member down", func(t *testing.T) {
		c := l.client(true, "")
		_, first := get(t, c, base+"/")
		pinned := memberOf(first)
		ref, _ := ParseMember("web", pinned)
		p.SetHealth(map[config.MemberRef]bool{ref: false})
		defer p.SetHealth(map[config.MemberRef]bool{ref: true})
		resp, body := get(t, c, base+"/")
		if memberOf(body) == pinned || resp.Header.Get("Set-Cookie") == "" {
			t.Fatalf("down member still used (%s) or no new cookie (%q)", memberOf(body), resp.Header.Get("Set-Cookie"))
		}
		for range 5 {
			if _, b := get(t, c, base+"/"); memberOf(b) != memberOf(body) {
				t.Fatalf("after re-pin went to %s, want %s", memberOf(b), memberOf(body))
			}
		}
	})

	t.Run("tampered cookie", func(t *testing.T) {
		resp0, _ := get(t, l.client(false, ""), base+"/")
		cks := resp0.Cookies()
		if len(cks) != 1 {
			t.Fatalf("cookies: %v", resp0.Header)
		}
		ck := cks[0]
		v := []byte(ck.Value)
		v[3] ^= 1
		raw := l.client(false, "")
		before := p.Status()[1].BadCookies
		for range 4 {
			req, _ := http.NewRequest("GET", base+"/", nil)
			req.Host = "shop.example"
			req.AddCookie(&http.Cookie{Name: ck.Name, Value: string(v)})
			resp, err := raw.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.Header.Get("Set-Cookie") == "" {
				t.Fatal("a tampered cookie was honoured (no new cookie issued)")
			}
		}
		if after := p.Status()[1].BadCookies; after != before+4 {
			t.Fatalf("bad_cookies %d → %d, want +4", before, after)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		c := l.client(false, "")
		req, _ := http.NewRequest("GET", base+"/", nil)
		req.Host = "evil.test"
		resp, err := c.Do(req)
		if err != nil || resp.StatusCode != http.StatusMisdirectedRequest {
			t.Fatalf("unknown host: %v %v", resp.Status, err)
		}
		resp.Body.Close()
		req, _ = http.NewRequest("POST", base+"/", strings.NewReader(strings.Repeat("x", 2000)))
		req.Host = "shop.example"
		if resp, err = c.Do(req); err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("body over max_body_bytes: %v %v", resp, err)
		}
		resp.Body.Close()
		for _, tc := range []struct{ raw, want string }{
			{"GARBAGE\r\n\r\n", "HTTP/1.1 400"},
			{"GET / HTTP/1.1\r\nHost: shop.example\r\nX-Big: " + strings.Repeat("a", 8000) + "\r\n\r\n", "HTTP/1.1 431"},
			{"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 400"}, // no Host
		} {
			if got := l.raw(t, "203.0.113.100:80", tc.raw); !strings.HasPrefix(got, tc.want) {
				t.Errorf("%.30q: got %.60q, want %s", tc.raw, got, tc.want)
			}
		}
		// no usable member: 503
		a, _ := ParseMember("web", "198.51.100.11:8080")
		b, _ := ParseMember("web", "198.51.100.12:8080")
		p.SetHealth(map[config.MemberRef]bool{a: false, b: false})
		resp, _ = get(t, c, base+"/")
		p.SetHealth(map[config.MemberRef]bool{a: true, b: true})
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("every member down: %s, want 503", resp.Status)
		}
		// chunked body over the limit: 413 from the member path
		conn, err := l.dial(context.Background(), "tcp", "203.0.113.100:80")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n%s\r\n0\r\n\r\n", strings.Repeat("y", 2000))
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		if line, _ := bufio.NewReader(conn).ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 413") {
			t.Errorf("chunked body over the limit: %q", line)
		}
	})

	t.Run("slowloris and idle timeouts", func(t *testing.T) {
		conn, err := l.dial(context.Background(), "tcp", "203.0.113.100:80")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: shop.example\r\n") // never finishes
		conn.SetReadDeadline(time.Now().Add(4 * time.Second))
		io.Copy(io.Discard, conn)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("a slowloris client kept its connection %s (header timeout 500ms)", d)
		}
		// idle keep-alive connection closed after idle (1s)
		conn2, err := l.dial(context.Background(), "tcp", "203.0.113.100:80")
		if err != nil {
			t.Fatal(err)
		}
		defer conn2.Close()
		io.WriteString(conn2, "GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n")
		br := bufio.NewReader(conn2)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		start = time.Now()
		conn2.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("idle connection: %v, want EOF", err)
		}
		if d := time.Since(start); d < 800*time.Millisecond || d > 3*time.Second {
			t.Fatalf("idle connection closed after %s, want ~1s", d)
		}
	})

	t.Run("TLS with two SNI names and HTTP/2", func(t *testing.T) {
		for _, name := range []string{"a.example", "b.example"} {
			c := l.client(true, name)
			resp, body := get(t, c, "https://203.0.113.100/")
			if resp.TLS == nil || resp.TLS.PeerCertificates[0].Subject.CommonName != name {
				t.Fatalf("SNI %s: got certificate %v", name, resp.TLS.PeerCertificates[0].Subject)
			}
			if resp.Proto != "HTTP/2.0" {
				t.Fatalf("SNI %s: %s, want HTTP/2.0", name, resp.Proto)
			}
			if !strings.Contains(body, "proto=https") || !strings.Contains(resp.Header.Get("Set-Cookie"), "Secure") {
				t.Fatalf("https: body %q cookie %q", body, resp.Header.Get("Set-Cookie"))
			}
			for range 10 {
				if _, b := get(t, c, "https://203.0.113.100/"); memberOf(b) != memberOf(body) {
					t.Fatal("HTTP/2 client not pinned")
				}
			}
		}
		old := l.client(false, "a.example")
		old.Transport.(*http.Transport).TLSClientConfig.MaxVersion = tls.VersionTLS11
		if _, err := old.Get("https://203.0.113.100/"); err == nil {
			t.Fatal("TLS 1.1 accepted")
		}
	})

	t.Run("graceful apply", func(t *testing.T) {
		c := l.client(false, "")
		done := make(chan string, 1)
		go func() {
			req, _ := http.NewRequest("GET", base+"/?sleep=1500ms", nil)
			req.Host = "shop.example"
			resp, err := c.Do(req)
			if err != nil {
				done <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- fmt.Sprint(resp.StatusCode, " ", string(b))
		}()
		time.Sleep(300 * time.Millisecond)
		// new cookie name and a changed idle timeout (a new server next to
		// the old one)
		next := strings.Replace(labCfg, `cookie: {secret: "0123456789abcdef"}`+"\n      timeouts: {header: 500ms, read: 5s, idle: 1s", `cookie: {secret: "0123456789abcdef", name: NEWCOOKIE}`+"\n      timeouts: {header: 500ms, read: 5s, idle: 2s", 1)
		if next == labCfg {
			t.Fatal("replacement not found")
		}
		if err := p.Apply(context.Background(), l.config(t, next)); err != nil {
			t.Fatal(err)
		}
		cur = next
		resp, _ := get(t, l.client(false, ""), base+"/")
		if !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "NEWCOOKIE=") {
			t.Fatalf("new requests do not use the new config: %q", resp.Header.Get("Set-Cookie"))
		}
		if got := <-done; !strings.HasPrefix(got, "200 member=") {
			t.Fatalf("in-flight request across the apply: %s", got)
		}
		// a rejected apply (missing certificate) changes nothing
		bad := strings.Replace(next, "DIR/b.example.key", "DIR/missing.key", 1)
		err := p.Apply(context.Background(), l.config(t, bad))
		if err == nil || !strings.Contains(err.Error(), "virtual_servers[1].http.certificates[1].key (line ") {
			t.Fatalf("missing key file: %v", err)
		}
		if resp, _ := get(t, l.client(false, ""), base+"/"); !strings.HasPrefix(resp.Header.Get("Set-Cookie"), "NEWCOOKIE=") {
			t.Fatal("a rejected apply changed the running config")
		}
	})

	t.Run("other node honours the cookie", func(t *testing.T) {
		c := l.client(true, "")
		_, first := get(t, c, base+"/")
		// the master goes away; the backup (same config, same secret)
		// serves the VIP
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		p.Shutdown(ctx)
		cancel()
		l.proxy(t, cur)
		for range 10 {
			resp, b := get(t, c, base+"/")
			if memberOf(b) != memberOf(first) || resp.Header.Get("Set-Cookie") != "" {
				t.Fatalf("the other node sent the client to %s (pinned to %s)", memberOf(b), memberOf(first))
			}
		}
	})
}

func (l *lab) lbExt(t *testing.T) string {
	links, err := l.lb.Netlink().LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range links {
		if strings.HasPrefix(k.Attrs().Name, "x") {
			return k.Attrs().Name
		}
	}
	t.Fatal("no external veth")
	return ""
}

// raw sends raw bytes and returns the first line of the answer ("" when the
// connection closed without one).
func (l *lab) raw(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := l.dial(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, req)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

// PROXY v2: a member that expects the header sees the client's address.
func TestL7ProxyProtocolInNamespaces(t *testing.T) {
	testkit.Require(t, testkit.Root)
	l := newLab(t)
	var ln net.Listener
	if err := l.srv.Do(func() (err error) { ln, err = net.Listen("tcp", "198.51.100.11:9000"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var headers [][]byte
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h := make([]byte, 28)
				if _, err := io.ReadFull(c, h); err != nil {
					return
				}
				mu.Lock()
				headers = append(headers, h)
				mu.Unlock()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			}()
		}
	}()
	doc := strings.Replace(strings.Replace(labCfg, "      hosts: [shop.example, \"*.example\"]\n", "      hosts: [shop.example, \"*.example\"]\n      proxy_protocol: true\n", 1),
		"      - {address: 198.51.100.11, port: 8080}\n      - {address: 198.51.100.12, port: 8080}", "      - {address: 198.51.100.11, port: 9000}", 1)
	l.proxy(t, doc)
	l.lb.AddAddr(t, l.lbExt(t), "203.0.113.100/32")
	for range 2 {
		resp, body := get(t, l.client(false, ""), "http://203.0.113.100/")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(headers) != 2 {
		t.Fatalf("%d PROXY headers, want one per connection (2)", len(headers))
	}
	want, _ := proxyproto.Header(netip.MustParseAddrPort("203.0.113.10:1"), netip.MustParseAddrPort("203.0.113.100:80"))
	h := headers[0]
	if string(h[:12]) != string(want[:12]) || string(h[16:24]) != string(want[16:24]) || h[26] != 0 || h[27] != 80 {
		t.Fatalf("PROXY header %x, want client 203.0.113.10 → 203.0.113.100:80 (%x)", h, want)
	}
}
