package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
	"go.yaml.in/yaml/v3"
)

// Load reads, decodes, defaults and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML, rejects unknown fields, fills in defaults and validates
// the whole config. Errors name the field path and its line in data.
func Parse(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, errors.New("invalid config: the document is empty")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil && err != io.EOF {
		return nil, yamlError(err)
	}
	c.ApplyDefaults()
	lines := fieldLines(&root)
	if err := c.Validate(); err != nil {
		var list *cfgerr.List
		if errors.As(err, &list) {
			list.SetLines(func(p string) int { return lookupLine(lines, p) })
			list.Sort()
		}
		return nil, err
	}
	c.source = append([]byte(nil), data...)
	return &c, nil
}

// yamlError turns yaml.v3's type errors ("line 7: field foo not found in type
// config.BondGroup") into one readable error.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		l := &cfgerr.List{}
		for _, msg := range te.Errors {
			l.Add("", "%s", msg)
		}
		return l
	}
	return fmt.Errorf("invalid config: %w", err)
}

// fieldLines maps every field path in the document ("network.internal.members[1]")
// to the line it starts on.
func fieldLines(root *yaml.Node) map[string]int {
	lines := map[string]int{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := cfgerr.Join(path, k.Value)
				lines[p] = k.Line
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := cfgerr.Index(path, i)
				lines[p] = c.Line
				walk(c, p)
			}
		}
	}
	walk(root, "")
	return lines
}

var lastSegment = regexp.MustCompile(`(\.[^.\[]+|\[\d+\])$`)

// lookupLine finds the line of path, or of its nearest ancestor present in the
// document (a defaulted field has no line of its own).
func lookupLine(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		loc := lastSegment.FindStringIndex(path)
		if loc == nil {
			// a top-level field name
			if l, ok := lines[path]; ok {
				return l
			}
			return 0
		}
		path = path[:loc[0]]
	}
	return 0
}

// Source returns the YAML the config was parsed from.
func (c *Config) Source() []byte { return c.source }
