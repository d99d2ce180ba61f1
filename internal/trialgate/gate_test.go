package trialgate

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeClock advances only when the gate sleeps.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time        { return c.now }
func (c *fakeClock) Sleep(d time.Duration) { c.now = c.now.Add(d) }

// fakeApp is healthy from t0+healthyAt until t0+sickAt (zero: never
// healthy / never sick again), restarted as restarts says at each time.
type fakeApp struct {
	clock     *fakeClock
	t0        time.Time
	healthyAt time.Duration // < 0: never healthy
	sickFrom  time.Duration // > 0: unhealthy again from then on, for sickFor
	sickFor   time.Duration
	restarts  func(elapsed time.Duration) int
	line      string
}

func (a *fakeApp) elapsed() time.Duration { return a.clock.Now().Sub(a.t0) }

func (a *fakeApp) Restarts() int {
	if a.restarts == nil {
		return 0
	}
	return a.restarts(a.elapsed())
}
func (a *fakeApp) LastExit() string { return "exit status 3" }
func (a *fakeApp) LastLine() string { return a.line }
func (a *fakeApp) Healthy() error {
	e := a.elapsed()
	if a.healthyAt < 0 || e < a.healthyAt {
		return errors.New("port 8080: connection refused")
	}
	if a.sickFrom > 0 && e >= a.sickFrom && e < a.sickFrom+a.sickFor {
		return errors.New("port 8080: connection refused")
	}
	return nil
}

type fakeTrial struct {
	notes     []string
	committed bool
	failed    string
	clock     *fakeClock
	at        time.Duration // when it ended, from t0
	t0        time.Time
}

func (f *fakeTrial) Note(l string) error { f.notes = append(f.notes, l); return nil }
func (f *fakeTrial) Commit() (string, error) {
	f.committed, f.at = true, f.clock.Now().Sub(f.t0)
	return "committed", nil
}
func (f *fakeTrial) Fail(r string) error { f.failed, f.at = r, f.clock.Now().Sub(f.t0); return nil }

func TestGate(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	s := time.Second
	for _, c := range []struct {
		name     string
		apps     map[string]*fakeApp // nil entry: not started
		names    []string
		degraded string
		commit   bool
		at       time.Duration // when the trial ended
		reason   string
		notes    []string // a prefix of the notes
	}{
		{name: "healthy for 30 s commits", names: []string{"web"}, apps: map[string]*fakeApp{"web": {healthyAt: 12 * s}},
			commit: true, at: 42 * s, notes: []string{"apps started: web", "app web healthy"}},
		{name: "a break restarts the 30 s", names: []string{"web"}, apps: map[string]*fakeApp{"web": {healthyAt: 5 * s, sickFrom: 20 * s, sickFor: 3 * s}},
			commit: true, at: 53 * s, notes: []string{"apps started: web", "app web healthy", "app web unhealthy: port 8080: connection refused; its last line: listening", "app web healthy"}},
		{name: "every app, together", names: []string{"web", "worker"}, apps: map[string]*fakeApp{"web": {healthyAt: 2 * s}, "worker": {healthyAt: 40 * s}},
			commit: true, at: 70 * s},
		{name: "never healthy fails at healthy + grace", names: []string{"web"}, apps: map[string]*fakeApp{"web": {healthyAt: -1}},
			at: 151 * s, reason: "app web did not become healthy within 2m30s: port 8080: connection refused; its last line: listening"},
		// Once every app answered, the window is twice healthySeconds from
		// then: a slow start (a loaded machine) then one break commits.
		{name: "a slow start, then a break, commits", names: []string{"web"}, apps: map[string]*fakeApp{"web": {healthyAt: 125 * s, sickFrom: 142 * s, sickFor: 3 * s}},
			commit: true, at: 175 * s},
		{name: "healthy late, then down, fails", names: []string{"web"}, apps: map[string]*fakeApp{"web": {healthyAt: 140 * s, sickFrom: 150 * s, sickFor: 100 * s}},
			at: 202 * s, reason: "the apps were not healthy together for 30s within 3m21s; app web is down: port 8080: connection refused; its last line: listening"},
		{name: "flapping fails", names: []string{"web"}, apps: map[string]*fakeApp{"web": {healthyAt: 5 * s, sickFrom: 25 * s, sickFor: 1000 * s}},
			at: 151 * s, reason: "the apps were not healthy together for 30s within 2m30s; app web is down: port 8080: connection refused; its last line: listening"},
		{name: "a crash loop fails at once", names: []string{"web"}, apps: map[string]*fakeApp{"web": {healthyAt: -1, restarts: func(e time.Duration) int { return int(e / (4 * s)) }}},
			at: 20 * s, reason: "app web crash-loops: restarted 5 times (last exit: exit status 3); its last line: listening"},
		{name: "an app not started fails", names: []string{"web", "worker"}, apps: map[string]*fakeApp{"web": {healthyAt: 0}},
			at: 0, reason: "app worker was not started"},
		{name: "no app started fails", names: []string{"web"}, apps: map[string]*fakeApp{},
			at: 0, reason: "no app could be started"},
		{name: "degraded fails at once", names: nil, apps: map[string]*fakeApp{}, degraded: "no app runs: runtime.json: unexpected EOF",
			at: 0, reason: "the node runs degraded: no app runs: runtime.json: unexpected EOF"},
		{name: "an image without apps commits", names: nil, apps: map[string]*fakeApp{}, commit: true, at: 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := &fakeClock{now: t0}
			apps := map[string]App{}
			for n, a := range c.apps {
				a.clock, a.t0, a.line = clock, t0, "listening"
				apps[n] = a
			}
			tr := &fakeTrial{clock: clock, t0: t0}
			var logged []string
			r := Run(Config{Healthy: 30 * s, Grace: 120 * s, CrashLoop: 5, Every: s, Degraded: c.degraded, Clock: clock,
				Log: func(f string, a ...any) { logged = append(logged, f) }}, tr, c.names, apps)
			if r.Committed != c.commit || tr.committed != c.commit || r.Reason != c.reason || tr.failed != c.reason {
				t.Fatalf("result %+v, trial committed %v failed %q; want commit %v reason %q", r, tr.committed, tr.failed, c.commit, c.reason)
			}
			if tr.at != c.at {
				t.Errorf("ended after %v, want %v", tr.at, c.at)
			}
			if len(tr.notes) < len(c.notes) || strings.Join(tr.notes[:len(c.notes)], "|") != strings.Join(c.notes, "|") {
				t.Errorf("notes %q, want them to start with %q", tr.notes, c.notes)
			}
		})
	}
}
