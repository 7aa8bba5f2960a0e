// Package redact hides the secrets of a config before it is shown: the API
// token, its SHA-256 and the console password hash become "<redacted>".
// GET /api/v1/config and `lbctl show config` both use it. A redacted config
// sent back to `config apply` fails validation on those fields (the marker
// is no token, hash or bcrypt hash), so a secret is never replaced by the
// marker unnoticed.
package redact

import (
	"bytes"
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Marker replaces every secret value.
const Marker = "<redacted>"

// secret tells the keys whose values are secrets, wherever they appear
// (management.api.token, management.api.token_sha256,
// management.console.password_hash, vrrp.sync_key,
// virtual_servers[].http.cookie.secret).
func secret(key string) bool {
	switch key {
	case "token", "token_sha256", "password_hash", "sync_key", "secret":
		return true
	}
	return false
}

// IsSecret tells whether the values of a config key are secrets (shown
// nowhere, not even in a diff).
func IsSecret(key string) bool { return secret(key) }

// Config returns the config YAML with its secrets replaced by Marker. A
// document that does not parse is not shown at all (it may hold secrets in
// a form this cannot find).
func Config(b []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("the config does not parse, so it is not shown (it may hold secrets): %v", err)
	}
	if doc.Kind == 0 {
		return []byte{}, nil
	}
	walk(&doc)
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("redacting the config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, errors.New("redacting the config: " + err.Error())
	}
	return out.Bytes(), nil
}

func walk(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && secret(k.Value) && v.Kind == yaml.ScalarNode && v.Value != "" {
				*v = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: Marker, LineComment: v.LineComment}
				continue
			}
			walk(v)
		}
		return
	}
	// Aliases are not followed: the anchored node is redacted where it is
	// defined.
	for _, c := range n.Content {
		walk(c)
	}
}
