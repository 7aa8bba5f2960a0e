package health

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
)

// The script check is keepalived's MISC_CHECK: it runs a command (an argv
// list, no shell) for the member and judges its exit status, exactly as
// keepalived's check_misc.c does:
//
//   - exit 0: up; with dynamic_weight the weight is left as it was;
//   - exit 1: down;
//   - exit 2..255: with dynamic_weight up, and the member's weight becomes
//     the status minus 2 (0..253); without it, down;
//   - killed (by the timeout or any signal): down.
//
// On the timeout the command's whole process group (it runs in its own)
// gets SIGKILL, by its process ID, so a script cannot outlive its check
// through its children. Its output (stdout and stderr together) is read
// and thrown away past scriptOutputKept bytes, so a chatty script costs no
// memory; the first line becomes the reason of a failure.

// scriptOutputKept is how much of a script's output is kept for the
// reason.
const scriptOutputKept = 512

// scriptWaitDelay bounds how long a killed script's output pipe is read
// after the kill (a grandchild that left the process group may hold it).
const scriptWaitDelay = time.Second

type scriptChecker struct {
	*base
	argv    []string
	dynamic bool
}

func newScriptChecker(b *base, m config.Monitor) Checker {
	return &scriptChecker{base: b, argv: append([]string(nil), m.Command...), dynamic: m.DynamicWeight}
}

// CheckScript reports whether a script monitor's program can be run: an
// executable regular file. Config validation reads no files; the health
// checker's caller asks this where the program is used.
func CheckScript(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("cannot use %s: %w", path, errors.Unwrap(err))
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if st.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}

// keepFirst keeps the first bytes written to it and counts the rest.
type keepFirst struct {
	buf   []byte
	total int
}

func (k *keepFirst) Write(p []byte) (int, error) {
	if room := scriptOutputKept - len(k.buf); room > 0 {
		k.buf = append(k.buf, p[:min(room, len(p))]...)
	}
	k.total += len(p)
	return len(p), nil
}

func (c *scriptChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	r := c.check(ctx, t)
	r.Latency = time.Since(start)
	return r
}

func (c *scriptChecker) check(ctx context.Context, t Target) Result {
	port := t.Port
	if c.port != 0 {
		port = c.port
	}
	addr, ps := t.Addr.String(), strconv.Itoa(int(port))
	args := make([]string, len(c.argv))
	for i, a := range c.argv {
		args[i] = strings.NewReplacer("{addr}", addr, "{port}", ps).Replace(a)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = []string{
		"PATH=/bin:/sbin:/usr/bin:/usr/sbin:/bbin",
		"FULCRUM_MEMBER_ADDR=" + addr,
		"FULCRUM_MEMBER_PORT=" + ps,
	}
	if c.src.IsValid() {
		cmd.Env = append(cmd.Env, "FULCRUM_SOURCE_ADDR="+c.src.String())
	}
	cmd.Dir = "/"
	out := &keepFirst{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The group's ID is the script's PID (Setpgid).
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = scriptWaitDelay
	err := cmd.Run()
	if cmd.Process != nil {
		// Whatever it left behind in its group goes too.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	firstLine := func() string {
		s, _, _ := strings.Cut(strings.TrimSpace(string(out.buf)), "\n")
		if len(s) > 120 {
			s = s[:120] + "..."
		}
		if s == "" {
			return ""
		}
		return ": " + strings.ToValidUTF8(s, "?")
	}
	if ctx.Err() == context.DeadlineExceeded {
		return Result{Reason: fmt.Sprintf("timeout after %s (script), killed", c.timeout)}
	}
	if ctx.Err() != nil {
		return Result{Reason: "cancelled (script)"}
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return Result{OK: true, Reason: "exit 0"}
	case errors.As(err, &ee):
		ws, _ := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			return Result{Reason: fmt.Sprintf("killed by signal %s%s", ws.Signal(), firstLine())}
		}
		code := ws.ExitStatus()
		if c.dynamic && code >= 2 && code <= 255 {
			return Result{OK: true, Weighted: true, Weight: code - 2, Reason: fmt.Sprintf("exit %d: weight %d", code, code-2)}
		}
		return Result{Reason: fmt.Sprintf("exit %d%s", code, firstLine())}
	case errors.Is(err, exec.ErrWaitDelay):
		return Result{OK: true, Reason: "exit 0 (output left open by a child)"}
	}
	return Result{Reason: fmt.Sprintf("cannot run %s: %v", args[0], err)}
}
