package health_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/health"
	"github.com/fulcrum-lb/fulcrum/lbcore/health/internal/nslab"
	"github.com/fulcrum-lb/fulcrum/lbcore/testkit"
)

const nginxBin = "/usr/sbin/nginx"

// testPKI is a CA and leaf certificates it signed, as PEM files.
type testPKI struct {
	dir     string
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	serial  int64
	CAFile  string
	Unknown string // a CA that signed nothing we serve
}

func newPKI(t *testing.T, dir string) *testPKI {
	p := &testPKI{dir: dir}
	p.ca, p.caKey, p.CAFile = p.makeCA(t, "ca")
	_, _, p.Unknown = p.makeCA(t, "other-ca")
	return p
}

func (p *testPKI) makeCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(p.serial),
		Subject:               pkix.Name{CommonName: "fulcrum test " + name},
		NotBefore:             time.Now().Add(-72 * time.Hour),
		NotAfter:              time.Now().Add(72 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	path := filepath.Join(p.dir, name+".pem")
	writePEM(t, path, "CERTIFICATE", der)
	return cert, key, path
}

// leaf writes name.pem and name.key for a server certificate.
func (p *testPKI) leaf(t *testing.T, name string, dns []string, ips []string, notBefore, notAfter time.Time) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     dns,
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startNginx runs Debian's nginx in the server namespace with our own config:
// plain HTTP on :8080, a valid certificate on :8443, an expired one on :8444.
func startNginx(t *testing.T, lab *nslab.Lab, pki *testPKI, dir string) {
	testkit.Require(t, testkit.Tool(nginxBin)) // Debian's nginx-light
	now := time.Now()
	validCert, validKey := pki.leaf(t, "valid", []string{"www.example.test"}, []string{"198.51.100.11"}, now.Add(-time.Hour), now.Add(24*time.Hour))
	expCert, expKey := pki.leaf(t, "expired", []string{"www.example.test"}, []string{"198.51.100.11"}, now.Add(-72*time.Hour), now.Add(-24*time.Hour))
	conf := `master_process off;
pid ` + dir + `/nginx.pid;
error_log ` + dir + `/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path ` + dir + `/body;
    proxy_temp_path ` + dir + `/proxy;
    fastcgi_temp_path ` + dir + `/fastcgi;
    uwsgi_temp_path ` + dir + `/uwsgi;
    scgi_temp_path ` + dir + `/scgi;
    default_type text/plain;
    server {
        listen 198.51.100.11:8080;
        location = /health { return 200 "ok\n"; }
        location = /fail { return 500 "broken\n"; }
        location / { return 404 "no\n"; }
    }
    server {
        listen 198.51.100.11:8443 ssl;
        ssl_certificate ` + validCert + `;
        ssl_certificate_key ` + validKey + `;
        location / { return 200 "ok valid\n"; }
    }
    server {
        listen 198.51.100.11:8444 ssl;
        ssl_certificate ` + expCert + `;
        ssl_certificate_key ` + expKey + `;
        location / { return 200 "ok expired\n"; }
    }
}
`
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginxBin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confPath, "-g", "daemon off;")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	lab.Start(t, cmd)
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx output: %s\nerror.log: %s", out.String(), log)
		}
	})
	for _, port := range []string{"8080", "8443", "8444"} {
		lab.WaitTCP(t, "198.51.100.11:"+port, 5*time.Second)
	}
}

// TestNginx checks HTTP, HTTPS and TLS-handshake monitors against a real
// nginx: valid certificates pass, expired or wrong-name ones fail only when
// verify is on.
func TestNginx(t *testing.T) {
	lab := nslab.New(t, nil, "198.51.100.11")
	dir := t.TempDir()
	pki := newPKI(t, dir)
	startNginx(t, lab, pki, dir)
	target := health.Target{Addr: netip.MustParseAddr("198.51.100.11"), Port: 80}

	for _, tc := range []struct {
		name   string
		mon    config.Monitor
		ok     bool
		reason string
	}{
		{"http health", config.Monitor{Type: "http", Port: 8080, Path: "/health", ExpectBody: "^ok"}, true, "HTTP 200, body ok"},
		{"http 500", config.Monitor{Type: "http", Port: 8080, Path: "/fail"}, false, "HTTP 500, expected 200-399"},
		{"http 404", config.Monitor{Type: "http", Port: 8080, Path: "/nope", ExpectStatus: config.StatusSpec{{Lo: 200, Hi: 200}}}, false, "HTTP 404, expected 200"},
		{"http wrong body", config.Monitor{Type: "http", Port: 8080, Path: "/health", ExpectBody: "healthy"}, false, "body does not match"},

		{"https valid verify", config.Monitor{Type: "https", Port: 8443, SNI: "www.example.test", Verify: true, CABundle: pki.CAFile, ExpectBody: "valid"}, true, "HTTP 200, body ok"},
		{"https valid verify by IP", config.Monitor{Type: "https", Port: 8443, Verify: true, CABundle: pki.CAFile}, true, "HTTP 200"},
		{"https host header as sni", config.Monitor{Type: "https", Port: 8443, Host: "www.example.test", Verify: true, CABundle: pki.CAFile}, true, "HTTP 200"},
		{"https expired verify", config.Monitor{Type: "https", Port: 8444, SNI: "www.example.test", Verify: true, CABundle: pki.CAFile}, false, "certificate invalid: x509: certificate has expired"},
		{"https expired no verify", config.Monitor{Type: "https", Port: 8444, SNI: "www.example.test", ExpectBody: "expired"}, true, "HTTP 200, body ok"},
		{"https wrong host verify", config.Monitor{Type: "https", Port: 8443, SNI: "other.example.test", Verify: true, CABundle: pki.CAFile}, false, "certificate name mismatch"},
		{"https wrong host no verify", config.Monitor{Type: "https", Port: 8443, SNI: "other.example.test"}, true, "HTTP 200"},
		{"https unknown CA", config.Monitor{Type: "https", Port: 8443, SNI: "www.example.test", Verify: true, CABundle: pki.Unknown}, false, "certificate signed by unknown authority"},
		{"https on plain port", config.Monitor{Type: "https", Port: 8080}, false, "tls handshake"},

		{"ssl valid verify", config.Monitor{Type: "ssl", Port: 8443, SNI: "www.example.test", Verify: true, CABundle: pki.CAFile}, true, "tls TLS 1."},
		{"ssl expired verify", config.Monitor{Type: "ssl", Port: 8444, SNI: "www.example.test", Verify: true, CABundle: pki.CAFile}, false, "expired"},
		{"ssl expired no verify", config.Monitor{Type: "ssl", Port: 8444}, true, "tls TLS 1."},
		{"ssl wrong host verify", config.Monitor{Type: "ssl", Port: 8443, SNI: "other.example.test", Verify: true, CABundle: pki.CAFile}, false, "certificate name mismatch"},
		{"ssl wrong host no verify", config.Monitor{Type: "ssl", Port: 8443, SNI: "other.example.test"}, true, "tls TLS 1."},
		{"ssl against plain http", config.Monitor{Type: "ssl", Port: 8080}, false, "tls handshake"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.mon
			m.Interval, m.Timeout = config.Duration(2*time.Second), config.Duration(time.Second)
			m.ApplyDefaults()
			c, err := health.NewChecker(m, lab.InChecker)
			if err != nil {
				t.Fatal(err)
			}
			r := c.Check(context.Background(), target)
			if r.OK != tc.ok || !strings.Contains(r.Reason, tc.reason) {
				t.Errorf("got ok=%v %q, want ok=%v %q", r.OK, r.Reason, tc.ok, tc.reason)
			}
		})
	}
}
