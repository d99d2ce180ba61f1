package pid1

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nodeboot/nodeboot/internal/appapi"
	"github.com/nodeboot/nodeboot/internal/boot"
	"github.com/nodeboot/nodeboot/internal/clock"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/crash"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// nodeClock keeps the wall clock (internal/clock); set by startClock.
var nodeClock *clock.Clock

// ntpServers are the servers the NTP client asks, once the network is up.
var ntpServers struct {
	mu   sync.Mutex
	list []string
}

// startClock restores the clock from /data (or the image's floor) and
// starts saving it every clock.SaveEvery. It runs once /data is set up and
// before anything that checks a certificate: the follower's first registry
// check starts with the API, later in run, so it never sees 1970 (issue 16).
func startClock(log *boot.Logger, rt *spec.Runtime) {
	var floor time.Time
	if rt.ClockFloor > 0 {
		floor = time.Unix(rt.ClockFloor, 0)
	}
	c := clock.New(clock.Options{Floor: floor, Log: log.Printf, OnSync: clockSynced})
	if err := c.Restore(); err != nil {
		log.Printf("clock: %v", err)
	}
	nodeClock = c
	crash.Go("clock save", func() { c.Run(context.Background(), 0) })
}

// saveClock saves the time at a clean shutdown, so the next boot starts
// from it rather than from the last periodic save.
func saveClock(log *boot.Logger) {
	if nodeClock == nil {
		return
	}
	if err := nodeClock.Save(); err != nil {
		log.Printf("clock: %v", err)
	}
}

var clockSyncedOnce sync.Once

// clockSynced is called after every NTP answer applied. The first of a
// boot becomes the apps' "clock" event (events() in require('nodeboot')):
// this is the one place a "clock synced" signal leaves PID 1; code that
// must wait for real time can also wait on nodeClock.Synced().
func clockSynced(st clock.State) {
	clockSyncedOnce.Do(func() {
		publishEvent(appapi.EventClock, "", fmt.Sprintf("clock synced with %s (offset %v)", st.Source, st.Offset.Round(time.Millisecond)))
	})
}

// clockStatus is the status route's "clock" object.
func clockStatus(rt *spec.Runtime) *contract.ClockStatus {
	if nodeClock == nil {
		return nil
	}
	st := nodeClock.State()
	ntpServers.mu.Lock()
	servers := slices.Clone(ntpServers.list)
	ntpServers.mu.Unlock()
	return &contract.ClockStatus{
		Now:           time.Now().UTC(),
		Synced:        st.Synced,
		Source:        st.Source,
		OffsetSeconds: st.Offset.Seconds(),
		LastSync:      st.LastSync,
		Saved:         st.Saved,
		NTP:           servers,
		NTPOff:        rt.Network.NTPOff,
	}
}
