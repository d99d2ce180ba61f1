// Package mempressure tells when memory runs short: an app's own cgroup
// (memory.events: its memoryHigh throttled it, it reached its memory
// limit, the OOM killer took a process) or the whole node (MemAvailable
// in /proc/meminfo below a tenth of the RAM). PID 1 turns what it finds
// into "memory" events for require('nodeboot')'s events().
//
// Why these sources and not PSI (/proc/pressure/memory with poll
// triggers): the node's kernel is built from allnoconfig and has no
// CONFIG_PSI, and adding it would change every kernel and cost its
// accounting on each task switch. memory.events counts exactly what the
// limits an app was given in nodeboot.json do to it, which is what the app
// can act on (drop caches, refuse work). The files are read every few
// seconds rather than watched: a restarted app's cgroup may be a new
// directory, which an inotify watch on the old one would miss, and the
// read is a few hundred bytes per app.
package mempressure

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Thresholds of the node-wide check, as fractions of MemTotal: below Low
// is pressure; it is reported again only once MemAvailable was back above
// Recovered (no event per check while it hovers near the line).
const (
	Low       = 0.10
	Recovered = 0.15
)

// counters are the memory.events lines a watcher reports.
type counters struct{ high, max, oom, oomKill int64 }

// DefaultEvery is how often at most an app's pressure is reported while
// it lasts: an app that stays above its memoryHigh raises "high" on every
// check, and a line (and an event) every few seconds would flood the
// console, the log shipper and the app's own handler.
const DefaultEvery = time.Minute

// appState is what the watcher remembers of one app.
type appState struct {
	last     counters  // as read at the last check
	pending  counters  // risen since the last report, not yet reported
	reported time.Time // the last report; zero: never
}

// Watcher checks its sources each time Check is called.
type Watcher struct {
	// Apps returns each app's memory.events path (a missing file is
	// skipped: an app without a cgroup, or a kernel without memcg).
	Apps func() map[string]string
	// MemInfo is /proc/meminfo's path; "" skips the node-wide check.
	MemInfo string
	// Emit receives each finding: app "" is the node.
	Emit func(app, message string)
	// Every is the least time between two reports of one app (default
	// DefaultEvery): the first rise is reported at once, the rises
	// during the next Every are added up and reported together at the
	// first check after it. An OOM kill is reported at once: a process
	// of the app died.
	Every time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	apps map[string]*appState
	low  bool
}

// Check reads every source once and emits what got worse since the last
// Check.
func (w *Watcher) Check() {
	if w.apps == nil {
		w.apps = map[string]*appState{}
	}
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	every := w.Every
	if every <= 0 {
		every = DefaultEvery
	}
	if w.Apps != nil {
		files := w.Apps()
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, app := range names {
			b, err := os.ReadFile(files[app])
			if err != nil {
				continue
			}
			c := parseEvents(b)
			st := w.apps[app]
			if st == nil {
				st = &appState{}
				w.apps[app] = st
			}
			prev := st.last
			st.last = c
			if c.high < prev.high || c.max < prev.max || c.oomKill < prev.oomKill {
				// A new cgroup (the app restarted into a fresh one):
				// its counters start again from zero.
				prev = counters{}
			}
			st.pending.add(prev, c)
			if st.pending == (counters{}) {
				continue
			}
			t := now()
			if due := st.reported.IsZero() || t.Sub(st.reported) >= every || st.pending.oomKill > 0; !due {
				continue // added up, reported once every has passed
			}
			msg := describe(app, counters{}, st.pending)
			if !st.reported.IsZero() && t.Sub(st.reported) < 2*every {
				// Still under pressure since the last report: say
				// over how long these rises came.
				msg = strings.Replace(msg, " memory pressure: ", fmt.Sprintf(" memory pressure (still, in the last %v): ", t.Sub(st.reported).Round(time.Second)), 1)
			}
			st.pending, st.reported = counters{}, t
			w.Emit(app, msg)
		}
	}
	if w.MemInfo != "" {
		if b, err := os.ReadFile(w.MemInfo); err == nil {
			total, avail := parseMemInfo(b)
			if total > 0 {
				frac := float64(avail) / float64(total)
				switch {
				case !w.low && frac < Low:
					w.low = true
					w.Emit("", fmt.Sprintf("node memory low: %d MiB of %d MiB available", avail>>20, total>>20))
				case w.low && frac > Recovered:
					w.low = false
				}
			}
		}
	}
}

// add adds the rises from prev to c that describe reports.
func (p *counters) add(prev, c counters) {
	p.high += max(c.high-prev.high, 0)
	p.max += max(c.max-prev.max, 0)
	p.oomKill += max(c.oomKill-prev.oomKill, 0)
}

// describe says what changed from prev to c, "" when nothing did.
func describe(app string, prev, c counters) string {
	var what []string
	if d := c.high - prev.high; d > 0 {
		what = append(what, fmt.Sprintf("above its memoryHigh, throttled %d time(s)", d))
	}
	if d := c.max - prev.max; d > 0 {
		what = append(what, fmt.Sprintf("at its memory limit %d time(s)", d))
	}
	if d := c.oomKill - prev.oomKill; d > 0 {
		what = append(what, fmt.Sprintf("%d process(es) killed by the OOM killer", d))
	}
	if len(what) == 0 {
		return ""
	}
	return fmt.Sprintf("app %s memory pressure: %s", app, strings.Join(what, "; "))
}

// Run calls Check every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		w.Check()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// parseEvents reads a cgroup's memory.events ("key value" lines).
func parseEvents(b []byte) counters {
	var c counters
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "high":
			c.high = n
		case "max":
			c.max = n
		case "oom":
			c.oom = n
		case "oom_kill":
			c.oomKill = n
		}
	}
	return c
}

// parseMemInfo returns MemTotal and MemAvailable in bytes.
func parseMemInfo(b []byte) (total, avail uint64) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "MemTotal:":
			total = n << 10
		case "MemAvailable:":
			avail = n << 10
		}
	}
	return total, avail
}
