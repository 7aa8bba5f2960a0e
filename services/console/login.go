package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/fulcrum-lb/fulcrum/lbcore/config"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sys/unix"
)

// User is the one console account.
const User = "admin"

// Strings the console prints that scripts (the QEMU harness) wait for.
const (
	LoginPrompt    = "login: "
	PasswordPrompt = "Password: "
	LoggedIn       = "Logged in to the Fulcrum CLI."
	NoPasswordWarn = "WARNING: no console password is set (management.console.password_hash): anyone at this console gets in."
)

// HashPassword returns a bcrypt hash for the config.
func HashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hashing password: %w", err)
	}
	return string(h), nil
}

// CheckPassword reports whether pw matches the bcrypt hash.
func CheckPassword(hash, pw string) bool {
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

// checkNiced runs the bcrypt compare (deliberately CPU-heavy) on a thread
// at the lowest CPU priority, so a login never starves the daemons (VRRP
// adverts every 100 ms on a one-CPU guest).
func checkNiced(hash, pw string) bool {
	ok := make(chan bool, 1)
	go func() {
		// The thread dies with the goroutine (no UnlockOSThread), so its
		// niceness never leaks to other goroutines.
		runtime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
		ok <- CheckPassword(hash, pw)
	}()
	return <-ok
}

// ConsoleHash reads the console password hash from the config at path. A
// config that does not validate (maintenance state) is still searched for
// management.console.password_hash, so a broken config does not open the
// console to everyone. The error says why the full config did not load.
func ConsoleHash(path string) (hash string, cfgErr error) {
	cfg, err := config.Load(path)
	if err == nil {
		return cfg.Access.Console.PasswordHash, nil
	}
	b, rerr := os.ReadFile(path)
	if rerr != nil {
		return "", err
	}
	var partial struct {
		Management struct {
			Console struct {
				PasswordHash string `yaml:"password_hash"`
			} `yaml:"console"`
		} `yaml:"management"`
	}
	_ = yaml.Unmarshal(b, &partial)
	return partial.Management.Console.PasswordHash, err
}

// Session is the serial console: login, then the CLI, then login again.
type Session struct {
	In       io.Reader
	Out      io.Writer
	Term     *Term // nil: not a terminal
	Hostname string
	// Hash is the bcrypt password hash; "" means no password (warned).
	Hash string
	// Notice is printed before each login prompt (maintenance reason).
	Notice string
	CLI    *CLI
	// FailDelay is the pause after a failed login (default 2 s).
	FailDelay time.Duration

	ed *Editor
}

// Serve runs login → CLI sessions until ctx ends or input ends.
func (s *Session) Serve(ctx context.Context) error {
	if s.FailDelay == 0 {
		s.FailDelay = 2 * time.Second
	}
	s.ed = NewEditor(s.In, s.Out)
	s.CLI.ReadLine = s.ed.ReadLine
	if s.Term != nil {
		if err := s.Term.Raw(); err != nil {
			return err
		}
		defer s.Term.Restore()
	}
	for ctx.Err() == nil {
		ok, err := s.login()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if errors.Is(err, ErrInterrupted) {
				continue
			}
			return err
		}
		if !ok {
			continue
		}
		if err := s.cli(ctx); err != nil && !errors.Is(err, ErrLogout) {
			return err
		}
		fmt.Fprintln(s.Out, "logged out")
	}
	return nil
}

func (s *Session) login() (bool, error) {
	if s.Notice != "" {
		fmt.Fprintln(s.Out, s.Notice)
	}
	if s.Hash == "" {
		fmt.Fprintln(s.Out, "\n*** "+NoPasswordWarn+" ***")
	}
	fmt.Fprintln(s.Out)
	user, err := s.ed.ReadLine(s.Hostname + " " + LoginPrompt)
	if err != nil {
		return false, err
	}
	user = strings.TrimSpace(user)
	if user == "" {
		return false, nil
	}
	good := user == User
	if s.Hash != "" {
		pw, err := s.ed.ReadSecret(PasswordPrompt)
		fmt.Fprintln(s.Out)
		if err != nil {
			return false, err
		}
		good = good && checkNiced(s.Hash, pw)
	}
	if !good {
		time.Sleep(s.FailDelay)
		fmt.Fprintln(s.Out, "Login incorrect")
		return false, nil
	}
	fmt.Fprintln(s.Out, LoggedIn+" Type 'help' for commands; Tab completes.")
	return true, nil
}

func (s *Session) cli(ctx context.Context) error {
	s.ed.Complete = s.CLI.Complete
	defer func() { s.ed.Complete = nil }()
	for {
		line, err := s.ed.ReadLine(s.Hostname + "> ")
		switch {
		case errors.Is(err, ErrInterrupted):
			continue
		case errors.Is(err, io.EOF):
			return ErrLogout
		case err != nil:
			return err
		}
		err = s.CLI.Run(ctx, line)
		if errors.Is(err, ErrLogout) {
			return err
		}
		if err != nil {
			fmt.Fprintf(s.Out, "%% error: %v\n", err)
		}
	}
}

// RunShell returns a CLI.Shell that runs the maintenance shell on the
// session's terminal with the terminal in its normal mode.
func (s *Session) RunShell(run func() error) func() error {
	return func() error {
		if s.Term != nil {
			s.Term.Restore()
			defer s.Term.Raw()
		}
		return run()
	}
}
