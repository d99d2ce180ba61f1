// Package clock keeps the node's wall clock plausible on hardware without a
// real-time clock (a Raspberry Pi, some boards and VMs): it restores the time
// saved on /data at boot, never stepping the clock backwards, with the
// image's build time as a floor; saves the time periodically and at
// shutdown; and applies NTP answers (stepping when far off, slewing when
// close). A node that believes it is 1970 fails every TLS handshake with a
// registry (certificates are "not yet valid"), so the restore runs before
// anything that speaks TLS (issue 16).
//
// The Linux system clock lives in system_linux.go; everything else works on
// the Setter interface so the tests use a fake clock.
package clock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// SavedPath is where the node keeps its last known time.
const SavedPath = "/data/nodeboot/clock"

// SaveEvery is how often Run saves the time: a power cut loses at most this
// much, and on a flash card a write every 10 minutes costs nothing.
const SaveEvery = 10 * time.Minute

// StepThreshold is the offset above which an NTP answer steps the clock at
// once; below it the kernel slews it (adjtimex), so the time the apps see
// never jumps for a small correction.
const StepThreshold = 500 * time.Millisecond

// MinimumTime is the floor of every node built with this code: no node can
// be earlier than the day this was written. A build raises it with
// SOURCE_DATE_EPOCH (spec.Runtime.ClockFloor); the wall-clock time of the
// build cannot be used, or images would not be byte-identical.
var MinimumTime = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// Setter is the system clock.
type Setter interface {
	Now() time.Time
	// Set steps the clock to t.
	Set(t time.Time) error
	// Slew asks the kernel to correct the clock by d gradually.
	Slew(d time.Duration) error
}

// Options configure a Clock.
type Options struct {
	// System is the clock to keep; nil means the system clock.
	System Setter
	// Path is the saved-time file; empty means SavedPath.
	Path string
	// Floor is the earliest plausible time (the image's build time); the
	// later of it and MinimumTime is used.
	Floor time.Time
	// Log receives one line per event; nil discards them.
	Log func(format string, args ...any)
	// OnSync is called after every NTP answer that was applied, with the
	// state then; PID 1 turns the first into the apps' "clock synced"
	// event. It must not block.
	OnSync func(State)
}

// State is what the status route and /metrics report.
type State struct {
	// Synced is true once an NTP server answered this boot.
	Synced bool
	// Source is the NTP server of the last answer, or where the clock was
	// restored from ("saved time", "build time") before any answer, or ""
	// when the clock was already later than both.
	Source string
	// Offset is the last NTP correction (server minus node).
	Offset time.Duration
	// LastSync is when the last NTP answer was applied.
	LastSync time.Time
	// Saved is the time last written to (or read from) the saved file.
	Saved time.Time
	// Restored is how far Restore stepped the clock forward (0: not at all).
	Restored time.Duration
}

// Clock is the node's clock keeper. Its methods are safe for concurrent use.
type Clock struct {
	sys    Setter
	path   string
	floor  time.Time
	log    func(string, ...any)
	onSync func(State)

	mu       sync.Mutex
	state    State
	synced   chan struct{}
	syncOnce sync.Once
}

// New returns a Clock; nothing happens until Restore.
func New(o Options) *Clock {
	c := &Clock{sys: o.System, path: o.Path, floor: o.Floor, log: o.Log, onSync: o.OnSync, synced: make(chan struct{})}
	if c.sys == nil {
		c.sys = System{}
	}
	if c.path == "" {
		c.path = SavedPath
	}
	if c.floor.Before(MinimumTime) {
		c.floor = MinimumTime
	}
	if c.log == nil {
		c.log = func(string, ...any) {}
	}
	return c
}

// Synced is closed once the first NTP answer was applied.
func (c *Clock) Synced() <-chan struct{} { return c.synced }

// State returns the current state.
func (c *Clock) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Restore sets the clock forward to the later of the saved time and the
// floor when it is earlier; it never sets it backwards. A missing, corrupt
// or truncated saved file is ignored (logged): the floor still applies. It
// runs once /data is mounted, before anything that checks certificates.
func (c *Clock) Restore() error {
	target, source := c.floor, "build time"
	saved, err := c.readSaved()
	switch {
	case err == nil:
		c.mu.Lock()
		c.state.Saved = saved
		c.mu.Unlock()
		if saved.After(target) {
			target, source = saved, "saved time"
		}
	case errors.Is(err, fs.ErrNotExist):
		c.log("clock: no saved time in %s yet (first boot)", c.path)
	default:
		c.log("clock: ignoring the saved time: %v", err)
	}
	now := c.sys.Now()
	if !now.Before(target) {
		c.log("clock: %s is not earlier than the %s %s: kept", now.UTC().Format(time.RFC3339), source, target.Format(time.RFC3339))
		return nil
	}
	if err := c.sys.Set(target); err != nil {
		return fmt.Errorf("setting the clock forward from %s to the %s %s: %w", now.UTC().Format(time.RFC3339), source, target.Format(time.RFC3339), err)
	}
	c.mu.Lock()
	c.state.Source = source
	c.state.Restored = target.Sub(now)
	c.mu.Unlock()
	c.log("%s%s to the %s %s", contract.ClockRestored, now.UTC().Format(time.RFC3339), source, target.Format(time.RFC3339))
	return nil
}

func (c *Clock) readSaved() (time.Time, error) {
	f, err := os.Open(c.path)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	b := make([]byte, maxSavedLen+1)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return time.Time{}, fmt.Errorf("%s: %w", c.path, err)
	}
	t, err := ParseSaved(b[:n])
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", c.path, err)
	}
	return t, nil
}

// Save writes the current time to the saved file atomically (a new file
// renamed over the old one, synced), so a power cut leaves the old time or
// the new one, never a torn file. The time written never goes backwards
// from the last saved one unless NTP set the clock: only an authoritative
// source may undo a time the node once believed.
func (c *Clock) Save() error {
	now := c.sys.Now().UTC().Truncate(time.Second)
	c.mu.Lock()
	if now.Before(c.state.Saved) && !c.state.Synced {
		now = c.state.Saved
	}
	c.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
		return fmt.Errorf("saving the time: %w", err)
	}
	if err := renameio.WriteFile(c.path, FormatSaved(now), 0o644); err != nil {
		return fmt.Errorf("saving the time to %s: %w", c.path, err)
	}
	c.mu.Lock()
	c.state.Saved = now
	c.mu.Unlock()
	return nil
}

// Run saves the time every interval (SaveEvery when 0) until ctx is done,
// then once more: PID 1 cancels ctx at a clean shutdown.
func (c *Clock) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = SaveEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	// A /data that cannot be written (a degraded node) fails every save
	// the same way: say so once, and again only when the error changes.
	last := ""
	save := func() {
		err := c.Save()
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != "" && msg != last {
			c.log("clock: %s", msg)
		}
		last = msg
	}
	for {
		save()
		select {
		case <-ctx.Done():
			save()
			return
		case <-t.C:
		}
	}
}

// Adjust applies an NTP answer from server: offset is the server's time
// minus the node's. A large offset steps the clock (in either direction:
// NTP is authoritative over the saved time), a small one is slewed. The
// time is saved at once, so a reboot soon after keeps the corrected time.
func (c *Clock) Adjust(server string, offset time.Duration) error {
	if offset > StepThreshold || offset < -StepThreshold {
		if err := c.sys.Set(c.sys.Now().Add(offset)); err != nil {
			return fmt.Errorf("stepping the clock by %v: %w", offset, err)
		}
	} else if err := c.sys.Slew(offset); err != nil {
		return fmt.Errorf("slewing the clock by %v: %w", offset, err)
	}
	c.mu.Lock()
	first := !c.state.Synced
	c.state.Synced = true
	c.state.Source = server
	c.state.Offset = offset
	c.state.LastSync = c.sys.Now()
	c.mu.Unlock()
	if first {
		c.log("%s%s (offset %v)", contract.ClockSynced, server, offset.Round(time.Millisecond))
	}
	c.syncOnce.Do(func() { close(c.synced) })
	if err := c.Save(); err != nil {
		c.log("clock: %v", err)
	}
	if c.onSync != nil {
		c.onSync(c.State())
	}
	return nil
}
