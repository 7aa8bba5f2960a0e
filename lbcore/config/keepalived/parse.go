// Package keepalived reads a keepalived.conf (with its include files,
// @conditional lines and $definitions) and converts what Fulcrum can express
// into Fulcrum config YAML. It emits YAML text rather than config structs,
// so the result goes through the appliance's normal loader like any other
// config. Every directive it cannot translate is reported with its file and
// line; nothing is dropped silently.
package keepalived

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Node is one keepalived statement: a keyword, its arguments and, for a
// block ("virtual_server 10.0.0.1 80 { ... }"), the statements inside.
type Node struct {
	File     string
	Line     int
	Key      string
	Args     []string
	IsBlock  bool
	Children []*Node

	// read: the converter looked at it; noted: it reported about it (and
	// so about everything inside it).
	read, noted bool
}

// Pos is "file:line" for reports.
func (n *Node) Pos() string { return fmt.Sprintf("%s:%d", n.File, n.Line) }

// Issue is something in the input that was not (or not fully) carried over.
type Issue struct {
	File string
	Line int
	Msg  string
}

func (i Issue) String() string {
	if i.Line == 0 {
		return printable(fmt.Sprintf("%s: %s", i.File, i.Msg))
	}
	return printable(fmt.Sprintf("%s:%d: %s", i.File, i.Line, i.Msg))
}

// printable escapes control characters and invalid UTF-8 (input quoted in
// reports and YAML comments must not carry them).
func printable(s string) string {
	ok := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// Options tune parsing.
type Options struct {
	// ConfigID selects @ID conditional lines, like keepalived's
	// --config-id; "" keeps only unconditional and @^ID lines.
	ConfigID string
	// Root is prefixed to file names in reports ("/" for the OS root).
	Root string
}

// Limits that keep hostile input (include loops, definitions that expand
// exponentially, deep nesting) bounded in time and memory.
const (
	MaxBytes        = 8 << 20 // all files read, includes counted each time
	MaxFiles        = 256     // files read, includes counted each time
	MaxIncludeDepth = 16
	MaxDepth        = 32       // nested blocks
	MaxLine         = 64 << 10 // one line after $definitions are expanded
	MaxTokens       = 1 << 20
)

// ErrTooLarge is returned when the input exceeds one of the limits above.
var ErrTooLarge = errors.New("keepalived config exceeds the importer's limits")

type token struct {
	file string
	line int
	text string
	// seq numbers input lines; a statement ends where it changes.
	seq int
}

type lexer struct {
	fsys    fs.FS
	opt     Options
	defs    map[string]string
	stack   []string // include chain, for loop detection
	tokens  []token
	issues  []Issue
	bytes   int
	files   int
	lineSeq int
}

// Parse reads the keepalived config name (a slash path in fsys) with its
// includes and returns its top-level statements and what it could not read.
// An error means the main file could not be read or a limit was exceeded.
func Parse(fsys fs.FS, name string, opt Options) ([]*Node, []Issue, error) {
	lx := &lexer{fsys: fsys, opt: opt, defs: map[string]string{}}
	if err := lx.file(name, "", 0); err != nil {
		return nil, lx.issues, err
	}
	nodes := lx.build()
	return nodes, lx.issues, nil
}

func (lx *lexer) display(name string) string { return lx.opt.Root + name }

func (lx *lexer) issue(file string, line int, format string, args ...any) {
	lx.issues = append(lx.issues, Issue{File: lx.display(file), Line: line, Msg: fmt.Sprintf(format, args...)})
}

// file tokenizes one file; from/fromLine name the include statement that
// pulled it in ("" for the main file).
func (lx *lexer) file(name, from string, fromLine int) error {
	name = path.Clean(name)
	for _, f := range lx.stack {
		if f == name {
			lx.issue(from, fromLine, "include of %s is a loop (%s); not followed", lx.display(name), strings.Join(append(lx.displayStack(), lx.display(name)), " → "))
			return nil
		}
	}
	if len(lx.stack) >= MaxIncludeDepth {
		lx.issue(from, fromLine, "includes nested deeper than %d; %s not read", MaxIncludeDepth, lx.display(name))
		return nil
	}
	lx.files++
	if lx.files > MaxFiles {
		return fmt.Errorf("%w: more than %d files read (includes counted each time)", ErrTooLarge, MaxFiles)
	}
	data, err := fs.ReadFile(lx.fsys, name)
	if err != nil {
		if from == "" {
			return fmt.Errorf("reading %s: %w", lx.display(name), err)
		}
		lx.issue(from, fromLine, "include %s: %v", lx.display(name), err)
		return nil
	}
	lx.bytes += len(data)
	if lx.bytes > MaxBytes {
		return fmt.Errorf("%w: more than %d bytes read (includes counted each time)", ErrTooLarge, MaxBytes)
	}
	lx.stack = append(lx.stack, name)
	defer func() { lx.stack = lx.stack[:len(lx.stack)-1] }()
	for i, raw := range strings.Split(string(data), "\n") {
		if err := lx.line(name, i+1, strings.TrimRight(raw, "\r")); err != nil {
			return err
		}
	}
	return nil
}

func (lx *lexer) displayStack() []string {
	out := make([]string, len(lx.stack))
	for i, s := range lx.stack {
		out[i] = lx.display(s)
	}
	return out
}

var (
	defRE = regexp.MustCompile(`^\$([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$`)
)

func (lx *lexer) line(file string, n int, s string) error {
	s = strings.TrimSpace(s)
	if s == "" || s[0] == '#' || s[0] == '!' {
		return nil
	}
	// @ID / @^ID conditional lines (keepalived --config-id).
	if s[0] == '@' {
		cond, rest, _ := strings.Cut(s, " ")
		if i := strings.IndexAny(cond, "\t"); i >= 0 {
			cond, rest = cond[:i], cond[i:]+" "+rest
		}
		id, negate := strings.CutPrefix(cond[1:], "^")
		if (id == lx.opt.ConfigID) == negate {
			lx.issue(file, n, "conditional line %s does not apply to config id %q; skipped", cond, lx.opt.ConfigID)
			return nil
		}
		s = strings.TrimSpace(rest)
		if s == "" {
			return nil
		}
	}
	// $NAME=value definitions and their use.
	if m := defRE.FindStringSubmatch(s); m != nil {
		v, err := lx.expand(file, n, m[2])
		if err != nil {
			return err
		}
		lx.defs[m[1]] = v
		return nil
	}
	if strings.Contains(s, "$") {
		var err error
		if s, err = lx.expand(file, n, s); err != nil {
			return err
		}
		// expanded text counts against the same budget as file text
		lx.bytes += len(s)
		if lx.bytes > MaxBytes {
			return fmt.Errorf("%w: more than %d bytes after $definitions are expanded", ErrTooLarge, MaxBytes)
		}
	}
	toks := tokenize(s)
	if len(toks) == 0 {
		return nil
	}
	if toks[0] == "include" {
		if len(toks) < 2 {
			lx.issue(file, n, "include without a file name")
		}
		for _, pat := range toks[1:] {
			if err := lx.include(file, n, pat); err != nil {
				return err
			}
		}
		return nil
	}
	lx.lineSeq++
	for _, t := range toks {
		lx.tokens = append(lx.tokens, token{file: file, line: n, text: t, seq: lx.lineSeq})
	}
	if len(lx.tokens) > MaxTokens {
		return fmt.Errorf("%w: more than %d words", ErrTooLarge, MaxTokens)
	}
	return nil
}

// expand replaces definitions as keepalived does: ${NAME} anywhere, and
// $NAME as a whole word (keepalived reads the name up to the next space, so
// "$VIP/24" names "VIP/24"), repeatedly (a definition may use another),
// within MaxLine.
func (lx *lexer) expand(file string, n int, s string) (string, error) {
	for range 16 {
		out, changed, undefined := lx.substitute(s)
		if len(out) > MaxLine {
			return "", fmt.Errorf("%w: %s:%d expands to more than %d bytes", ErrTooLarge, lx.display(file), n, MaxLine)
		}
		s = out
		if !changed {
			for _, u := range undefined {
				if strings.HasPrefix(u, "${") {
					lx.issue(file, n, "%s is not defined; kept as written", u)
				} else {
					lx.issue(file, n, "%s is not defined; kept as written (keepalived reads a name up to the next space: write ${NAME} when text follows it)", u)
				}
			}
			break
		}
	}
	return s, nil
}

// substitute makes one pass of definition replacements over s.
func (lx *lexer) substitute(s string) (out string, changed bool, undefined []string) {
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		var name, ref string
		if s[i+1] == '{' {
			j := strings.IndexByte(s[i:], '}')
			if j < 0 {
				b.WriteByte(s[i])
				i++
				continue
			}
			ref, name = s[i:i+j+1], s[i+2:i+j]
		} else {
			j := strings.IndexAny(s[i:], " \t")
			if j < 0 {
				j = len(s) - i
			}
			ref, name = s[i:i+j], s[i+1:i+j]
		}
		if v, ok := lx.defs[name]; ok {
			b.WriteString(v)
			changed = true
		} else {
			b.WriteString(ref)
			if name != "" {
				undefined = append(undefined, ref)
			}
		}
		i += len(ref)
	}
	return b.String(), changed, undefined
}

func (lx *lexer) include(file string, n int, pat string) error {
	if !strings.HasPrefix(pat, "/") {
		pat = path.Join(path.Dir(file), pat)
	}
	pat = strings.TrimPrefix(path.Clean(pat), "/")
	matches, err := fs.Glob(lx.fsys, pat)
	if err != nil {
		lx.issue(file, n, "include %s: %v", lx.display(pat), err)
		return nil
	}
	if len(matches) == 0 {
		lx.issue(file, n, "include %s matches no file", lx.display(pat))
		return nil
	}
	for _, m := range matches {
		if err := lx.file(m, file, n); err != nil {
			return err
		}
	}
	return nil
}

// tokenize splits a line into words: whitespace separates, "quoted strings"
// are one word, braces are words of their own, # or ! starting a word begins
// a comment.
func tokenize(s string) []string {
	var out []string
	var cur strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			out = append(out, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				cur.WriteString(s[i+1:])
				inWord = true
				i = len(s)
				continue
			}
			cur.WriteString(s[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == ' ' || c == '\t':
			flush()
		case c == '{' || c == '}':
			flush()
			out = append(out, string(c))
		case (c == '#' || c == '!') && !inWord:
			flush()
			return out
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return out
}

// build turns the token stream into the statement tree.
func (lx *lexer) build() []*Node {
	root := &Node{IsBlock: true}
	stack := []*Node{root}
	var cur *Node
	seq := -1
	for _, t := range lx.tokens {
		if t.seq != seq {
			cur, seq = nil, t.seq
		}
		top := stack[len(stack)-1]
		switch t.text {
		case "{":
			if cur == nil && len(top.Children) > 0 && !top.Children[len(top.Children)-1].IsBlock {
				cur = top.Children[len(top.Children)-1] // brace on the next line
			}
			if cur == nil {
				lx.issue(t.file, t.line, "'{' without a keyword before it; ignored")
				continue
			}
			if len(stack) > MaxDepth {
				lx.issue(t.file, t.line, "blocks nested deeper than %d; the rest of this block is ignored", MaxDepth)
				cur.IsBlock = true
				stack = append(stack, &Node{IsBlock: true}) // a sink
				cur = nil
				continue
			}
			cur.IsBlock = true
			stack = append(stack, cur)
			cur = nil
		case "}":
			if len(stack) == 1 {
				lx.issue(t.file, t.line, "'}' without a block to close; ignored")
				continue
			}
			stack = stack[:len(stack)-1]
			cur = nil
		default:
			if cur == nil {
				cur = &Node{File: lx.display(t.file), Line: t.line, Key: t.text}
				top.Children = append(top.Children, cur)
			} else {
				cur.Args = append(cur.Args, t.text)
			}
		}
	}
	for _, n := range stack[1:] {
		if n.Key != "" {
			lx.issues = append(lx.issues, Issue{File: n.File, Line: n.Line, Msg: fmt.Sprintf("block %s is not closed before the end of the input", n.Key)})
		}
	}
	return root.Children
}
