package crash

import (
	"fmt"
	"strings"
	"time"
)

// Sequence is what PID 1 does when it cannot go on: stop the apps (so
// they can flush their own state), sync, leave the reason on the console
// for Delay, and reboot. Every step is a function so the order can be
// tested with fakes; PID 1 fills them with the supervisor, sync(2) and
// reboot(2).
type Sequence struct {
	Log func(format string, args ...any)
	// StopApps stops every app: TERM, its grace, KILL. It may hang when
	// the panic broke the supervisor (a dead reaper never reports an
	// exit), so it gets StopWait, then KillAll runs.
	StopApps func()
	StopWait time.Duration
	// KillAll sends SIGKILL to every process but PID 1.
	KillAll func()
	// Flush drains the console, so the reason is on screen before the
	// reboot.
	Flush  func()
	Sync   func()
	Delay  time.Duration
	Sleep  func(time.Duration)
	Reboot func() // does not return
}

// Panic is a Handler: it logs the panic with its stack, then runs Fatal.
func (s *Sequence) Panic(name string, value any, stack []byte) {
	s.Log("PANIC in %s: %v", name, value)
	for _, l := range strings.Split(strings.TrimRight(string(stack), "\n"), "\n") {
		s.Log("  %s", l)
	}
	s.Fatal(fmt.Errorf("panic in %s: %v", name, value))
}

// Fatal stops the apps, syncs and reboots after Delay. It does not return
// unless Reboot does.
func (s *Sequence) Fatal(err error) {
	s.Log("FATAL: %v", err)
	s.stopApps()
	s.Sync()
	s.Log("rebooting in %v", s.Delay)
	s.Flush()
	s.Sleep(s.Delay)
	s.Reboot()
}

func (s *Sequence) stopApps() {
	if s.StopApps == nil {
		return
	}
	stopped := make(chan bool, 1)
	// A bare goroutine on purpose: this is the crash path itself, and a
	// panic in StopApps is caught here, not handed back to the handler.
	go func() {
		defer func() {
			if v := recover(); v != nil {
				s.Log("stopping the apps panicked too: %v", v)
				stopped <- false
			}
		}()
		s.StopApps()
		stopped <- true
	}()
	t := time.NewTimer(s.StopWait)
	defer t.Stop()
	select {
	case ok := <-stopped:
		if ok {
			return
		}
	case <-t.C:
		s.Log("the apps did not stop within %v", s.StopWait)
	}
	s.Log("killing every process")
	if s.KillAll != nil {
		s.KillAll()
	}
}
