// Package cfgerr carries configuration validation errors that name the field
// path they are about (and, once the YAML source is known, its line).
//
// Every component that owns a piece of the appliance config validates its own
// piece and reports problems relative to its own root ("priority", not
// "vrrp.instances[0].priority"); the config loader prefixes the path and
// attaches the line number from the YAML document.
package cfgerr

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// FieldError is one problem with one field.
type FieldError struct {
	Path string // dotted field path, e.g. "network.internal.members[2]"
	Line int    // 1-based line in the YAML source, 0 if unknown
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s (line %d): %s", e.Path, e.Line, e.Msg)
	}
	if e.Path == "" {
		return e.Msg
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

// List collects field errors. The zero value is ready to use.
type List struct {
	errs []*FieldError
}

// Add records a problem at path.
func (l *List) Add(path, format string, args ...any) {
	l.errs = append(l.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// AddAt records a problem at path on a known line of the source.
func (l *List) AddAt(path string, line int, format string, args ...any) {
	l.errs = append(l.errs, &FieldError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// Merge adds every error of err (a *List, a *FieldError or any other error)
// under prefix. A plain error becomes a FieldError at prefix.
func (l *List) Merge(prefix string, err error) {
	if err == nil {
		return
	}
	var list *List
	if errors.As(err, &list) {
		for _, e := range list.errs {
			l.errs = append(l.errs, &FieldError{Path: Join(prefix, e.Path), Line: e.Line, Msg: e.Msg})
		}
		return
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		l.errs = append(l.errs, &FieldError{Path: Join(prefix, fe.Path), Line: fe.Line, Msg: fe.Msg})
		return
	}
	l.errs = append(l.errs, &FieldError{Path: prefix, Msg: err.Error()})
}

// MergeOutside adds the errors of err (a *List) except those at or under a
// path that skip already has an error for.
func (l *List) MergeOutside(err error, skip *List) {
	var list *List
	if !errors.As(err, &list) {
		l.Merge("", err)
		return
	}
	for _, e := range list.errs {
		if !skip.covers(e.Path) {
			l.errs = append(l.errs, e)
		}
	}
}

func (l *List) covers(path string) bool {
	for _, e := range l.errs {
		if e.Path != "" && (path == e.Path || strings.HasPrefix(path, e.Path+".") || strings.HasPrefix(path, e.Path+"[")) {
			return true
		}
	}
	return false
}

// Pathless reports whether some error names no field (a structural problem
// such as an unknown field or a YAML syntax error).
func (l *List) Pathless() bool {
	for _, e := range l.errs {
		if e.Path == "" {
			return true
		}
	}
	return false
}

// Errors returns the recorded errors.
func (l *List) Errors() []*FieldError { return l.errs }

// Len is the number of recorded errors.
func (l *List) Len() int { return len(l.errs) }

// Err returns nil when nothing was recorded, otherwise the list itself.
func (l *List) Err() error {
	if l == nil || len(l.errs) == 0 {
		return nil
	}
	return l
}

// SetLines fills in line numbers with lookup (field path → line).
func (l *List) SetLines(lookup func(path string) int) {
	for _, e := range l.errs {
		if e.Line == 0 {
			e.Line = lookup(e.Path)
		}
	}
}

// Sort orders errors by line, then path, so output is stable.
func (l *List) Sort() {
	sort.SliceStable(l.errs, func(i, j int) bool {
		if l.errs[i].Line != l.errs[j].Line {
			return l.errs[i].Line < l.errs[j].Line
		}
		return l.errs[i].Path < l.errs[j].Path
	})
}

func (l *List) Error() string {
	if len(l.errs) == 1 {
		return "invalid config: " + l.errs[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid config: %d problems:", len(l.errs))
	for _, e := range l.errs {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// Join appends a field name or index to a path: Join("a", "b") = "a.b",
// Join("a", "[2]") = "a[2]", Join("", "b") = "b".
func Join(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	case strings.HasPrefix(field, "["):
		return prefix + field
	default:
		return prefix + "." + field
	}
}

// Index formats a list element path: Index("members", 2) = "members[2]".
func Index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
