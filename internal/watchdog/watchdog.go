// Package watchdog keeps a hardware watchdog fed, so that a node whose
// kernel or PID 1 hangs is reset by the hardware: on a trial boot after an
// OS update that reset counts as a failed try, and systemd-boot falls back
// to the previous slot once the tries are used up (docs/updates.md).
package watchdog

import (
	"context"
	"time"
)

// Device is an armed watchdog: it resets the machine unless Keepalive is
// called within its timeout.
type Device interface {
	Keepalive() error
}

// Feed calls dev.Keepalive every interval until ctx ends. It runs in PID 1's
// own goroutine: if PID 1 cannot schedule it any more, the machine resets,
// which is the point. A failed keepalive is logged once per run of failures
// and retried; the hardware decides what a missed deadline means.
func Feed(ctx context.Context, dev Device, interval time.Duration, logf func(string, ...any)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		err := dev.Keepalive()
		switch {
		case err != nil && !failing:
			logf("watchdog: keepalive failed: %v (the node resets if this lasts)", err)
			failing = true
		case err == nil && failing:
			logf("watchdog: keepalive works again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Interval is how often to feed a watchdog of the given timeout: a third of
// it, so that two late ticks (a loaded TCG guest) still do not reset it.
func Interval(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		return time.Second
	}
	return max(timeout/3, 100*time.Millisecond)
}
