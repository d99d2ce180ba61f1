package clock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Setter that records what was asked of it.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	sets  []time.Time
	slews []time.Duration
	err   error
}

func (f *fakeClock) Now() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }
func (f *fakeClock) Set(t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.sets = append(f.sets, t)
	f.now = t
	return nil
}
func (f *fakeClock) Slew(d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.slews = append(f.slews, d)
	return nil
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) log(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.b, format+"\n", args...)
}
func (l *logBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

var (
	y2001 = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	later = MinimumTime.Add(90 * 24 * time.Hour)
)

func newTest(t *testing.T, now time.Time, saved string) (*Clock, *fakeClock, *logBuf, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nodeboot", "clock")
	if saved != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(saved), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := &fakeClock{now: now}
	l := &logBuf{}
	return New(Options{System: f, Path: path, Log: l.log}), f, l, path
}

func TestRestore(t *testing.T) {
	valid := string(FormatSaved(later))
	for _, tc := range []struct {
		name   string
		now    time.Time
		saved  string
		floor  time.Time
		want   time.Time // zero: not set
		source string
		logHas string
	}{
		{name: "saved time later than the clock", now: y2001, saved: valid, want: later, source: "saved time"},
		{name: "no saved file: the minimum floor", now: y2001, want: MinimumTime, source: "build time", logHas: "first boot"},
		{name: "build time above the saved time", now: y2001, saved: valid, floor: later.Add(time.Hour), want: later.Add(time.Hour), source: "build time"},
		{name: "clock already later: never backwards", now: later.Add(time.Minute), saved: valid, logHas: "kept"},
		{name: "corrupt file ignored", now: y2001, saved: "garbage\n", want: MinimumTime, source: "build time", logHas: "ignoring the saved time"},
		{name: "truncated file ignored", now: y2001, saved: valid[:10], want: MinimumTime, source: "build time", logHas: "no final newline"},
		{name: "empty file ignored", now: y2001, saved: "\x00", want: MinimumTime, source: "build time", logHas: "ignoring the saved time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, f, l, _ := newTest(t, tc.now, tc.saved)
			c.floor = maxTime(c.floor, tc.floor)
			if err := c.Restore(); err != nil {
				t.Fatal(err)
			}
			if tc.want.IsZero() {
				if len(f.sets) != 0 {
					t.Fatalf("clock set to %v; want it left alone", f.sets)
				}
			} else if len(f.sets) != 1 || !f.sets[0].Equal(tc.want) {
				t.Fatalf("sets = %v, want [%v]", f.sets, tc.want)
			}
			if st := c.State(); st.Source != tc.source {
				t.Errorf("source %q, want %q", st.Source, tc.source)
			}
			if !strings.Contains(l.String(), tc.logHas) {
				t.Errorf("log %q lacks %q", l.String(), tc.logHas)
			}
		})
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func TestRestoreSetFails(t *testing.T) {
	c, f, _, _ := newTest(t, y2001, "")
	f.err = errors.New("operation not permitted")
	err := c.Restore()
	if err == nil || !strings.Contains(err.Error(), "setting the clock forward") || !strings.Contains(err.Error(), "not permitted") {
		t.Fatalf("err = %v", err)
	}
}

func TestSaveAtomicAndNeverBackwards(t *testing.T) {
	c, f, _, path := newTest(t, y2001, string(FormatSaved(later)))
	if err := c.Restore(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.now = later.Add(-time.Hour) // something set the clock back behind our back
	f.mu.Unlock()
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseSaved(b); err != nil || !got.Equal(later) {
		t.Fatalf("saved %q (%v), want %v: an unsynced clock must not save an earlier time", b, err, later)
	}
	// No temporary file left beside it: the write went through a rename.
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Fatalf("dir holds %d entries, want only the clock file", len(ents))
	}
	// After an NTP answer the corrected (earlier) time is saved.
	if err := c.Adjust("ntp.example", -2*time.Hour); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if got, _ := ParseSaved(b); !got.Equal(later.Add(-3 * time.Hour)) {
		t.Fatalf("after NTP saved %q, want %v", b, later.Add(-3*time.Hour))
	}
}

func TestSaveAtomicOverReadOnlyDir(t *testing.T) {
	// A save that cannot write leaves the old file whole.
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions")
	}
	c, _, _, path := newTest(t, later, string(FormatSaved(MinimumTime)))
	os.Chmod(filepath.Dir(path), 0o555)
	defer os.Chmod(filepath.Dir(path), 0o755)
	if err := c.Save(); err == nil {
		t.Fatal("save into a read-only dir succeeded")
	}
	b, _ := os.ReadFile(path)
	if _, err := ParseSaved(b); err != nil {
		t.Fatalf("old file damaged: %v", err)
	}
}

func TestAdjustStepsOrSlews(t *testing.T) {
	var synced []State
	c, f, l, _ := newTest(t, later, "")
	c.onSync = func(s State) { synced = append(synced, s) }
	select {
	case <-c.Synced():
		t.Fatal("synced before any answer")
	default:
	}
	if err := c.Adjust("10.0.2.2", 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	if len(f.sets) != 1 || !f.sets[0].Equal(later.Add(3*time.Hour)) || len(f.slews) != 0 {
		t.Fatalf("big offset: sets %v slews %v, want one step", f.sets, f.slews)
	}
	if err := c.Adjust("10.0.2.2", 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if len(f.sets) != 1 || len(f.slews) != 1 || f.slews[0] != 20*time.Millisecond {
		t.Fatalf("small offset: sets %v slews %v, want one slew", f.sets, f.slews)
	}
	select {
	case <-c.Synced():
	default:
		t.Fatal("Synced not closed after an answer")
	}
	st := c.State()
	if !st.Synced || st.Source != "10.0.2.2" || st.Offset != 20*time.Millisecond || st.LastSync.IsZero() || st.Saved.IsZero() {
		t.Fatalf("state %+v", st)
	}
	if len(synced) != 2 || !synced[0].Synced {
		t.Fatalf("OnSync calls %+v", synced)
	}
	if strings.Count(l.String(), "clock synced") != 1 {
		t.Fatalf("log %q: want one \"clock synced\" line", l.String())
	}
}

func TestRunSavesAtStop(t *testing.T) {
	c, f, _, path := newTest(t, later, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx, time.Hour); close(done) }()
	// The first save happens at once; wait for the file.
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.mu.Lock()
	f.now = later.Add(time.Hour)
	f.mu.Unlock()
	cancel()
	<-done
	b, _ := os.ReadFile(path)
	if got, err := ParseSaved(b); err != nil || !got.Equal(later.Add(time.Hour)) {
		t.Fatalf("after stop saved %q (%v), want %v", b, err, later.Add(time.Hour))
	}
}

// A /data that cannot be written fails every save alike: logged once.
func TestRunLogsARepeatedFailureOnce(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "nodeboot")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil { // a file where the dir should be
		t.Fatal(err)
	}
	l := &logBuf{}
	c := New(Options{System: &fakeClock{now: later}, Path: filepath.Join(blocker, "clock"), Log: l.log})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // Run saves at once and again at the stop: two failures
	c.Run(ctx, time.Hour)
	if n := strings.Count(l.String(), "saving the time"); n != 1 {
		t.Fatalf("the failure was logged %d times, want once:\n%s", n, l.String())
	}
}
