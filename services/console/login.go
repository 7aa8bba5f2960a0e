package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	// LoginDisabled starts the notice of a console nobody can log in to
	// (no usable password hash), followed by the reason.
	LoginDisabled = "CONSOLE LOGIN DISABLED"
	// RecoveryWarn is printed before every login prompt in recovery mode.
	RecoveryWarn = "RECOVERY MODE (kernel argument " + RecoveryParam + "): admin logs in WITHOUT a password at this console."
	// RecoveryParam is the kernel argument that allows the passwordless
	// recovery login on the serial console. It is typed at the boot loader,
	// so using it needs the physical (or IPMI serial-over-LAN) console.
	RecoveryParam = "fulcrum.recovery=1"
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

// CheckNiced runs the bcrypt compare (deliberately CPU-heavy) on a thread
// at the lowest CPU priority, so a login never starves the daemons (VRRP
// adverts every 100 ms on a one-CPU guest). The console and the web
// dashboard check passwords with it.
func CheckNiced(hash, pw string) bool {
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

// ConsoleHash reads the console password hash from the config at path.
// The console fails closed: a missing or unreadable config, YAML that does
// not parse, an empty hash or one the console cannot use (see
// config.CheckPasswordHash) return an error, the reason nobody can log in.
// A config that parses but does not validate (maintenance state) still
// gives its hash, with the validation error as notice, so an admin can log
// in to fix it.
func ConsoleHash(path string) (hash, notice string, err error) {
	cfg, lerr := config.Load(path)
	if lerr == nil {
		hash = cfg.Access.Console.PasswordHash
	} else {
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			return "", "", fmt.Errorf("no readable config: %w", rerr)
		}
		var partial struct {
			Management struct {
				Console struct {
					PasswordHash string `yaml:"password_hash"`
				} `yaml:"console"`
			} `yaml:"management"`
		}
		if yerr := yaml.Unmarshal(b, &partial); yerr != nil {
			return "", "", fmt.Errorf("config %s does not parse: %v", path, yerr)
		}
		hash, notice = partial.Management.Console.PasswordHash, "config problem: "+lerr.Error()
	}
	if hash == "" {
		return "", notice, errors.New("no console password set (management.console.password_hash)")
	}
	if err := config.CheckPasswordHash(hash); err != nil {
		return "", notice, fmt.Errorf("management.console.password_hash: %w", err)
	}
	return hash, notice, nil
}

// Session is the serial console: login, then the CLI, then login again.
type Session struct {
	In       io.Reader
	Out      io.Writer
	Term     *Term // nil: not a terminal
	Hostname string
	// Hash is the bcrypt password hash. "" means nobody logs in (Locked
	// says why), unless Recovery.
	Hash   string
	Locked string
	// Recovery lets admin in without a password (kernel argument
	// fulcrum.recovery=1 on the serial console), warned before every prompt.
	Recovery bool
	// Notice is printed before each login prompt (maintenance reason).
	Notice string
	CLI    *CLI
	// FailDelay is the pause after each of the first failed logins
	// (default 2 s); from the fourth on it doubles, up to MaxFailDelay
	// (default 60 s). FailFile keeps the count across console restarts.
	FailDelay    time.Duration
	MaxFailDelay time.Duration
	FailFile     string

	ed    *Editor
	fails *failures
}

// Serve runs login → CLI sessions until ctx ends or input ends.
func (s *Session) Serve(ctx context.Context) error {
	if s.FailDelay == 0 {
		s.FailDelay = 2 * time.Second
	}
	if s.MaxFailDelay == 0 {
		s.MaxFailDelay = time.Minute
	}
	s.fails = &failures{path: s.FailFile}
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
	switch {
	case s.Recovery:
		fmt.Fprintln(s.Out, "\n*** "+RecoveryWarn+" ***")
	case s.Hash != "":
	default:
		fmt.Fprintf(s.Out, "\n*** %s: %s. Set a bcrypt hash (cost %d..%d) in management.console.password_hash, or boot with %s at the boot loader (serial console) to recover. ***\n",
			LoginDisabled, s.Locked, config.MinBcryptCost, config.MaxBcryptCost, RecoveryParam)
	}
	fails := s.fails
	n, last := fails.read()
	if wait := time.Until(last.Add(s.backoff(n))); wait > 0 {
		fmt.Fprintf(s.Out, "%d failed logins: next attempt in %d s\n", n, int(wait.Seconds()+0.999))
		time.Sleep(wait)
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
	switch {
	case s.Recovery:
	case s.Hash != "":
		pw, err := s.ed.ReadSecret(PasswordPrompt)
		fmt.Fprintln(s.Out)
		if err != nil {
			return false, err
		}
		good = good && CheckNiced(s.Hash, pw)
	default:
		good = false
	}
	if !good {
		n = fails.add(time.Now())
		time.Sleep(s.backoff(n))
		fmt.Fprintln(s.Out, "Login incorrect")
		return false, nil
	}
	fails.reset()
	fmt.Fprintln(s.Out, LoggedIn+" Type 'help' for commands; Tab completes.")
	return true, nil
}

// backoff is the pause after the nth failed login in a row.
func (s *Session) backoff(n int) time.Duration {
	d := s.FailDelay
	for i := 3; i < n && d < s.MaxFailDelay; i++ {
		d *= 2
	}
	return min(d, s.MaxFailDelay)
}

// failures is the count of failed logins in a row and the time of the last
// one, kept in a file (when path is set) so that restarting the console
// does not reset the back-off.
type failures struct {
	path string
	n    int
	last time.Time
	mem  bool
}

func (f *failures) read() (int, time.Time) {
	if f.path == "" || f.mem {
		return f.n, f.last
	}
	f.mem = true
	b, err := os.ReadFile(f.path)
	if err != nil {
		return 0, time.Time{}
	}
	var ms int64
	if _, err := fmt.Sscanf(string(b), "%d %d", &f.n, &ms); err != nil {
		f.n = 0
		return 0, time.Time{}
	}
	f.last = time.UnixMilli(ms)
	return f.n, f.last
}

func (f *failures) add(now time.Time) int {
	f.read()
	f.n++
	f.last = now
	f.write()
	return f.n
}

func (f *failures) reset() {
	f.n, f.last = 0, time.Time{}
	if f.path != "" {
		os.Remove(f.path)
	}
}

func (f *failures) write() {
	if f.path == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err == nil {
		_ = os.WriteFile(f.path, fmt.Appendf(nil, "%d %d\n", f.n, f.last.UnixMilli()), 0o600)
	}
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
