package pid1

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/clock"
)

// stillClock is a system clock that moves only when set.
type stillClock struct{ now time.Time }

func (c *stillClock) Now() time.Time             { return c.now }
func (c *stillClock) Set(t time.Time) error      { c.now = t; return nil }
func (c *stillClock) Slew(d time.Duration) error { return nil }

// TestInfoLiveState: info() says whether the clock is synced and the
// network up, as the "clock" and "network" events announced them, so an
// app that subscribes to events() after them still learns where the node
// is.
func TestInfoLiveState(t *testing.T) {
	got := events(t)
	oldClock := nodeClock
	resetNet := func() {
		netState.Lock()
		netState.ifname = ""
		netState.Unlock()
	}
	t.Cleanup(func() { nodeClock = oldClock; resetNet() })
	nodeClock = nil
	resetNet()
	c, n := liveState()
	if c.Synced || c.LastSync != nil || n.Up || n.Interface != "" {
		t.Fatalf("before anything: clock %+v, network %+v", c, n)
	}

	sys := &stillClock{now: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)}
	nodeClock = clock.New(clock.Options{System: sys, Path: filepath.Join(t.TempDir(), "clock"), OnSync: clockSynced})
	if err := nodeClock.Restore(); err != nil {
		t.Fatal(err)
	}
	if c, _ := liveState(); c.Synced || c.Source != "build time" || c.LastSync != nil {
		t.Fatalf("restored, not synced: %+v", c)
	}
	if err := nodeClock.Adjust("10.0.2.2:123", time.Hour); err != nil {
		t.Fatal(err)
	}
	networkUp("eth0", []string{"10.0.2.15/24"})
	c, n = liveState()
	if !c.Synced || c.Source != "10.0.2.2:123" || c.LastSync == nil || !n.Up || n.Interface != "eth0" {
		t.Fatalf("after the NTP answer and the lease: clock %+v, network %+v", c, n)
	}
	// The events came too, after the state they announce was recorded.
	if len(*got) == 0 || !strings.HasPrefix((*got)[len(*got)-1], "network ") {
		t.Errorf("events: %q", *got)
	}

	b, err := json.Marshal(appInfo{Clock: c, Network: n, Addresses: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"clock":{"synced":true,"source":"10.0.2.2:123","lastSync":"`, `"network":{"up":true,"interface":"eth0"}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("info() lacks %s: %s", want, b)
		}
	}
}
