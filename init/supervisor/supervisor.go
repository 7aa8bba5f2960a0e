// Package supervisor starts the appliance's daemons and keeps them running:
// a daemon that exits is restarted after a back-off that doubles up to a
// ceiling and resets once the daemon has stayed up for a while. A daemon
// that exits with notify.DoNotRestart (125) is left stopped.
package supervisor

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/services/daemon/notify"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// Service is one supervised program.
type Service struct {
	Name string
	Path string
	Args []string
	Env  []string
	// TTY, when set, makes the program a session leader with this terminal
	// as its controlling terminal and stdio (the serial console shell).
	TTY string
	// Banner is written to the TTY before each start.
	Banner string
}

// Backoff is the restart policy.
type Backoff struct {
	Initial time.Duration // first delay
	Max     time.Duration // ceiling
	Stable  time.Duration // running this long resets the delay
}

// DefaultBackoff restarts after 1 s, doubling to 30 s; 10 s up resets it.
var DefaultBackoff = Backoff{Initial: time.Second, Max: 30 * time.Second, Stable: 10 * time.Second}

// Next is the delay after a run that lasted ran, given the previous delay.
func (b Backoff) Next(prev, ran time.Duration) time.Duration {
	if prev == 0 || ran >= b.Stable {
		return b.Initial
	}
	next := prev * 2
	if next > b.Max {
		next = b.Max
	}
	return next
}

// Status is a service's state for status reports and metrics.
type Status struct {
	Name     string
	PID      int
	Running  bool
	Restarts int
	LastExit string
	Since    time.Time
}

// Supervisor runs services until its context ends.
type Supervisor struct {
	Log     logrus.FieldLogger
	Reaper  *Reaper
	Backoff Backoff
	// StopTimeout is how long a service gets between SIGTERM and SIGKILL.
	StopTimeout time.Duration
	// Output receives the daemons' own output lines, prefixed with the
	// service name (daemons log with their own formatter; wrapping each line
	// in another log record would only double the timestamps). Nil: lines
	// are logged through Log.
	Output io.Writer

	mu     sync.Mutex
	status map[string]*Status
	wg     sync.WaitGroup
}

// New returns a supervisor using reaper to learn about exits.
func New(log logrus.FieldLogger, reaper *Reaper) *Supervisor {
	return &Supervisor{Log: log, Reaper: reaper, Backoff: DefaultBackoff, StopTimeout: 5 * time.Second, status: map[string]*Status{}}
}

// Start runs svc in the background until ctx is cancelled, restarting it
// whenever it exits. On cancel the service gets SIGTERM, then SIGKILL after
// StopTimeout.
func (s *Supervisor) Start(ctx context.Context, svc Service) {
	s.mu.Lock()
	s.status[svc.Name] = &Status{Name: svc.Name}
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.loop(ctx, svc)
	}()
}

// Wait blocks until every service has stopped (after ctx cancel).
func (s *Supervisor) Wait() { s.wg.Wait() }

// Statuses reports every service's state.
func (s *Supervisor) Statuses() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.status))
	for _, st := range s.status {
		out = append(out, *st)
	}
	return out
}

func (s *Supervisor) update(name string, f func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.status[name])
}

func (s *Supervisor) loop(ctx context.Context, svc Service) {
	log := s.Log.WithField("service", svc.Name)
	var delay time.Duration
	for {
		started := time.Now()
		pid, exited, err := s.spawn(svc, log)
		if err != nil {
			log.WithError(err).Error("start failed")
			s.update(svc.Name, func(st *Status) { st.Running = false; st.LastExit = err.Error() })
		} else {
			log.WithField("pid", pid).Info("started")
			s.update(svc.Name, func(st *Status) { st.PID = pid; st.Running = true; st.Since = started })
			var ws unix.WaitStatus
			select {
			case ws = <-exited:
			case <-ctx.Done():
				ws = s.stop(pid, exited, log)
				s.update(svc.Name, func(st *Status) { st.Running = false; st.LastExit = describe(ws) })
				return
			}
			s.update(svc.Name, func(st *Status) { st.Running = false; st.LastExit = describe(ws) })
			if ws.Exited() && ws.ExitStatus() == notify.DoNotRestart {
				log.WithField("exit", describe(ws)).Info("nothing to do here; not restarting")
				return
			}
			log.WithField("exit", describe(ws)).Warn("exited")
		}
		delay = s.Backoff.Next(delay, time.Since(started))
		log.WithField("in", delay).Info("restarting")
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		s.update(svc.Name, func(st *Status) { st.Restarts++ })
	}
}

func describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("killed by %v", ws.Signal())
	}
	return fmt.Sprintf("status %#x", uint32(ws))
}

// stop sends SIGTERM, waits StopTimeout, then SIGKILL.
func (s *Supervisor) stop(pid int, exited <-chan unix.WaitStatus, log logrus.FieldLogger) unix.WaitStatus {
	log.Info("stopping")
	_ = unix.Kill(pid, unix.SIGTERM)
	select {
	case ws := <-exited:
		return ws
	case <-time.After(s.StopTimeout):
	}
	log.Warn("did not stop in time; killing")
	_ = unix.Kill(pid, unix.SIGKILL)
	return <-exited
}

// spawn starts svc and returns its PID and exit channel. Output of non-TTY
// services is logged line by line under the service's name.
func (s *Supervisor) spawn(svc Service, log logrus.FieldLogger) (int, <-chan unix.WaitStatus, error) {
	cmd := exec.Command(svc.Path, svc.Args...)
	cmd.Env = append(os.Environ(), svc.Env...)
	var closers []io.Closer
	if svc.TTY != "" {
		tty, err := os.OpenFile(svc.TTY, os.O_RDWR, 0)
		if err != nil {
			return 0, nil, fmt.Errorf("open %s: %w", svc.TTY, err)
		}
		closers = append(closers, tty)
		if svc.Banner != "" {
			fmt.Fprint(tty, svc.Banner)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	} else {
		pr, pw, err := os.Pipe()
		if err != nil {
			return 0, nil, fmt.Errorf("pipe: %w", err)
		}
		cmd.Stdout, cmd.Stderr = pw, pw
		closers = append(closers, pw)
		go func() {
			defer pr.Close()
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 0, 4096), 64*1024)
			for sc.Scan() {
				if s.Output != nil {
					fmt.Fprintf(s.Output, "%s| %s\n", svc.Name, sc.Text())
				} else {
					log.Info(sc.Text())
				}
			}
		}()
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	// The reaper, not cmd.Wait, collects the exit: register before the
	// process can possibly exit by holding the reaper's view consistent
	// (exits seen early are kept for Watch).
	err := cmd.Start()
	for _, c := range closers {
		c.Close()
	}
	if err != nil {
		return 0, nil, err
	}
	pid := cmd.Process.Pid
	return pid, s.Reaper.Watch(pid), nil
}
