package netconf

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/beevik/ntp"

	"github.com/nodeboot/nodeboot/internal/crash"
)

// Timing of SyncTime; variables so that tests can shorten them.
var (
	ntpQueryTimeout = 3 * time.Second
	ntpRetryMin     = 2 * time.Second
	ntpRetryMax     = 5 * time.Minute
	ntpResync       = time.Hour
)

// SyncTime keeps the clock in step in the background and returns at once: it
// never delays boot. It asks the servers in order (host or host:port; empty
// means DefaultNTPServers) until one gives a valid answer, then sets the clock
// through set (nil: the system clock) to the corrected time. While no server
// answers it retries with exponential backoff (2 s up to 5 min); after a
// success it syncs again every hour. It stops when ctx is done.
func SyncTime(ctx context.Context, servers []string, log Logger, set func(time.Time) error) {
	if set == nil {
		set = setSystemClock
	}
	SyncTimeWith(ctx, servers, log, func(_ string, offset time.Duration) error {
		return set(time.Now().Add(offset))
	})
}

// SyncTimeWith is SyncTime handing each valid answer to adjust: the server
// and its offset (server time minus ours), so the caller decides how to
// correct the clock (internal/clock steps or slews) and records the source.
func SyncTimeWith(ctx context.Context, servers []string, log Logger, adjust func(server string, offset time.Duration) error) {
	if len(servers) == 0 {
		servers = DefaultNTPServers
	}
	servers = append([]string(nil), servers...)
	if log == nil {
		log = (&Config{}).logger()
	}
	timeout, retryMin, retryMax, resync := ntpQueryTimeout, ntpRetryMin, ntpRetryMax, ntpResync
	crash.Go("ntp", func() {
		wait := retryMin
		failures := 0
		for {
			if err := syncOnce(servers, timeout, log, adjust); err != nil {
				failures++
				// Log the first failures and then only now and then, so that an
				// offline node does not fill its log.
				if failures == 1 || wait >= retryMax {
					log("ntp: %v; retrying in %v", err, wait)
				}
				if !sleepCtx(ctx, wait) {
					return
				}
				wait = min(wait*2, retryMax)
				continue
			}
			failures = 0
			wait = retryMin
			if !sleepCtx(ctx, resync) {
				return
			}
		}
	})
}

// syncOnce asks the servers in turn and sets the clock from the first valid
// answer.
func syncOnce(servers []string, timeout time.Duration, log Logger, adjust func(string, time.Duration) error) error {
	var errs []string
	for _, srv := range servers {
		resp, err := ntp.QueryWithOptions(srv, ntp.QueryOptions{Timeout: timeout})
		if err == nil {
			err = resp.Validate()
		}
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", srv, err))
			continue
		}
		if err := adjust(srv, resp.ClockOffset); err != nil {
			return fmt.Errorf("setting the clock from %s: %w", srv, err)
		}
		log("ntp: clock set from %s (offset %v, rtt %v)", srv, resp.ClockOffset.Round(time.Millisecond), resp.RTT.Round(time.Millisecond))
		return nil
	}
	return fmt.Errorf("no server answered (%s)", strings.Join(errs, "; "))
}

// sleepCtx waits for d or until ctx is done; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
