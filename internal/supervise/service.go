// Package supervise runs each app of the image as a supervised service: it
// starts the process in a process group of its own, forwards its output line
// by line to the console and a ring buffer, reports why it exited, restarts it
// with exponential backoff, and stops it (TERM, then KILL) at poweroff.
//
// On Linux all children are reaped by a single Reaper (see reaper_linux.go);
// services never wait for their processes themselves.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/nodeboot/nodeboot/internal/crash"
	"github.com/nodeboot/nodeboot/internal/sandbox"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// State is the lifecycle state of a Service.
type State string

const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateBackoff  State = "backoff" // waiting to restart after an exit
	StateStopped  State = "stopped"
)

// Status is a snapshot of a Service.
type Status struct {
	Name      string
	State     State
	PID       int // 0 when no process is running
	Restarts  int
	LastExit  string    // why the previous process ended, "" if none has
	StartedAt time.Time // start of the current (or last) process
}

// StartSpec is what a Starter needs to start one process.
type StartSpec struct {
	Path     string
	Args     []string // argv after Path
	Dir      string
	Env      []string // nil inherits the supervisor's environment
	UID, GID uint32
	// Sandbox, when not nil, runs the process inside it (sandbox_linux.go);
	// its command and CodeDir are filled from the fields above at each start.
	Sandbox *sandbox.Spec
}

// Starter is the boundary to the operating system: it starts one process.
// The default runs real processes (see NewStarter); tests may inject fakes.
type Starter interface {
	Start(spec StartSpec) (Process, error)
}

// Process is one started process, as seen by the Service.
type Process interface {
	PID() int
	// Stdout and Stderr are read to EOF (or closed) by the Service.
	Stdout() io.ReadCloser
	Stderr() io.ReadCloser
	// Exited delivers the exit status exactly once.
	Exited() <-chan ExitStatus
	// Signal sends sig to the process and everything in its process group.
	// It returns an error wrapping ErrNoProcess when nothing is left.
	Signal(sig syscall.Signal) error
}

// ErrNoProcess reports that there was no process left to signal.
var ErrNoProcess = errors.New("no such process")

// Options configures a Service.
type Options struct {
	Name string
	Path string   // the node binary
	Args []string // argv after Path: node args, entry, app args
	Dir  string   // working directory
	// Env is the complete environment; nil inherits the supervisor's.
	Env      []string
	UID, GID uint32 // the process runs as this user unless both are 0
	// Sandbox isolates the app (internal/sandbox); nil runs it with its
	// uid and process group only.
	Sandbox *sandbox.Spec

	// Console receives the output, one whole line per Write, as
	// "name: line" (stdout) or "name[err]: line" (stderr). A service's own
	// writes are serialised; a writer shared by several services must be
	// safe for concurrent use (boot.Logger's Writer is, and never blocks).
	// nil discards (the ring buffer still records).
	Console io.Writer
	// RingLines is how many recent lines Lines can return; default 1000.
	RingLines int
	// RingBytes bounds the bytes of those lines; default DefaultRingBytes.
	RingBytes int
	// Log receives the supervisor's own messages about this service (start,
	// exit reason, restart delay), already prefixed "name: ". When nil they
	// go to Console as "name[init]: message" instead. They are not written
	// to both, so a Log that goes to the console does not double them.
	Log func(format string, args ...any)

	Backoff Backoff
	Starter Starter // nil: real processes (NewStarter(nil) on Linux)
	// BeforeStop, when set, runs before the process gets SIGTERM, with
	// "stop" or "restart": the app's onShutdown handlers drain in it
	// (internal/appapi). It bounds its own time.
	BeforeStop func(reason string)
	// StopGrace is how long Run waits after TERM before KILL when its
	// context is cancelled; default 10s. Stop takes its own grace.
	StopGrace time.Duration
}

// DefaultStopGrace is used when Options.StopGrace is zero.
const DefaultStopGrace = 10 * time.Second

const (
	// maxLine is where long output lines are cut: a process writing
	// megabytes without a newline must not make the supervisor buffer
	// them all.
	maxLine = 64 << 10
	// killWait bounds the wait for a process to disappear after KILL; only
	// a process stuck in the kernel (uninterruptible sleep) takes longer.
	killWait = 10 * time.Second
	// drainWait bounds how long output is read after the process exited.
	// The pipes can stay open past the group kill if a descendant moved
	// to another process group; the output is then cut off rather than
	// holding up the restart.
	drainWait = 2 * time.Second
)

// Service supervises one app.
type Service struct {
	name    string
	opts    Options
	starter Starter
	ring    *ring

	consoleMu sync.Mutex // serialises this service's writes to Console

	mu        sync.Mutex
	state     State
	pid       int
	restarts  int
	lastExit  string
	startedAt time.Time
	runDone   chan struct{} // non-nil once Run started; closed when it returns
	stopCh    chan struct{} // closed by Stop
	restartCh chan struct{} // a value asks runOnce to stop the process for an immediate restart
	stopping  bool
	grace     time.Duration // Stop's grace, valid once stopping
	stopErr   error
}

// New returns a Service for opts; nothing runs until Run.
func New(opts Options) *Service {
	if opts.StopGrace <= 0 {
		opts.StopGrace = DefaultStopGrace
	}
	opts.Backoff = opts.Backoff.withDefaults()
	s := &Service{
		name:    opts.Name,
		opts:    opts,
		starter: opts.Starter,
		ring:    newRing(opts.RingLines, opts.RingBytes),
		state:   StateStopped,
		stopCh:  make(chan struct{}),
		// Buffered: Restart must not block when no process is running.
		restartCh: make(chan struct{}, 1),
	}
	if s.starter == nil {
		s.starter = defaultStarter()
	}
	return s
}

// AppOptions builds the Options for one app of the runtime configuration.
// The caller adds PATH to Env and sets Console, Log and the rest.
func AppOptions(nodePath string, app spec.RuntimeApp) (Options, error) {
	if app.UID < 0 || app.GID < 0 || int64(app.UID) > int64(^uint32(0)) || int64(app.GID) > int64(^uint32(0)) {
		return Options{}, fmt.Errorf("app %s: uid/gid %d/%d out of range", app.Name, app.UID, app.GID)
	}
	entry := app.Entry
	if !filepath.IsAbs(entry) {
		entry = filepath.Join(app.Dir, entry)
	}
	keys := make([]string, 0, len(app.Env))
	for k := range app.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys) // a stable order makes /proc/<pid>/environ diffable
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, k+"="+app.Env[k])
	}
	return Options{
		Name: app.Name,
		Path: nodePath,
		// node NodeArgs... entry Args...: flags from scripts.start (e.g.
		// --enable-source-maps) must come before the entry to reach node.
		Args: append(append(append([]string{}, app.NodeArgs...), entry), app.Args...),
		Dir:  app.Dir,
		Env:  env,
		UID:  uint32(app.UID),
		GID:  uint32(app.GID),
	}, nil
}

// Name returns the service's name.
func (s *Service) Name() string { return s.name }

// Status returns a snapshot of the service's state.
func (s *Service) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{
		Name:      s.name,
		State:     s.state,
		PID:       s.pid,
		Restarts:  s.restarts,
		LastExit:  s.lastExit,
		StartedAt: s.startedAt,
	}
}

// Lines returns up to n of the most recent output lines, oldest first, as
// they were written to the console; n <= 0 returns all that are kept.
func (s *Service) Lines(n int) []string { return s.ring.last(n) }

// Run starts the process and restarts it whenever it exits, until ctx is
// done or Stop is called; either way the running process is stopped (TERM,
// then KILL) before Run returns. Run returns at once if the service is
// already running or has been stopped.
func (s *Service) Run(ctx context.Context) {
	s.mu.Lock()
	if s.runDone != nil || s.stopping {
		s.mu.Unlock()
		return
	}
	done := make(chan struct{})
	s.runDone = done
	s.mu.Unlock()

	defer func() {
		s.mu.Lock()
		s.state = StateStopped
		s.pid = 0
		s.mu.Unlock()
		s.event("stopped")
		close(done)
	}()

	var delay time.Duration
	for {
		if s.shuttingDown(ctx) {
			return
		}
		uptime, shutdown, restart := s.runOnce(ctx)
		if shutdown || s.shuttingDown(ctx) {
			return
		}
		if restart {
			// Asked for (restart, deploy): no backoff, and it does not
			// count as a crash.
			delay = 0
			continue
		}

		delay = s.opts.Backoff.Next(delay, uptime)
		s.mu.Lock()
		s.restarts++
		n := s.restarts
		s.state = StateBackoff
		s.mu.Unlock()
		s.event("restarting in %s (restart #%d)", fmtDuration(delay), n)

		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.restartCh:
			// Restart or deploy during the backoff: start now. runOnce
			// drains the channel, so put the request back for it.
			t.Stop()
			s.restartCh <- struct{}{}
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.stopCh:
			t.Stop()
			return
		}
	}
}

func (s *Service) shuttingDown(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-s.stopCh:
		return true
	default:
		return false
	}
}

// runOnce starts the process and waits until it has exited and its output
// has been read. It returns how long the process ran and whether it ended
// because the service is shutting down.
func (s *Service) runOnce(ctx context.Context) (uptime time.Duration, shutdown, restart bool) {
	s.mu.Lock()
	s.state = StateStarting
	// A restart asked for before this start is satisfied by it.
	select {
	case <-s.restartCh:
	default:
	}
	// Read under the lock: SetCommand may change them between starts.
	spec := StartSpec{
		Path: s.opts.Path,
		Args: s.opts.Args,
		Dir:  s.opts.Dir,
		Env:  s.opts.Env,
		UID:  s.opts.UID,
		GID:  s.opts.GID,
	}
	if s.opts.Sandbox != nil {
		sb := *s.opts.Sandbox
		spec.Sandbox = &sb
	}
	s.mu.Unlock()

	since := faultClock()
	p, err := s.starter.Start(spec)
	if err != nil {
		msg := fmt.Sprintf("failed to start: %v", err)
		s.mu.Lock()
		s.lastExit = msg
		s.mu.Unlock()
		s.event("%s", msg)
		return 0, false, false
	}

	started := time.Now()
	s.mu.Lock()
	s.state = StateRunning
	s.pid = p.PID()
	s.startedAt = started
	s.mu.Unlock()
	s.event("started (pid %d)", p.PID())

	var pumps sync.WaitGroup
	pumps.Add(2)
	crash.Go(s.name+" stdout", func() { defer pumps.Done(); s.pump(p.Stdout(), s.name+": ") })
	crash.Go(s.name+" stderr", func() { defer pumps.Done(); s.pump(p.Stderr(), s.name+"[err]: ") })

	var st ExitStatus
	var stopErr error
	select {
	case st = <-p.Exited():
	case <-ctx.Done():
		shutdown = true
		st, stopErr = s.terminate(p, s.opts.StopGrace, "stop")
	case <-s.stopCh:
		shutdown = true
		st, stopErr = s.terminate(p, s.stopGrace(), "stop")
	case <-s.restartCh:
		restart = true
		st, stopErr = s.terminate(p, s.opts.StopGrace, "restart")
	}
	uptime = time.Since(started)
	if st.Signal == syscall.SIGILL {
		st.FaultFile = faultFile(since)
	}

	// Whatever the leader left behind in its group goes with it: the next
	// run must start clean, and the leftovers would hold the output pipes
	// open. ErrNoProcess (nothing left) is the normal case.
	_ = p.Signal(syscall.SIGKILL)
	s.drain(p, &pumps)

	reason := st.String()
	if stopErr != nil {
		reason = stopErr.Error()
	}
	s.mu.Lock()
	s.pid = 0
	s.lastExit = reason
	if stopErr != nil {
		s.stopErr = stopErr
	}
	s.mu.Unlock()
	s.event("%s after %s", reason, fmtDuration(uptime))
	return uptime, shutdown, restart
}

// drain waits for the output readers to reach EOF, closing the pipes if that
// takes too long (see drainWait).
func (s *Service) drain(p Process, pumps *sync.WaitGroup) {
	done := make(chan struct{})
	crash.Go(s.name+" drain", func() { pumps.Wait(); close(done) })
	t := time.NewTimer(drainWait)
	select {
	case <-done:
		t.Stop()
	case <-t.C:
		s.event("output still open %s after exit; closing it", fmtDuration(drainWait))
	}
	p.Stdout().Close()
	p.Stderr().Close()
	<-done
}

// terminate sends TERM to the process group, then KILL once grace has passed,
// and waits for the leader's exit status.
func (s *Service) terminate(p Process, grace time.Duration, reason string) (ExitStatus, error) {
	if s.opts.BeforeStop != nil {
		done := make(chan struct{})
		crash.Go(s.name+" before stop", func() { defer close(done); s.opts.BeforeStop(reason) })
		select {
		case <-done:
		case st := <-p.Exited():
			// It finished draining and exited by itself.
			<-done
			return st, nil
		}
	}
	s.event("stopping pid %d (TERM, KILL after %s)", p.PID(), fmtDuration(grace))
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, ErrNoProcess) {
		s.event("%v", err)
	}
	t := time.NewTimer(grace)
	select {
	case st := <-p.Exited():
		t.Stop()
		return st, nil
	case <-t.C:
	}
	s.event("pid %d still running %s after TERM; sending KILL", p.PID(), fmtDuration(grace))
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, ErrNoProcess) {
		s.event("%v", err)
	}
	t = time.NewTimer(killWait)
	defer t.Stop()
	select {
	case st := <-p.Exited():
		return st, nil
	case <-t.C:
		return ExitStatus{}, fmt.Errorf("%s: pid %d still running %s after KILL", s.name, p.PID(), fmtDuration(killWait))
	}
}

func (s *Service) stopGrace() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grace
}

// Stop makes Run stop the process — TERM to its process group, KILL after
// grace — and not restart it, and waits for Run to return. It returns an
// error if the process could not be made to exit. Stop before Run makes Run
// return at once; calling Stop again only waits.
func (s *Service) Stop(grace time.Duration) error {
	s.mu.Lock()
	if !s.stopping {
		s.stopping = true
		s.grace = grace
		close(s.stopCh)
	}
	done := s.runDone
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopErr
}

// StopAll stops the services in parallel, each with the given grace, and
// returns when all have stopped; failures are reported through each
// service's log. Used at poweroff, where serial stops would add up the
// graces.
func StopAll(services []*Service, grace time.Duration) {
	var wg sync.WaitGroup
	for _, s := range services {
		if s == nil {
			continue
		}
		wg.Add(1)
		crash.Go(s.name+" stop", func() {
			defer wg.Done()
			if err := s.Stop(grace); err != nil {
				s.event("stop failed: %v", err)
			}
		})
	}
	wg.Wait()
}

// event reports a supervisor message about this service (see Options.Log)
// and records it in the ring buffer, so that Lines shows why the app
// restarted next to what it printed before.
func (s *Service) event(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	line := s.name + "[init]: " + msg
	s.ring.add(line)
	if s.opts.Log != nil {
		s.opts.Log("%s: %s", s.name, msg)
		return
	}
	s.writeConsole(line)
}

// fmtDuration renders durations the way an operator reads them: "10ms",
// "0.2s", "4s", "60s", and "1h2m3s" for long uptimes.
func fmtDuration(d time.Duration) string {
	switch {
	case d < 100*time.Millisecond:
		return d.Round(time.Millisecond).String()
	case d < 2*time.Minute:
		return fmt.Sprintf("%gs", float64(d.Round(100*time.Millisecond))/float64(time.Second))
	default:
		return d.Round(time.Second).String()
	}
}
