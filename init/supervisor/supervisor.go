// Package supervisor starts the appliance's daemons and keeps them running.
//
//   - A daemon that exits is restarted after a back-off that doubles up to a
//     ceiling; after a run longer than the stable period it is restarted at
//     once (a restarted vrrpd must be back within the VRRP master-down
//     interval).
//   - A daemon that exits with notify.DoNotRestart (125) has nothing to do
//     on this appliance and is left stopped.
//   - A service with After starts only once those services have reported
//     ready over their notify pipe (package services/daemon/notify), or
//     after ReadyTimeout.
//   - A service with a Watchdog interval that stops sending heartbeats for
//     that long (counted from its first one) is SIGKILLed and restarted: a
//     stopped or deadlocked daemon is noticed.
//   - A daemon's output is read for its whole life, cut at MaxLine and
//     queued for the console without ever blocking; lines the console cannot
//     take are dropped and counted.
package supervisor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
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
	// After names services that must report ready before this one starts
	// (names the supervisor does not run are not waited for).
	After []string
	// Watchdog is the longest gap allowed between heartbeats once the
	// service has sent one (0: not watched).
	Watchdog time.Duration
}

// Backoff is the restart policy.
type Backoff struct {
	Initial time.Duration // first delay
	Max     time.Duration // ceiling
	Stable  time.Duration // a run this long restarts at once and resets the delay
}

// DefaultBackoff restarts after 1 s, doubling to 30 s; a run of 10 s or more
// restarts at once.
var DefaultBackoff = Backoff{Initial: time.Second, Max: 30 * time.Second, Stable: 10 * time.Second}

// Next is the delay after a run that lasted ran, given the previous delay.
func (b Backoff) Next(prev, ran time.Duration) time.Duration {
	switch {
	case ran >= b.Stable:
		return 0
	case prev == 0:
		return b.Initial
	}
	return min(prev*2, b.Max)
}

// Status is a service's state for status reports and metrics.
type Status struct {
	Name     string
	PID      int
	Running  bool
	Ready    bool // has reported ready (at least once)
	Restarts int
	LastExit string
	Since    time.Time
	// Output lines cut at MaxLine, and lines dropped because the console
	// could not take them.
	Cut, Dropped uint64
	// WatchdogKills counts the runs killed for missing heartbeats.
	WatchdogKills int
}

// Supervisor runs services until its context ends.
type Supervisor struct {
	Log     logrus.FieldLogger
	Reaper  *Reaper
	Backoff Backoff
	// StopTimeout is how long a service gets between SIGTERM and SIGKILL.
	StopTimeout time.Duration
	// ReadyTimeout bounds the wait for the services named in After: a
	// dependency that never gets ready must not keep the others down for
	// ever.
	ReadyTimeout time.Duration
	// Output receives the daemons' own output lines, prefixed with the
	// service name (daemons log with their own formatter; wrapping each line
	// in another log record would only double the timestamps). Nil: lines
	// are logged through Log. Set it before the first Start.
	Output io.Writer

	mu      sync.Mutex
	svcs    map[string]*entry
	wg      sync.WaitGroup
	queue   chan outLine
	dropped atomic.Uint64
	writer  sync.Once
}

// entry is the supervisor's record of one service.
type entry struct {
	st        Status
	ready     chan struct{} // closed on the first READY
	readyOnce sync.Once
}

// New returns a supervisor using reaper to learn about exits.
func New(log logrus.FieldLogger, reaper *Reaper) *Supervisor {
	return &Supervisor{Log: log, Reaper: reaper, Backoff: DefaultBackoff, StopTimeout: 5 * time.Second,
		ReadyTimeout: time.Minute, svcs: map[string]*entry{}, queue: make(chan outLine, queueLen)}
}

// Start runs svc in the background until ctx is cancelled, restarting it
// whenever it exits. On cancel the service gets SIGTERM, then SIGKILL after
// StopTimeout.
func (s *Supervisor) Start(ctx context.Context, svc Service) { s.StartAll(ctx, svc) }

// StartAll starts services together: each waits for the ones its After
// names among them (or started before).
func (s *Supervisor) StartAll(ctx context.Context, svcs ...Service) {
	s.writer.Do(func() { go s.writeConsole() })
	s.mu.Lock()
	for _, svc := range svcs {
		s.svcs[svc.Name] = &entry{st: Status{Name: svc.Name}, ready: make(chan struct{})}
	}
	s.mu.Unlock()
	for _, svc := range svcs {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if s.waitAfter(ctx, svc) {
				s.loop(ctx, svc)
			}
		}()
	}
}

// Wait blocks until every service has stopped (after ctx cancel).
func (s *Supervisor) Wait() { s.wg.Wait() }

// Statuses reports every service's state.
func (s *Supervisor) Statuses() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.svcs))
	for _, e := range s.svcs {
		out = append(out, e.st)
	}
	return out
}

func (s *Supervisor) entry(name string) *entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.svcs[name]
}

func (s *Supervisor) update(name string, f func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.svcs[name]; e != nil {
		f(&e.st)
	}
}

// ReadyC is closed once the service name has reported ready (or will never
// run again); nil when the supervisor does not run name.
func (s *Supervisor) ReadyC(name string) <-chan struct{} {
	e := s.entry(name)
	if e == nil {
		return nil
	}
	return e.ready
}

// markReady records that name reported ready (or will never run again).
func (s *Supervisor) markReady(name string) {
	e := s.entry(name)
	if e == nil {
		return
	}
	e.readyOnce.Do(func() {
		s.update(name, func(st *Status) { st.Ready = true })
		close(e.ready)
	})
}

// waitAfter holds svc back until the services it is After are ready. It
// reports false when ctx ended first.
func (s *Supervisor) waitAfter(ctx context.Context, svc Service) bool {
	log := s.Log.WithField("service", svc.Name)
	timeout := time.NewTimer(s.ReadyTimeout)
	defer timeout.Stop()
	for _, dep := range svc.After {
		e := s.entry(dep)
		if e == nil {
			log.WithField("after", dep).Info("not supervised here; not waiting for it")
			continue
		}
		start := time.Now()
		select {
		case <-e.ready:
			log.WithFields(logrus.Fields{"after": dep, "waited": time.Since(start).Round(time.Millisecond).String()}).Info("ready; starting")
		case <-timeout.C:
			log.WithFields(logrus.Fields{"after": dep, "waited": s.ReadyTimeout.String()}).Warn("not ready; starting anyway")
			return true
		case <-ctx.Done():
			return false
		}
	}
	return true
}

func (s *Supervisor) loop(ctx context.Context, svc Service) {
	log := s.Log.WithField("service", svc.Name)
	var delay time.Duration
	env := svc.Env
	for {
		started := time.Now()
		ws, hung, stopped := s.runOnce(ctx, svc, log)
		if stopped {
			return
		}
		// A daemon killed as hung learns it at its next start (a vrrpd
		// master then gives up its addresses rather than resume).
		svc.Env = env
		if hung {
			svc.Env = append(append([]string(nil), env...), notify.EnvPreviousRun+"="+notify.PreviousRunHung)
		}
		if ws.Exited() && ws.ExitStatus() == notify.DoNotRestart {
			log.WithField("exit", describe(ws)).Info("nothing to do here; not restarting")
			s.markReady(svc.Name) // nobody waits for it in vain
			return
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

// runOnce starts svc and waits for its end: an exit, a missed heartbeat
// (SIGKILL; hung is true) or ctx (stop; stopped is true).
func (s *Supervisor) runOnce(ctx context.Context, svc Service, log logrus.FieldLogger) (ws unix.WaitStatus, hung, stopped bool) {
	started := time.Now()
	r, err := s.spawn(svc, log)
	if err != nil {
		log.WithError(err).Error("start failed")
		s.update(svc.Name, func(st *Status) { st.Running = false; st.LastExit = err.Error() })
		return 0, false, ctx.Err() != nil
	}
	log.WithField("pid", r.pid).Info("started")
	s.update(svc.Name, func(st *Status) { st.PID = r.pid; st.Running = true; st.Since = started })
	ws, why := s.watch(ctx, svc, r, log)
	exit := describe(ws)
	if why != "" {
		exit = why + " (" + exit + ")"
	}
	s.update(svc.Name, func(st *Status) { st.Running = false; st.LastExit = exit })
	if ctx.Err() != nil {
		return ws, false, true
	}
	if !(ws.Exited() && ws.ExitStatus() == notify.DoNotRestart) {
		log.WithField("exit", exit).Warn("exited")
	}
	return ws, why != "", false
}

// watch waits for r's exit, stopping it when ctx ends and killing it when
// its heartbeats stop. why says why the supervisor ended it ("" if it
// exited by itself).
func (s *Supervisor) watch(ctx context.Context, svc Service, r *run, log logrus.FieldLogger) (ws unix.WaitStatus, why string) {
	var watchdog <-chan time.Time
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case ws = <-r.exited:
			return ws, ""
		case <-ctx.Done():
			return s.stop(r.pid, r.exited, log), ""
		case <-r.beats:
			if svc.Watchdog <= 0 {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(svc.Watchdog)
				watchdog = timer.C
			} else {
				timer.Reset(svc.Watchdog)
			}
		case <-watchdog:
			log.WithField("watchdog", svc.Watchdog.String()).Error("no heartbeat: the daemon is hung; killing it")
			_ = unix.Kill(-r.pid, unix.SIGKILL) // its process group
			_ = unix.Kill(r.pid, unix.SIGKILL)
			s.update(svc.Name, func(st *Status) { st.WatchdogKills++ })
			return <-r.exited, "no heartbeat for " + svc.Watchdog.String()
		}
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

// run is one running instance of a service.
type run struct {
	pid    int
	exited <-chan unix.WaitStatus
	beats  chan struct{} // a heartbeat arrived (buffered: one pending at most)
}

// spawn starts svc. A TTY service gets the terminal as stdio; any other
// gets a pipe read for the child's whole life (its lines go to the console
// queue) and the notify pipe (fd 3).
func (s *Supervisor) spawn(svc Service, log logrus.FieldLogger) (*run, error) {
	cmd := exec.Command(svc.Path, svc.Args...)
	cmd.Env = append(os.Environ(), svc.Env...)
	r := &run{beats: make(chan struct{}, 1)}
	var closers []io.Closer
	if svc.TTY != "" {
		tty, err := os.OpenFile(svc.TTY, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", svc.TTY, err)
		}
		closers = append(closers, tty)
		if svc.Banner != "" {
			fmt.Fprint(tty, svc.Banner)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	} else {
		pw, nw, err := s.pipes(cmd, svc, r, log)
		if err != nil {
			return nil, err
		}
		closers = append(closers, pw, nw)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	// The reaper, not cmd.Wait, collects the exit; exits it sees before
	// Watch are kept for it.
	err := cmd.Start()
	for _, c := range closers {
		c.Close()
	}
	if err != nil {
		return nil, err
	}
	r.pid = cmd.Process.Pid
	r.exited = s.Reaper.Watch(r.pid)
	return r, nil
}

// pipes gives cmd its output pipe and notify pipe and starts their
// readers; it returns the child's ends, which the caller closes once the
// child has started.
func (s *Supervisor) pipes(cmd *exec.Cmd, svc Service, r *run, log logrus.FieldLogger) (out, note *os.File, err error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	nr, nw, env, err := notify.Open(svc.Watchdog)
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.ExtraFiles = []*os.File{nw} // fd 3 = notify.FD
	cmd.Env = append(cmd.Env, env...)
	go func() {
		defer pr.Close()
		readLines(pr, MaxLine, func(text string, cut bool) {
			if cut {
				s.update(svc.Name, func(st *Status) { st.Cut++ })
			}
			s.emit(outLine{service: svc.Name, text: text, log: log})
		})
	}()
	go func() {
		defer nr.Close()
		notify.Read(nr, func(m notify.Message) {
			switch m {
			case notify.Ready:
				s.markReady(svc.Name)
			case notify.Heartbeat:
				select {
				case r.beats <- struct{}{}:
				default:
				}
			}
		})
	}()
	return pw, nw, nil
}
