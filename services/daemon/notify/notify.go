// Package notify is the contract between init's supervisor and the daemons it
// runs: readiness, liveness and the "do not restart me" exit status. It is
// shaped after systemd's sd_notify and gokrazy's do-not-supervise status.
//
// The supervisor gives each daemon the write end of a pipe as file
// descriptor FD and names it in the environment variable EnvFD. The daemon
// writes one line per message:
//
//	READY=1      the daemon is serving (services started After it may start)
//	WATCHDOG=1   the daemon is alive (the heartbeat)
//
// Writes never block the daemon: a message the pipe cannot take is dropped.
// When EnvWatchdog is set (a Go duration such as "3s"), the supervisor
// SIGKILLs and restarts a daemon whose heartbeats stop for that long, counted
// from its first heartbeat.
//
// A daemon that exits with status DoNotRestart (125) has nothing to do on
// this appliance: the supervisor does not restart it.
package notify

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// EnvFD names the environment variable holding the notify descriptor.
	EnvFD = "FULCRUM_NOTIFY_FD"
	// EnvWatchdog names the environment variable holding the watchdog
	// interval (a Go duration); unset or empty means no watchdog.
	EnvWatchdog = "FULCRUM_WATCHDOG"
	// FD is the descriptor number the supervisor passes (the first of
	// exec.Cmd.ExtraFiles).
	FD = 3
	// DoNotRestart is the exit status of a daemon that has nothing to do.
	DoNotRestart = 125
	// EnvPreviousRun tells a restarted daemon how its previous run ended,
	// when that matters: PreviousRunHung after a watchdog kill.
	EnvPreviousRun = "FULCRUM_PREVIOUS_RUN"
	// PreviousRunHung is EnvPreviousRun's value after the supervisor killed
	// the previous run for missing heartbeats.
	PreviousRunHung = "hung"
)

// Message is one notification.
type Message string

// The messages a daemon sends.
const (
	Ready     Message = "READY=1"
	Heartbeat Message = "WATCHDOG=1"
)

// maxLine bounds one message line on the supervisor's side.
const maxLine = 256

// Notifier is a daemon's end of the notify pipe. The zero value and nil
// discard every message (a daemon run outside init).
type Notifier struct {
	fd       int
	watchdog time.Duration
}

// FromEnv returns the notifier init passed in env (os.Getenv), or nil when
// there is none. The descriptor is made close-on-exec and non-blocking so
// that programs the daemon starts do not inherit it and a full pipe never
// blocks the daemon.
func FromEnv(getenv func(string) string) (*Notifier, error) {
	v := getenv(EnvFD)
	if v == "" {
		return nil, nil
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 0 {
		return nil, fmt.Errorf("%s=%q: not a file descriptor", EnvFD, v)
	}
	n := &Notifier{fd: fd}
	if w := getenv(EnvWatchdog); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%s=%q: not a positive duration", EnvWatchdog, w)
		}
		n.watchdog = d
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return nil, fmt.Errorf("%s=%d: %w", EnvFD, fd, err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("%s=%d: non-blocking: %w", EnvFD, fd, err)
	}
	return n, nil
}

// Send writes m without blocking. It reports whether the message went out.
func (n *Notifier) Send(m Message) bool {
	if n == nil {
		return false
	}
	b := []byte(string(m) + "\n")
	w, err := unix.Write(n.fd, b)
	return err == nil && w == len(b)
}

// Watchdog is the interval the supervisor allows between heartbeats (0:
// not watched).
func (n *Notifier) Watchdog() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Read calls f for every message read from r (the supervisor's end of the
// pipe) until r ends. Unknown or overlong lines are skipped.
func Read(r io.Reader, f func(Message)) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, maxLine), maxLine)
	for {
		if sc.Scan() {
			switch m := Message(sc.Text()); m {
			case Ready, Heartbeat:
				f(m)
			}
			continue
		}
		if sc.Err() != bufio.ErrTooLong {
			return
		}
		// an overlong line: resynchronise at the next newline
		sc = bufio.NewScanner(skipLine(r))
		sc.Buffer(make([]byte, 0, maxLine), maxLine)
	}
}

func skipLine(r io.Reader) io.Reader {
	var one [1]byte
	for {
		n, err := r.Read(one[:])
		if err != nil {
			return r
		}
		if n == 1 && one[0] == '\n' {
			return r
		}
	}
}

// Open makes the pipe for one run of a daemon: the supervisor keeps r and
// passes w as ExtraFiles[0] (closing its copy after the start), with env.
func Open(watchdog time.Duration) (r, w *os.File, env []string, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("notify pipe: %w", err)
	}
	env = []string{EnvFD + "=" + strconv.Itoa(FD)}
	if watchdog > 0 {
		env = append(env, EnvWatchdog+"="+watchdog.String())
	}
	return r, w, env, nil
}
