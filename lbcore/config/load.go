package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

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

// Parse decodes YAML, rejects unknown fields and values that do not parse,
// fills in defaults and validates the whole config. Errors name the field
// path and its line in data.
func Parse(data []byte) (*Config, error) {
	c := Config{source: append([]byte(nil), data...)}
	pos, err := decode(data, &c)
	var failed *cfgerr.List // values that did not parse; the rest decoded
	if err != nil && (!errors.As(err, &failed) || pos == nil || failed.Pathless()) {
		return nil, err
	}
	c.lines = pos.lines
	var zeros cfgerr.List
	pos.explicitZeros(&zeros)
	if zeros.Len() > 0 {
		if failed == nil {
			failed = &cfgerr.List{}
		}
		failed.Merge("", &zeros)
	}
	c.ApplyDefaults()
	verr := c.Validate()
	var list cfgerr.List
	if failed != nil {
		list.Merge("", failed)
		// Validation of a value that did not parse would only repeat it.
		list.MergeOutside(verr, failed)
	} else {
		list.Merge("", verr)
	}
	if list.Len() > 0 {
		list.SetLines(c.lineOf)
		list.Sort()
		return nil, &list
	}
	return &c, nil
}

// decode decodes data into out strictly (unknown fields are errors) and
// returns where every field is. A config is one YAML document: a second
// one is an error (its settings would be ignored).
func decode(data []byte, out any) (*positions, error) {
	docs := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := docs.Decode(&root); err != nil {
		if err == io.EOF {
			return nil, emptyDocument()
		}
		return nil, syntaxError(err)
	}
	if root.Kind == 0 || len(root.Content) == 0 || root.Content[0].ShortTag() == "!!null" {
		return nil, emptyDocument()
	}
	pos := fieldPositions(&root)
	var extra cfgerr.List
	var next yaml.Node
	switch err := docs.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		return nil, syntaxError(err)
	default:
		extra.AddAt(DocumentPath, next.Line, "a second YAML document starts here; a config is one document (remove everything from this '---' on)")
	}
	if top := root.Content[0]; top.Kind != yaml.MappingNode {
		extra.AddAt(DocumentPath, top.Line, "the config must be a mapping of sections (version:, network:, ...), not %s", describeGot(strings.TrimPrefix(top.ShortTag(), "!!"), top.Value))
		return nil, &extra
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && err != io.EOF {
		l := yamlError(err, pos)
		var list *cfgerr.List
		if errors.As(l, &list) {
			list.Merge("", extra.Err())
		}
		return pos, l
	}
	return pos, extra.Err()
}

func emptyDocument() error {
	var l cfgerr.List
	l.AddAt(DocumentPath, 1, "the document is empty")
	return &l
}

// positions maps every field path in the document
// ("network.internal.members[1]") to the line it starts on, and lists every
// node with its path.
type positions struct {
	lines map[string]int
	nodes []nodeInfo
}

func fieldPositions(root *yaml.Node) *positions {
	pos := &positions{lines: map[string]int{}}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if path != "" {
			pos.nodes = append(pos.nodes, nodeInfo{path: path, line: n.Line, col: n.Column, kind: n.Kind, tag: n.ShortTag(), value: n.Value})
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := cfgerr.Join(path, k.Value)
				if _, dup := pos.lines[p]; !dup {
					pos.lines[p] = k.Line
				}
				pos.nodes = append(pos.nodes, nodeInfo{path: p, line: k.Line, col: k.Column, key: true, kind: k.Kind, tag: k.ShortTag(), value: k.Value})
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				p := cfgerr.Index(path, i)
				pos.lines[p] = c.Line
				walk(c, p)
			}
		}
	}
	walk(root, "")
	return pos
}

func (c *Config) lineOf(path string) int { return lookupLine(c.lines, path) }

// FieldError reports a problem found after parsing (a file the config names
// that cannot be read, say) in the same form as validation errors:
// "field.path (line N): reason".
func (c *Config) FieldError(path, format string, args ...any) error {
	var l cfgerr.List
	l.Add(path, format, args...)
	l.SetLines(c.lineOf)
	return l.Err()
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
