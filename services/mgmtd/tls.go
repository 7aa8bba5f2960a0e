package mgmtd

import (
	"crypto/tls"
	"os"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// TLSConfig loads the API's certificate and key named in the config (nil
// without a tls section). The files are checked here, where they are used,
// not in config validation (the image builder validates on another machine);
// a problem is reported as "management.api.tls.cert (line N): reason".
func TLSConfig(cfg *config.Config) (*tls.Config, error) {
	t := cfg.Access.API.TLS
	if t == nil {
		return nil, nil
	}
	for _, f := range []struct{ path, file string }{{"management.api.tls.cert", t.Cert}, {"management.api.tls.key", t.Key}} {
		if _, err := os.Stat(f.file); err != nil {
			return nil, cfg.FieldError(f.path, "%v", err)
		}
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, cfg.FieldError("management.api.tls", "%v", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
