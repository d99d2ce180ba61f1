package pid1

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodeboot/nodeboot/internal/boot"
	"github.com/nodeboot/nodeboot/internal/crash"
	"github.com/nodeboot/nodeboot/internal/supervise"
)

// running holds the services started so far: what a panic or a fatal
// error stops before the reboot.
var running struct {
	mu       sync.Mutex
	services []*supervise.Service
}

func registerService(s *supervise.Service) {
	running.mu.Lock()
	defer running.mu.Unlock()
	running.services = append(running.services, s)
}

func runningServices() []*supervise.Service {
	running.mu.Lock()
	defer running.mu.Unlock()
	return append([]*supervise.Service(nil), running.services...)
}

// crashStopWait is how long the crash path lets the supervisor stop the
// apps: the grace, the KILL wait and the output drain of supervise, and a
// margin. Longer means the supervisor itself is broken.
const crashStopWait = stopGrace + 15*time.Second

// crashSequence is what PID 1 does on a panic in any of its goroutines
// (issue 12 item 11; Talos machined's recovery() does the same) and on a
// fatal error: stop the apps (TERM, grace, KILL), sync, leave the reason
// on the console for fatalDelay, and reboot.
func crashSequence(log *boot.Logger) *crash.Sequence {
	return &crash.Sequence{
		Log: log.Printf,
		StopApps: func() {
			supervise.StopAll(runningServices(), stopGrace)
			closeDataFiles(log) // so that the reboot can unmount /data
		},
		StopWait: crashStopWait,
		// kill(-1) from PID 1 reaches every process but itself: the
		// sandbox helpers, and through them each app's PID namespace.
		KillAll: func() { _ = unix.Kill(-1, unix.SIGKILL) },
		Flush:   func() { log.Flush(5 * time.Second) },
		Sync:    unix.Sync,
		Delay:   fatalDelay,
		Sleep:   time.Sleep,
		Reboot:  func() { boot.Halt(boot.Reboot, log.Printf, func() { log.Flush(5 * time.Second) }) },
	}
}

// goSafe starts f in a goroutine whose panic goes to the crash sequence
// (crash.Go): the way every goroutine of PID 1 starts.
func goSafe(name string, f func()) { crash.Go(name, f) }
