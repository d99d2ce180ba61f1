package supervise

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/nodeboot/nodeboot/internal/crash"
)

// Reaper owns the reaping of every child of the process.
//
// PID 1 inherits every orphan in the system and must wait for them or they
// stay zombies forever. Doing that with wait4(-1) in one place while services
// call exec.Cmd.Wait (wait4(pid)) in another is a race: whichever call comes
// first consumes the exit status, so a service could lose its child's status
// to the orphan loop, or the loop could find nothing while a zombie sits
// there. The Reaper removes the race by being the only caller of wait: it
// reaps everything on SIGCHLD and hands the status of the PIDs registered
// through Spawn to their owners; everything else is an orphan and is only
// logged. Code that starts children in a process with an active Reaper must
// therefore start them through Spawn and never call Wait on them.
//
// There is at most one Reaper per process, since two wait4(-1) loops would
// steal each other's children.
type Reaper struct {
	logf      func(format string, args ...any)
	subreaper bool

	// mu is held while reaping and while a child is being started (Spawn).
	// Holding it across the start means the reaper cannot collect a child
	// that exits instantly before its PID is registered, so no status is ever
	// lost; it also keeps the reaper away from the child that os.StartProcess
	// itself waits for when the exec fails.
	mu      sync.Mutex
	waiters map[int]chan ExitStatus
	closed  bool

	sigc chan os.Signal
	quit chan struct{}
	done chan struct{}
}

// ReaperOptions configures NewReaper.
type ReaperOptions struct {
	// Log receives a line for every orphan reaped (a process that was not
	// started through Spawn); nil discards them.
	Log func(format string, args ...any)
	// Subreaper marks the process as a child subreaper
	// (prctl(PR_SET_CHILD_SUBREAPER)), so that orphaned descendants are
	// re-parented to it instead of to the real PID 1. PID 1 does not need
	// it; it lets tests and non-PID-1 supervisors see orphans.
	Subreaper bool
}

// ErrReaperActive is returned by NewReaper when the process already has one.
var ErrReaperActive = errors.New("supervise: a reaper is already active in this process")

// ErrReaperClosed is returned by Spawn after Close.
var ErrReaperClosed = errors.New("supervise: reaper is closed")

// The process-wide reaper, also used by the default Starter.
var (
	activeMu sync.Mutex
	active   *Reaper
)

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>; the
// syscall package does not define it.
const prSetChildSubreaper = 36

// wALL is __WALL: also reap children that do not report their death with
// SIGCHLD (clone children). PID 1 inherits whatever is orphaned, whatever
// its exit signal, and must not leave any zombie behind.
const wALL = 0x40000000

// NewReaper starts the process's reaper. It fails if one is already active.
func NewReaper(opts ReaperOptions) (*Reaper, error) {
	activeMu.Lock()
	defer activeMu.Unlock()
	if active != nil {
		return nil, ErrReaperActive
	}
	r, err := startReaper(opts)
	if err != nil {
		return nil, err
	}
	active = r
	return r, nil
}

// defaultReaper returns the active reaper, starting a silent one if there is
// none, so that Services work without explicit setup.
func defaultReaper() (*Reaper, error) {
	activeMu.Lock()
	defer activeMu.Unlock()
	if active != nil {
		return active, nil
	}
	r, err := startReaper(ReaperOptions{})
	if err != nil {
		return nil, err
	}
	active = r
	return r, nil
}

func startReaper(opts ReaperOptions) (*Reaper, error) {
	if opts.Subreaper {
		if err := setChildSubreaper(true); err != nil {
			return nil, err
		}
	}
	r := &Reaper{
		logf:      opts.Log,
		subreaper: opts.Subreaper,
		waiters:   make(map[int]chan ExitStatus),
		// One slot is enough: signals coalesce anyway, and every wakeup
		// drains all exited children.
		sigc: make(chan os.Signal, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	signal.Notify(r.sigc, syscall.SIGCHLD)
	crash.Go("reaper", r.loop)
	return r, nil
}

func setChildSubreaper(on bool) error {
	var arg uintptr
	if on {
		arg = 1
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, arg, 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER, %d): %w", arg, errno)
	}
	return nil
}

func (r *Reaper) loop() {
	defer close(r.done)
	// Children may have exited before signal.Notify took effect; their
	// SIGCHLD is gone, so look once without waiting for one.
	r.reap()
	for {
		select {
		case <-r.sigc:
			r.reap()
		case <-r.quit:
			return
		}
	}
}

// reap collects every child that has exited so far.
func (r *Reaper) reap() {
	type orphan struct {
		pid int
		st  ExitStatus
	}
	var orphans []orphan

	r.mu.Lock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG|wALL, nil)
		if err == syscall.EINTR {
			continue
		}
		// ECHILD: no children at all; pid 0: none has exited yet.
		if err != nil || pid <= 0 {
			break
		}
		st := exitStatusOf(ws)
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- st // buffered, never blocks
			continue
		}
		orphans = append(orphans, orphan{pid, st})
	}
	r.mu.Unlock()

	// Log outside the lock: the console can be slow and must not hold up
	// starting services.
	if r.logf != nil {
		for _, o := range orphans {
			r.logf("reaped orphan pid %d (%s)", o.pid, o.st)
		}
	}
}

func exitStatusOf(ws syscall.WaitStatus) ExitStatus {
	if ws.Signaled() {
		return ExitStatus{Code: -1, Signal: ws.Signal(), CoreDumped: ws.CoreDump()}
	}
	return ExitStatus{Code: ws.ExitStatus()}
}

// Spawn calls start, which must start exactly one child and return its PID,
// and registers that PID so its exit status is delivered on the returned
// channel (once) instead of being treated as an orphan's. start runs with the
// reaper lock held; see Reaper.mu. The caller must not wait for the child
// itself (no exec.Cmd.Wait, no os.Process.Wait).
func (r *Reaper) Spawn(start func() (pid int, err error)) (int, <-chan ExitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, nil, ErrReaperClosed
	}
	pid, err := start()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan ExitStatus, 1)
	r.waiters[pid] = ch
	return pid, ch, nil
}

// Close stops reaping and releases the process-wide slot so a new Reaper can
// be created. Children registered but not yet reaped never report. PID 1
// never closes its reaper; this exists for tests.
func (r *Reaper) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()

	signal.Stop(r.sigc)
	close(r.quit)
	<-r.done

	activeMu.Lock()
	if active == r {
		active = nil
	}
	activeMu.Unlock()

	if r.subreaper {
		return setChildSubreaper(false)
	}
	return nil
}
