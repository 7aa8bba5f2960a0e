package vm

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Console is a VM's serial console: everything the guest prints is kept
// (and copied to a log), and Expect waits for text past a read cursor.
type Console struct {
	w io.Writer

	mu     sync.Mutex
	cond   *sync.Cond
	buf    bytes.Buffer
	cursor int
	closed bool
	seq    int
	auto   *autoLogin
}

// autoLogin is a one-shot login through the appliance's console: the user
// name at the login prompt, the password at the password prompt (when one
// is asked), then the CLI's `shell` command, so callers get the maintenance
// shell as before the console had a login.
type autoLogin struct {
	user, password string
	step           int // 0 wait login, 1 wait password or logged in, 2 wait logged in, 3 wait shell prompt, 4 done
	offset         int // buffer offset scanned up to
}

// Console strings of the appliance's login (services/console).
const (
	LoginPrompt    = "login: "
	PasswordPrompt = "Password: "
	LoggedIn       = "Logged in to the Fulcrum CLI."
)

// AutoLogin makes the console log in once, as soon as the login prompt
// appears, and enter the maintenance shell.
func (c *Console) AutoLogin(user, password string) {
	c.mu.Lock()
	c.auto = &autoLogin{user: user, password: password}
	reply := c.autoStep()
	c.mu.Unlock()
	if reply != "" {
		c.Send(reply)
	}
}

// autoStep advances the auto login over new output; c.mu is held. It
// returns what to type.
func (c *Console) autoStep() string {
	a := c.auto
	if a == nil || a.step == 4 {
		return ""
	}
	var reply string
	for {
		data := c.buf.Bytes()[a.offset:]
		find := func(s string) int {
			if i := bytes.Index(data, []byte(s)); i >= 0 {
				return i + len(s)
			}
			return -1
		}
		switch a.step {
		case 0:
			if i := find(LoginPrompt); i >= 0 {
				a.offset += i
				a.step = 1
				reply += a.user + "\n"
				continue
			}
		case 1, 2:
			li := find(LoggedIn)
			pi := find(PasswordPrompt)
			if a.step == 1 && pi >= 0 && (li < 0 || pi < li) {
				a.offset += pi
				a.step = 2
				reply += a.password + "\n"
				continue
			}
			if li >= 0 {
				a.offset += li
				a.step = 3
				reply += "shell\n"
				continue
			}
		case 3:
			if i := find("$ "); i >= 0 {
				a.offset += i
				a.step = 4
				c.cond.Broadcast()
			}
		}
		return reply
	}
}

func newConsole(r io.Reader, w io.Writer, log io.Writer) *Console {
	c := &Console{w: w}
	c.cond = sync.NewCond(&c.mu)
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			if n > 0 {
				if log != nil {
					log.Write(b[:n])
				}
				c.mu.Lock()
				c.buf.Write(b[:n])
				c.cond.Broadcast()
				reply := c.autoStep()
				c.mu.Unlock()
				if reply != "" {
					c.Send(reply)
				}
			}
			if err != nil {
				c.mu.Lock()
				c.closed = true
				c.cond.Broadcast()
				c.mu.Unlock()
				return
			}
		}
	}()
	return c
}

// Output is everything the console has printed so far.
func (c *Console) Output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// Expect waits until re matches console output after the cursor, moves the
// cursor past the match and returns the submatches.
func (c *Console) Expect(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		data := c.buf.Bytes()[c.cursor:]
		if loc := re.FindSubmatchIndex(data); loc != nil {
			var out []string
			for i := 0; i < len(loc); i += 2 {
				if loc[i] < 0 {
					out = append(out, "")
					continue
				}
				out = append(out, string(data[loc[i]:loc[i+1]]))
			}
			c.cursor += loc[1]
			return out, nil
		}
		if c.closed {
			return nil, fmt.Errorf("console closed while waiting for %q; last output:\n%s", re, tail(string(data), 1500))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timed out after %v waiting for %q; last output:\n%s", timeout, re, tail(string(data), 1500))
		}
		c.cond.Wait()
	}
}

// ExpectString waits for a literal string.
func (c *Console) ExpectString(s string, timeout time.Duration) error {
	_, err := c.Expect(regexp.MustCompile(regexp.QuoteMeta(s)), timeout)
	return err
}

// Send writes raw input to the console.
func (c *Console) Send(s string) error {
	_, err := io.WriteString(c.w, s)
	return err
}

// Run types a shell command on the console and returns its output and exit
// status.
//
// The console is shared: daemons' log lines (init's "lbd| ..." lines) and
// kernel messages land in the middle of a command's output, even inside
// one of its lines when the command writes a line in pieces. So the
// command's output goes to a file in the guest first; the shell then
// prints it back one line per write, each tagged "@@<n>|", and only tagged
// lines between the begin and end markers are the output. Tags and
// markers are typed split ('@@B”n', "@@""n|") so the echo of the typed
// line can never match them.
func (c *Console) Run(cmd string, timeout time.Duration) (string, int, error) {
	c.mu.Lock()
	c.seq++
	n := c.seq
	c.mu.Unlock()
	if err := c.waitAutoLogin(timeout); err != nil {
		return "", -1, fmt.Errorf("running %q: %w", cmd, err)
	}
	line := RunLine(n, cmd)
	if err := c.Send(line); err != nil {
		return "", -1, fmt.Errorf("console: %w", err)
	}
	re := regexp.MustCompile(`(?s)` + regexp.QuoteMeta(fmt.Sprintf("@@B%d@@", n)) + `(.*?)` + regexp.QuoteMeta(fmt.Sprintf("@@E%d@@", n)) + `(\d+)@@`)
	m, err := c.Expect(re, timeout)
	if err != nil {
		return "", -1, fmt.Errorf("running %q: %w", cmd, err)
	}
	status, _ := strconv.Atoi(m[2])
	return TaggedOutput(n, m[1]), status, nil
}

// RunLine is the shell line Run types for command number n. It works in
// the guest's shell (u-root's gosh, which has no rm: the one file is
// overwritten by the next command) and in POSIX sh.
func RunLine(n int, cmd string) string {
	const f = "/tmp/.console-run"
	return fmt.Sprintf("echo '@@B''%d@@'; { %s; } >%s 2>&1; s=$?; "+
		"while IFS= read -r l || [ -n \"$l\" ]; do echo \"@@\"\"%d|$l\"; done <%s; "+
		"echo \"@@E\"\"%d@@$s@@\"\n", n, cmd, f, n, f, n)
}

// TaggedOutput picks the lines tagged "@@<n>|" out of framed console text
// (interleaved lines and carriage returns dropped) and returns them, each
// ending in a newline.
func TaggedOutput(n int, framed string) string {
	tag := fmt.Sprintf("@@%d|", n)
	var b strings.Builder
	for _, line := range strings.Split(framed, "\n") {
		i := strings.Index(line, tag)
		if i < 0 {
			continue
		}
		b.WriteString(strings.TrimRight(line[i+len(tag):], "\r"))
		b.WriteByte('\n')
	}
	return b.String()
}

// waitAutoLogin waits until an AutoLogin has reached the shell, so a
// command is never typed into the login prompt or the CLI.
func (c *Console) waitAutoLogin(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.auto != nil && c.auto.step < 4 {
		if c.closed {
			return fmt.Errorf("console closed before the login reached the shell")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for the console login to reach the shell (step %d); last output:\n%s", timeout, c.auto.step, tail(c.buf.String(), 1500))
		}
		c.cond.Wait()
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// AttachSocket connects a terminal to a console unix socket: input lines go
// to the guest, guest output to stdout, until stdin ends.
func AttachSocket(path string, stdin io.Reader, stdout io.Writer) error {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return fmt.Errorf("console %s: %w", path, err)
	}
	defer conn.Close()
	go io.Copy(stdout, conn)
	_, err = io.Copy(conn, stdin)
	return err
}
