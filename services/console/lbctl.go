package console

// The three ways lbctl runs (services/cmd/lbctl only parses flags and picks
// one): print a password hash, run one command, or serve the serial console.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fulcrum-lb/fulcrum/services/localapi"
)

// ErrUsage is a command line lbctl cannot run.
var ErrUsage = errors.New("usage: lbctl COMMAND... (try lbctl help), or lbctl -console")

// HashFrom reads one password line from r and returns its bcrypt hash
// (lbctl -hash-password).
func HashFrom(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("reading password: %w", err)
	}
	return HashPassword(strings.TrimRight(line, "\r\n"))
}

// RunCommand runs one CLI command (lbctl show vs) against the daemons'
// sockets in socketDir, reading any further input it asks for (a pasted
// config) from in. Logout is not an error here.
func RunCommand(ctx context.Context, socketDir string, words []string, in io.Reader, out io.Writer) error {
	if len(words) == 0 {
		return ErrUsage
	}
	cli := &CLI{API: localapi.NewAppliance(socketDir), Out: out}
	stdin := bufio.NewReader(in)
	cli.ReadLine = func(string) (string, error) {
		l, err := stdin.ReadString('\n')
		if err != nil && l == "" {
			return "", err
		}
		return strings.TrimRight(l, "\r\n"), nil
	}
	cli.Init()
	if err := cli.Run(ctx, strings.Join(words, " ")); err != nil && !errors.Is(err, ErrLogout) {
		return err
	}
	return nil
}

// ConsoleOptions configure the serial console session.
type ConsoleOptions struct {
	ConfigPath string // for the password hash
	SocketDir  string
	Notice     string // maintenance reason, before every login prompt
	Recovery   bool   // fulcrum.recovery=1: admin without a password
	FailFile   string // failed-login count across console restarts
}

// ServeConsole is `lbctl -console`: login, the CLI and its maintenance
// shell on stdin/stdout (init runs it on the serial console).
func ServeConsole(ctx context.Context, o ConsoleOptions) error {
	// Ctrl-C in the shell must not end the console: take SIGINT (handled
	// signals go back to default in the shell we start).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTSTP)
	cli := &CLI{API: localapi.NewAppliance(o.SocketDir), Out: os.Stdout}
	h, cfgNotice, locked := ConsoleHash(o.ConfigPath)
	host, _ := os.Hostname()
	s := &Session{In: os.Stdin, Out: os.Stdout, Term: OpenTerm(int(os.Stdin.Fd())), Hostname: host,
		Hash: h, Recovery: o.Recovery, Notice: o.Notice, CLI: cli, FailFile: o.FailFile}
	if locked != nil {
		s.Locked = locked.Error()
	}
	if s.Notice == "" {
		s.Notice = cfgNotice
	}
	cli.Shell = s.RunShell(maintenanceShell)
	cli.Init()
	return s.Serve(ctx)
}

// maintenanceShell runs /bin/sh on the console; its exit status is not an
// error of the console.
func maintenanceShell() error {
	cmd := exec.Command("/bin/sh")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "PATH=/bbin:/bin:/ubin", "HOME=/tmp")
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return nil
	}
	return err
}
