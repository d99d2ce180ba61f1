package mempressure

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type finding struct{ app, msg string }

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func events(high, max, oomKill int) string {
	return fmt.Sprintf("low 0\nhigh %d\nmax %d\noom %d\noom_kill %d\noom_group_kill 0\n", high, max, oomKill, oomKill)
}

func meminfo(totalKB, availKB int) string {
	return fmt.Sprintf("MemTotal:       %d kB\nMemFree:        1000 kB\nMemAvailable:   %d kB\n", totalKB, availKB)
}

// TestAppCgroup: each rise of memory.events' high, max or oom_kill counters
// is one finding naming the app and what happened; nothing new is nothing;
// a missing file (no cgroup) is skipped; counters that went down (a fresh
// cgroup after a restart) start again from zero.
func TestAppCgroup(t *testing.T) {
	dir := t.TempDir()
	web := filepath.Join(dir, "web.events")
	write(t, web, events(0, 0, 0))
	var got []finding
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := &Watcher{
		Apps: func() map[string]string { return map[string]string{"web": web, "gone": filepath.Join(dir, "none")} },
		Emit: func(app, msg string) { got = append(got, finding{app, msg}) },
		// Each check a report's interval after the last: this test is
		// about what is counted, TestRateLimit about when it is said.
		Now: func() time.Time { now = now.Add(2 * DefaultEvery); return now },
	}
	w.Check()
	if len(got) != 0 {
		t.Fatalf("quiet cgroup: %v", got)
	}
	write(t, web, events(3, 0, 0))
	w.Check()
	if len(got) != 1 || got[0].app != "web" || !strings.Contains(got[0].msg, "app web memory pressure: above its memoryHigh, throttled 3 time(s)") {
		t.Fatalf("after high events: %v", got)
	}
	w.Check()
	if len(got) != 1 {
		t.Fatalf("unchanged counters reported again: %v", got[1:])
	}
	write(t, web, events(4, 2, 1))
	w.Check()
	if len(got) != 2 || !strings.Contains(got[1].msg, "throttled 1 time(s); at its memory limit 2 time(s); 1 process(es) killed by the OOM killer") {
		t.Fatalf("after max and oom_kill: %v", got)
	}
	write(t, web, events(1, 0, 0))
	w.Check()
	if len(got) != 3 || !strings.Contains(got[2].msg, "throttled 1 time(s)") {
		t.Fatalf("after a fresh cgroup: %v", got)
	}
}

// TestNode: MemAvailable under a tenth of MemTotal is one finding for the
// node (app ""), not repeated while it stays low or hovers near the line,
// and reported again after it recovered.
func TestNode(t *testing.T) {
	mi := filepath.Join(t.TempDir(), "meminfo")
	var got []finding
	w := &Watcher{MemInfo: mi, Emit: func(app, msg string) { got = append(got, finding{app, msg}) }}
	step := func(availKB int) {
		write(t, mi, meminfo(1<<20, availKB))
		w.Check()
	}
	step(500 << 10)
	step(100 << 10)
	if len(got) != 1 || got[0].app != "" || got[0].msg != "node memory low: 100 MiB of 1024 MiB available" {
		t.Fatalf("low memory: %v", got)
	}
	step(50 << 10)
	step(120 << 10) // above Low, below Recovered: still the same episode
	step(90 << 10)
	if len(got) != 1 {
		t.Fatalf("one episode reported %d times: %v", len(got), got)
	}
	step(400 << 10)
	step(60 << 10)
	if len(got) != 2 {
		t.Fatalf("a second episode: %v", got)
	}
}

// TestRateLimit: an app that stays above its memoryHigh raises "high" at
// every check; the first rise is said at once, the next ones are added up
// and said once the interval has passed, with how long they took; an OOM
// kill is said at once; after a quiet interval, a new rise is said at once
// again, as a first one.
func TestRateLimit(t *testing.T) {
	web := filepath.Join(t.TempDir(), "web.events")
	var got []finding
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := &Watcher{
		Apps: func() map[string]string { return map[string]string{"web": web} },
		Emit: func(app, msg string) { got = append(got, finding{app, msg}) },
		Now:  func() time.Time { return now },
	}
	high := 0
	check := func(rise int) {
		high += rise
		write(t, web, events(high, 0, 0))
		w.Check()
		now = now.Add(2 * time.Second)
	}
	check(0)
	check(5)
	if len(got) != 1 || got[0].msg != "app web memory pressure: above its memoryHigh, throttled 5 time(s)" {
		t.Fatalf("first crossing: %v", got)
	}
	// 29 more checks, each with a rise, in the following 58 s: nothing.
	for i := 0; i < 29; i++ {
		check(2)
	}
	if len(got) != 1 {
		t.Fatalf("reported again within a minute: %v", got[1:])
	}
	// The check a minute after the first report says the sum.
	check(2)
	if len(got) != 2 || got[1].msg != "app web memory pressure (still, in the last 1m0s): above its memoryHigh, throttled 60 time(s)" {
		t.Fatalf("summary after a minute: %v", got)
	}
	// An OOM kill does not wait, and carries the rises before it.
	check(1)
	write(t, web, events(high, 0, 1))
	w.Check()
	if len(got) != 3 || got[2].msg != "app web memory pressure (still, in the last 4s): above its memoryHigh, throttled 1 time(s); 1 process(es) killed by the OOM killer" {
		t.Fatalf("OOM kill: %v", got)
	}
	// Quiet for ten minutes, then a new crossing: at once, as a first one.
	now = now.Add(10 * time.Minute)
	write(t, web, events(high+3, 0, 1))
	w.Check()
	if len(got) != 4 || got[3].msg != "app web memory pressure: above its memoryHigh, throttled 3 time(s)" {
		t.Fatalf("new crossing after a quiet time: %v", got)
	}
}
