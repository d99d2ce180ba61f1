package supervise

import "time"

// Backoff decides how long a crashed service waits before it is started again.
// The delay doubles on every quick failure so that a crash loop does not
// monopolise the CPU and the console, and falls back to Initial once a run has
// stayed up for ResetAfter, so that a service crashing once a day restarts
// promptly instead of inheriting the delay of some long-past crash loop.
type Backoff struct {
	Initial    time.Duration // first delay; default 1s
	Max        time.Duration // cap of the doubling; default 60s
	ResetAfter time.Duration // uptime after which the delay starts over; default 60s
}

// Defaults used for zero fields of Backoff.
const (
	DefaultBackoffInitial    = time.Second
	DefaultBackoffMax        = 60 * time.Second
	DefaultBackoffResetAfter = 60 * time.Second
)

// withDefaults fills zero (or negative) fields, so a zero Backoff is usable.
func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = DefaultBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.ResetAfter <= 0 {
		b.ResetAfter = DefaultBackoffResetAfter
	}
	return b
}

// Next returns the delay before the next start, given the previous delay (0
// for none yet) and how long the run that just ended stayed up.
func (b Backoff) Next(prev, uptime time.Duration) time.Duration {
	b = b.withDefaults()
	if prev <= 0 || uptime >= b.ResetAfter {
		return b.Initial
	}
	// Compare before doubling so that a huge prev cannot overflow.
	if prev >= b.Max/2 {
		return b.Max
	}
	next := prev * 2
	if next < b.Initial {
		next = b.Initial
	}
	return next
}
