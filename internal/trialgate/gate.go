// Package trialgate is the health gate of an OS update's trial boot: PID 1
// runs it on a boot whose slot is on trial, and it ends the trial with a
// commit once every app has been healthy without a break for the
// configured time, or with a failure (and its reason) when an app
// crash-loops, never becomes healthy, or the node cannot run its apps at
// all. It knows nothing of processes or sockets: apps, the updater and the
// clock are small interfaces, so the decisions are tested with fakes.
package trialgate

import (
	"fmt"
	"strings"
	"time"
)

// App is one app of the trial, as its supervisor and its probe see it.
type App interface {
	// Restarts is how often the app's process was restarted this boot.
	Restarts() int
	// LastExit says why its last process ended ("" if none has).
	LastExit() string
	// Healthy probes it: nil when its process runs and its port accepts
	// (or its healthPath answers 2xx).
	Healthy() error
	// LastLine is its last line of output ("" if none).
	LastLine() string
}

// Trial is the updater's side of the trial boot (update.Updater).
type Trial interface {
	Note(line string) error
	// Commit ends the trial well; it returns what to log.
	Commit() (string, error)
	// Fail ends the trial badly (and reboots into the old slot).
	Fail(reason string) error
}

// Clock tells the time and waits; tests drive it by hand.
type Clock interface {
	Now() time.Time
	Sleep(time.Duration)
}

type systemClock struct{}

func (systemClock) Now() time.Time        { return time.Now() }
func (systemClock) Sleep(d time.Duration) { time.Sleep(d) }

// Config is one trial's gate.
type Config struct {
	// Healthy is how long every app must stay healthy (update.healthySeconds).
	Healthy time.Duration
	// Grace is what the apps get beyond Healthy to start and become
	// healthy: the trial fails at Healthy + Grace.
	Grace time.Duration
	// CrashLoop ends the trial at once when an app was restarted this
	// often: it is not going to become healthy.
	CrashLoop int
	// Every is how often each app is probed.
	Every time.Duration
	// Degraded is why the node runs degraded ("" if it does not): a trial
	// that cannot run its apps fails at once.
	Degraded string
	Clock    Clock
	// Log prints a line on the console.
	Log func(format string, args ...any)
}

// Result is how the gate ended the trial.
type Result struct {
	Committed bool
	Reason    string // the failure's reason
}

// Run runs the gate over the apps the image declares (names, in order) and
// those that were started (apps; a missing one was not started), until it
// commits or fails the trial.
func Run(cfg Config, tr Trial, names []string, apps map[string]App) Result {
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	if cfg.Every <= 0 {
		cfg.Every = time.Second
	}
	note := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		cfg.Log("trial: %s", line)
		if err := tr.Note(line); err != nil {
			cfg.Log("trial: recording a note: %v", err)
		}
	}
	fail := func(reason string) Result {
		if err := tr.Fail(reason); err != nil {
			cfg.Log("ending the trial: %v", err)
		}
		return Result{Reason: reason}
	}
	if cfg.Degraded != "" {
		return fail("the node runs degraded: " + cfg.Degraded)
	}
	if len(names) > 0 && len(apps) == 0 {
		return fail("no app could be started")
	}
	note("apps started: %s", strings.Join(names, ", "))
	start := cfg.Clock.Now()
	deadline := start.Add(cfg.Healthy + cfg.Grace)
	within := (cfg.Healthy + cfg.Grace).Round(time.Second)
	since := make([]time.Time, len(names)) // zero: not healthy now
	ever := make([]bool, len(names))
	extended := false
	lastErr := make([]string, len(names))
	for {
		now := cfg.Clock.Now()
		if !extended && len(names) > 0 && allTrue(ever) {
			// Every app answered once: the stability check gets its full
			// window, twice over for one break, however long a slow
			// machine took to get there (a loaded TCG guest took 125 s to
			// start node, then lost the window to one probe's timeout).
			extended = true
			if d := now.Add(2 * cfg.Healthy); d.After(deadline) {
				deadline = d
				within = d.Sub(start).Round(time.Second)
			}
		}
		all := true
		for i, name := range names {
			a := apps[name]
			if a == nil {
				return fail(fmt.Sprintf("app %s was not started", name))
			}
			if n := a.Restarts(); cfg.CrashLoop > 0 && n >= cfg.CrashLoop {
				return fail(fmt.Sprintf("app %s crash-loops: restarted %d times (last exit: %s)%s", name, n, orNone(a.LastExit()), lastLine(a)))
			}
			err := a.Healthy()
			switch {
			case err == nil && since[i].IsZero():
				since[i], ever[i] = now, true
				note("app %s healthy", name)
			case err != nil && !since[i].IsZero():
				since[i] = time.Time{}
				note("app %s unhealthy: %v%s", name, err, lastLine(a))
			}
			if err != nil {
				lastErr[i] = err.Error()
				all = false
			} else if now.Sub(since[i]) < cfg.Healthy {
				all = false
			}
		}
		if all {
			msg, err := tr.Commit()
			if err != nil {
				cfg.Log("committing the OS update: %v", err)
				return Result{Reason: err.Error()}
			}
			cfg.Log("%s", msg)
			return Result{Committed: true}
		}
		if now.After(deadline) {
			for i, name := range names {
				if !ever[i] {
					return fail(fmt.Sprintf("app %s did not become healthy within %v: %s%s", name, within, lastErr[i], lastLine(apps[name])))
				}
			}
			reason := fmt.Sprintf("the apps were not healthy together for %v within %v", cfg.Healthy, within)
			for i, name := range names {
				if since[i].IsZero() {
					reason += fmt.Sprintf("; app %s is down: %s%s", name, lastErr[i], lastLine(apps[name]))
					break
				}
			}
			return fail(reason)
		}
		cfg.Clock.Sleep(cfg.Every)
	}
}

func allTrue(b []bool) bool {
	for _, x := range b {
		if !x {
			return false
		}
	}
	return true
}

func lastLine(a App) string {
	if a == nil {
		return ""
	}
	if l := a.LastLine(); l != "" {
		return "; its last line: " + l
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
