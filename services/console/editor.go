package console

import (
	"bufio"
	"errors"
	"io"
	"sort"
	"strings"
)

// ErrInterrupted is returned by ReadLine on Ctrl-C.
var ErrInterrupted = errors.New("interrupted")

// Completer returns the candidates for the word being typed at the end of
// line (the part after the last space) and that word's start offset.
type Completer func(line string) (candidates []string, start int)

// Editor is a minimal line editor for a serial line: printable input,
// backspace, Ctrl-U (kill line), Ctrl-C (cancel), Ctrl-D (EOF on an empty
// line), Tab completion and history with the up/down arrows. Escape
// sequences other than the arrows are ignored. Enter is CR or LF (CR LF
// counts once).
type Editor struct {
	in       *bufio.Reader
	out      io.Writer
	Complete Completer
	history  []string
	lastCR   bool
	secret   bool
}

// NewEditor reads keys from in and echoes to out.
func NewEditor(in io.Reader, out io.Writer) *Editor {
	return &Editor{in: bufio.NewReader(in), out: out}
}

// ReadSecret reads a line without echoing it (a password).
func (e *Editor) ReadSecret(prompt string) (string, error) {
	e.secret = true
	defer func() { e.secret = false }()
	return e.ReadLine(prompt)
}

// ReadLine shows prompt and returns the edited line (without newline).
func (e *Editor) ReadLine(prompt string) (string, error) {
	io.WriteString(e.out, prompt)
	var line []rune
	hist := len(e.history)
	redraw := func() {
		io.WriteString(e.out, "\r\x1b[K"+prompt+string(line))
	}
	for {
		r, _, err := e.in.ReadRune()
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				return string(line), nil
			}
			return "", err
		}
		wasCR := e.lastCR
		e.lastCR = r == '\r'
		switch {
		case r == '\n' && wasCR:
			continue
		case r == '\r' || r == '\n':
			io.WriteString(e.out, "\n")
			s := string(line)
			if !e.secret && strings.TrimSpace(s) != "" && (len(e.history) == 0 || e.history[len(e.history)-1] != s) {
				e.history = append(e.history, s)
			}
			return s, nil
		case r == 3: // Ctrl-C
			io.WriteString(e.out, "^C\n")
			return "", ErrInterrupted
		case r == 4: // Ctrl-D
			if len(line) == 0 {
				io.WriteString(e.out, "\n")
				return "", io.EOF
			}
		case r == 0x7f || r == 8: // backspace
			if len(line) > 0 {
				line = line[:len(line)-1]
				if !e.secret {
					io.WriteString(e.out, "\b \b")
				}
			}
		case r == 0x15: // Ctrl-U
			line = line[:0]
			if !e.secret {
				redraw()
			}
		case r == '\t' && !e.secret:
			line = e.complete(prompt, line)
		case r == 0x1b && !e.secret:
			switch e.escape() {
			case 'A':
				if hist > 0 {
					hist--
					line = []rune(e.history[hist])
					redraw()
				}
			case 'B':
				if hist < len(e.history) {
					hist++
					line = nil
					if hist < len(e.history) {
						line = []rune(e.history[hist])
					}
					redraw()
				}
			}
		case r >= 32:
			line = append(line, r)
			if !e.secret {
				io.WriteString(e.out, string(r))
			}
		}
	}
}

// escape reads the rest of an escape sequence and returns its final byte.
func (e *Editor) escape() rune {
	r, _, err := e.in.ReadRune()
	if err != nil || (r != '[' && r != 'O') {
		return 0
	}
	for i := 0; i < 8; i++ {
		r, _, err = e.in.ReadRune()
		if err != nil {
			return 0
		}
		if r >= 0x40 && r <= 0x7e {
			return r
		}
	}
	return 0
}

func (e *Editor) complete(prompt string, line []rune) []rune {
	if e.Complete == nil {
		return line
	}
	cands, start := e.Complete(string(line))
	if len(cands) == 0 {
		return line
	}
	word := string(line[start:])
	if len(cands) == 1 {
		add := strings.TrimPrefix(cands[0], word) + " "
		io.WriteString(e.out, add)
		return append(line, []rune(add)...)
	}
	if p := commonPrefix(cands); len(p) > len(word) {
		add := p[len(word):]
		io.WriteString(e.out, add)
		return append(line, []rune(add)...)
	}
	sort.Strings(cands)
	io.WriteString(e.out, "\n"+strings.Join(cands, "  ")+"\n"+prompt+string(line))
	return line
}

func commonPrefix(s []string) string {
	p := s[0]
	for _, x := range s[1:] {
		for !strings.HasPrefix(x, p) {
			p = p[:len(p)-1]
		}
	}
	return p
}
