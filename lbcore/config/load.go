package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"

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
// returns where every field is.
func decode(data []byte, out any) (*positions, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(err, nil)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, errors.New("invalid config: the document is empty")
	}
	pos := fieldPositions(&root)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil && err != io.EOF {
		return pos, yamlError(err, pos)
	}
	return pos, nil
}

var valueErrorRE = regexp.MustCompile(`^line (\d+) column (\d+): (.*)$`)

// yamlError turns yaml.v3's type errors ("line 7: field foo not found in type
// config.BondGroup") and the typed values' decode errors (placed by line and
// column) into one readable error that names field paths where it can.
func yamlError(err error, pos *positions) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("invalid config: %w", err)
	}
	l := &cfgerr.List{}
	for _, msg := range te.Errors {
		m := valueErrorRE.FindStringSubmatch(msg)
		if m == nil || pos == nil {
			l.Add("", "%s", msg)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		path, ok := pos.values[[2]int{line, col}]
		if !ok {
			l.Add("", "line %d: %s", line, m[3])
			continue
		}
		l.Add(path, "%s", m[3])
	}
	l.SetLines(func(p string) int { return lookupLine(pos.lines, p) })
	l.Sort()
	return l
}

// positions maps every field path in the document
// ("network.internal.members[1]") to the line it starts on, and the
// position (line, column) of every value node to its path.
type positions struct {
	lines  map[string]int
	values map[[2]int]string
}

func fieldPositions(root *yaml.Node) *positions {
	pos := &positions{lines: map[string]int{}, values: map[[2]int]string{}}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if path != "" {
			pos.values[[2]int{n.Line, n.Column}] = path
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
				pos.lines[p] = k.Line
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
