package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/fulcrum-lb/fulcrum/lbcore/config/cfgerr"
	"go.yaml.in/yaml/v3"
)

// yaml.v3 reports type errors, unknown fields and duplicate keys by line
// only, in Go's words ("line 7: cannot unmarshal !!str `x` into uint32",
// "field foo not found in type config.BondGroup"). The functions below find
// the node each message is about in the document's node tree and say the
// same thing as a field error in the operator's words.

// DocumentPath names the document itself in errors that concern no field
// (a YAML syntax error, a second document).
const DocumentPath = "document"

var (
	valueErrorRE   = regexp.MustCompile(`^line (\d+) column (\d+): (.*)$`)
	typeErrorRE    = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	unknownFieldRE = regexp.MustCompile(`^line (\d+): field (.+) not found in type (.+)$`)
	duplicateKeyRE = regexp.MustCompile(`^line (\d+): mapping key "(.*)" already defined at line (\d+)$`)
	syntaxLineRE   = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// nodeInfo is one node of the document: its field path and where it is.
type nodeInfo struct {
	path      string
	line, col int
	key       bool // a mapping key (path is the field it names)
	kind      yaml.Kind
	tag       string
	value     string
}

// syntaxError turns a YAML syntax error into a field error on the document.
func syntaxError(err error) error {
	l := &cfgerr.List{}
	msg := err.Error()
	if m := syntaxLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		l.AddAt(DocumentPath, line, "not valid YAML: %s", m[2])
		return l
	}
	l.Add(DocumentPath, "not valid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
	return l
}

// yamlError turns yaml.v3's decode errors into field errors with the path
// and line of the node each is about.
func yamlError(err error, pos *positions) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return syntaxError(err)
	}
	l := &cfgerr.List{}
	for _, msg := range te.Errors {
		pos.explain(l, msg)
	}
	l.Sort()
	return l
}

// explain adds one yaml.v3 message to l as a field error.
func (pos *positions) explain(l *cfgerr.List, msg string) {
	if m := valueErrorRE.FindStringSubmatch(msg); m != nil {
		// a typed value's own decode error, placed by line and column
		line, _ := strconv.Atoi(m[1])
		col, _ := strconv.Atoi(m[2])
		if n := pos.find(func(n nodeInfo) bool { return !n.key && n.line == line && n.col == col }); n != nil {
			l.AddAt(n.path, line, "%s", m[3])
		} else {
			l.AddAt(DocumentPath, line, "%s", m[3])
		}
		return
	}
	if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		n := pos.find(func(n nodeInfo) bool { return n.key && n.line == line && lastField(n.path) == m[2] })
		path := DocumentPath
		if n != nil {
			path = n.path
		}
		known := yamlFields(m[3])
		if len(known) == 0 {
			l.AddAt(path, line, "unknown field %q", m[2])
		} else {
			l.AddAt(path, line, "unknown field %q (known here: %s)", m[2], strings.Join(known, ", "))
		}
		return
	}
	if m := duplicateKeyRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		n := pos.find(func(n nodeInfo) bool { return n.key && n.line == line && lastField(n.path) == m[2] })
		path := DocumentPath
		if n != nil {
			path = n.path
		}
		l.AddAt(path, line, "%q is set twice (first on line %s); keep one", m[2], m[3])
		return
	}
	if m := typeErrorRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		tag, val, goType := m[2], m[3], m[4]
		// the innermost node: a flow mapping and its values share a line
		n := pos.findDeepest(func(n nodeInfo) bool {
			return !n.key && n.line == line && n.tag == "!!"+tag && (val == "" || n.value == val ||
				strings.HasSuffix(val, "...") && strings.HasPrefix(n.value, strings.TrimSuffix(val, "...")))
		})
		path, got := DocumentPath, describeGot(tag, val)
		if n != nil {
			path, got = n.path, describeGot(tag, n.value)
		}
		if _, isInt := intBits[strings.TrimPrefix(goType, "*")]; isInt && tag == "int" {
			l.AddAt(path, line, "%s is out of range: want %s", got, describeWant(goType))
			return
		}
		l.AddAt(path, line, "%s is not %s", got, describeWant(goType))
		return
	}
	l.Add(DocumentPath, "%s", msg)
}

// find returns the first node matching ok, or nil.
func (pos *positions) find(ok func(nodeInfo) bool) *nodeInfo {
	if pos == nil {
		return nil
	}
	for i := range pos.nodes {
		if ok(pos.nodes[i]) {
			return &pos.nodes[i]
		}
	}
	return nil
}

// findDeepest returns the matching node with the longest path (the first
// of those), or nil.
func (pos *positions) findDeepest(ok func(nodeInfo) bool) *nodeInfo {
	var best *nodeInfo
	if pos == nil {
		return nil
	}
	for i := range pos.nodes {
		if n := &pos.nodes[i]; ok(*n) && (best == nil || depth(n.path) > depth(best.path)) {
			best = n
		}
	}
	return best
}

func depth(path string) int { return strings.Count(path, ".") + strings.Count(path, "[") }

func lastField(path string) string {
	if i := strings.LastIndex(path, "."); i >= 0 {
		return path[i+1:]
	}
	return path
}

// describeGot says what the document holds: a quoted text, a number, a
// list or a mapping.
func describeGot(tag, val string) string {
	switch tag {
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	case "null":
		return "an empty value"
	case "str":
		return strconv.Quote(val)
	}
	return val
}

// describeWant says in words what a Go type accepts.
func describeWant(goType string) string {
	t := strings.TrimPrefix(goType, "*")
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list here"
	case strings.HasPrefix(t, "map["):
		return "a mapping of names to entries here"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a single value"
	}
	if t == "int" || t == "int64" {
		return "a whole number of a usable size"
	}
	if bits, ok := intBits[t]; ok {
		if strings.HasPrefix(t, "u") {
			return fmt.Sprintf("a whole number from 0 to %d", uint64(1)<<bits-1)
		}
		return fmt.Sprintf("a whole number from %d to %d", -(int64(1) << (bits - 1)), int64(1)<<(bits-1)-1)
	}
	if strings.HasPrefix(t, "float") {
		return "a number"
	}
	return "a mapping (field: value) here"
}

var intBits = map[string]uint{"int": 64, "int64": 64, "int32": 32, "int16": 16, "int8": 8,
	"uint": 64, "uint64": 64, "uint32": 32, "uint16": 16, "uint8": 8}

// yamlFields lists the YAML field names of the config struct type named
// goType ("config.BondGroup"), inlined fields included, or nil.
func yamlFields(goType string) []string {
	var found reflect.Type
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] || found != nil {
			return
		}
		seen[t] = true
		if t.String() == strings.TrimPrefix(goType, "*") {
			found = t
			return
		}
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).IsExported() {
				walk(t.Field(i).Type)
			}
		}
	}
	walk(reflect.TypeOf(Config{}))
	if found == nil {
		return nil
	}
	var names []string
	var collect func(t reflect.Type)
	collect = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			name, opts, _ := strings.Cut(tag, ",")
			switch {
			case !f.IsExported() || name == "-":
			case strings.Contains(opts, "inline"):
				collect(f.Type)
			case name != "":
				names = append(names, name)
			}
		}
	}
	collect(found)
	slices.Sort(names)
	return names
}
