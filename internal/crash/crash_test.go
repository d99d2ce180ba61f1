package crash

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a Sequence whose steps are fakes that record their order.
type recorder struct {
	mu    sync.Mutex
	steps []string
	logs  []string
	// rebooted is closed by the fake Reboot, which then parks like the
	// real one never returning would.
	rebooted chan struct{}
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, s)
}

func (r *recorder) sequence(stopApps func()) *Sequence {
	r.rebooted = make(chan struct{})
	return &Sequence{
		Log: func(f string, a ...any) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.logs = append(r.logs, fmt.Sprintf(f, a...))
		},
		StopApps: stopApps,
		StopWait: time.Hour,
		KillAll:  func() { r.add("killall") },
		Flush:    func() { r.add("flush") },
		Sync:     func() { r.add("sync") },
		Delay:    10 * time.Second,
		Sleep:    func(d time.Duration) { r.add("sleep " + d.String()) },
		Reboot: func() {
			r.add("reboot")
			close(r.rebooted)
		},
	}
}

func (r *recorder) check(t *testing.T, want ...string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if got := strings.Join(r.steps, ", "); got != strings.Join(want, ", ") {
		t.Errorf("steps: %s\nwant:  %s", got, strings.Join(want, ", "))
	}
}

func (r *recorder) logged(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.logs {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func dhcpRenewal() { panic("index out of range in the lease") }

func TestPanicInGoroutineStopsSyncsReboots(t *testing.T) {
	r := &recorder{}
	seq := r.sequence(func() { r.add("stop apps") })
	SetHandler(seq.Panic)
	defer SetHandler(nil)

	Go("dhcp", dhcpRenewal)
	<-r.rebooted
	r.check(t, "stop apps", "sync", "flush", "sleep 10s", "reboot")
	for _, s := range []string{"PANIC in dhcp: index out of range in the lease", "crash.dhcpRenewal", "rebooting in 10s"} {
		if !r.logged(s) {
			t.Errorf("log lacks %q:\n%s", s, strings.Join(r.logs, "\n"))
		}
	}
}

// A panic that broke the supervisor leaves StopApps hanging: the node
// must still go down, killing what is left.
func TestHangingStopKillsEverything(t *testing.T) {
	r := &recorder{}
	seq := r.sequence(func() { select {} })
	seq.StopWait = time.Millisecond
	SetHandler(seq.Panic)
	defer SetHandler(nil)

	Go("supervisor", func() { panic(errors.New("nil map")) })
	<-r.rebooted
	r.check(t, "killall", "sync", "flush", "sleep 10s", "reboot")
}

func TestPanicWhileStoppingKillsEverything(t *testing.T) {
	r := &recorder{}
	seq := r.sequence(func() { panic("stop broke") })
	SetHandler(seq.Panic)
	defer SetHandler(nil)

	Go("api", func() { panic("boom") })
	<-r.rebooted
	r.check(t, "killall", "sync", "flush", "sleep 10s", "reboot")
	if !r.logged("stopping the apps panicked too: stop broke") {
		t.Error("the second panic was not logged")
	}
}

// Only the first panic runs the sequence; a second goroutine panicking
// meanwhile waits for the reboot instead of starting another.
func TestSecondPanicParks(t *testing.T) {
	r := &recorder{}
	release := make(chan struct{})
	seq := r.sequence(func() { r.add("stop apps"); <-release })
	SetHandler(seq.Panic)
	defer SetHandler(nil)

	Go("first", func() { panic("one") })
	for !r.has("stop apps") {
		time.Sleep(time.Millisecond)
	}
	before := parked()
	go func() {
		defer Recover("second")
		panic("two")
	}()
	// Release the first only once the second is parked in Recover.
	for parked() == before {
		time.Sleep(time.Millisecond)
	}
	close(release)
	<-r.rebooted
	r.check(t, "stop apps", "sync", "flush", "sleep 10s", "reboot")
}

// parked counts this test's second goroutines blocked for good in Recover
// (earlier runs' stay parked under -count). The check looks at one
// goroutine's stack at a time: over the whole dump it also matched the
// test's own goroutine beside another one parked, released the first too
// early, and the second's Recover then ran after the test had cleared the
// handler (a "repanicked" crash seen in a clean run).
func parked() int {
	buf := make([]byte, 1<<20)
	n := 0
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "[select (no cases)]") && strings.Contains(g, "TestSecondPanicParks.func") {
			n++
		}
	}
	return n
}

func (r *recorder) has(step string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.steps {
		if s == step {
			return true
		}
	}
	return false
}

func TestFatalStopsSyncsReboots(t *testing.T) {
	r := &recorder{}
	seq := r.sequence(func() { r.add("stop apps") })
	seq.Fatal(errors.New("mounting proc on /proc: no such device"))
	r.check(t, "stop apps", "sync", "flush", "sleep 10s", "reboot")
	if !r.logged("FATAL: mounting proc") {
		t.Error("the reason was not logged")
	}
}

// Without a handler (tests, the CLI) a panic is raised again, as if this
// package were not there.
func TestNoHandlerPanicsAgain(t *testing.T) {
	SetHandler(nil)
	defer func() {
		if v := recover(); v != "plain" {
			t.Errorf("recovered %v, want the original value", v)
		}
	}()
	func() {
		defer Recover("test")
		panic("plain")
	}()
}
