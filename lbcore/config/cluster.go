package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// ClusterSections are the top-level sections both nodes of an HA pair run
// the same: what is balanced and how. Everything else (hostname, network,
// vrrp with its priority and peers, local address pools, management,
// kernel) belongs to one node and is never sent to or taken from the peer.
var ClusterSections = []string{"virtual_servers", "pools", "monitors", "snat", "ipvs_timeouts"}

// ClusterPart returns the cluster sections of the config document src in
// a canonical form (comments, anchors and formatting gone, keys sorted):
// the same sections give the same bytes on every node, whatever the files
// look like.
func ClusterPart(src []byte) ([]byte, error) {
	top, _, err := topMapping(src)
	if err != nil {
		return nil, err
	}
	part := map[string]any{}
	for _, k := range ClusterSections {
		n := lookup(top, k)
		if n == nil {
			continue
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("%s (line %d): %w", k, n.Line, err)
		}
		part[k] = v
	}
	out, err := yaml.Marshal(part)
	if err != nil {
		return nil, fmt.Errorf("encoding the cluster sections: %w", err)
	}
	return out, nil
}

// ClusterHash is the SHA-256 (hex) of ClusterPart(src): what two nodes
// compare to know they run the same services.
func ClusterHash(src []byte) (string, error) {
	part, err := ClusterPart(src)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(part)
	return hex.EncodeToString(sum[:]), nil
}

// MergeCluster returns own (this node's config document) with its cluster
// sections replaced by those of part (a ClusterPart): a section part does
// not have is removed from own. The node's own sections, their comments
// included, stay as they are.
func MergeCluster(own, part []byte) ([]byte, error) {
	top, doc, err := topMapping(own)
	if err != nil {
		return nil, fmt.Errorf("this node's config: %w", err)
	}
	ptop, _, err := topMapping(part)
	if err != nil {
		return nil, fmt.Errorf("the offered cluster sections: %w", err)
	}
	for i := 0; i+1 < len(ptop.Content); i += 2 {
		if !isClusterSection(ptop.Content[i].Value) {
			return nil, fmt.Errorf("the offered cluster sections hold %q, which is not one (%v)", ptop.Content[i].Value, ClusterSections)
		}
	}
	for _, k := range ClusterSections {
		remove(top, k)
		if n := lookup(ptop, k); n != nil {
			top.Content = append(top.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, n)
		}
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encoding the merged config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding the merged config: %w", err)
	}
	return out.Bytes(), nil
}

func isClusterSection(k string) bool {
	for _, s := range ClusterSections {
		if s == k {
			return true
		}
	}
	return false
}

// topMapping parses src and returns its top-level mapping (an empty one
// for an empty document) and the document node.
func topMapping(src []byte) (*yaml.Node, *yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, nil, fmt.Errorf("not YAML: %w", err)
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, nil, errors.New("the document is not a mapping of sections")
	}
	return doc.Content[0], &doc, nil
}

func lookup(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func remove(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}
