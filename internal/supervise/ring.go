package supervise

import "sync"

// DefaultRingLines is the number of output lines kept per service when
// Options.RingLines is zero.
const DefaultRingLines = 1000

// ring keeps the most recent lines of a service's output so that they can be
// shown after the fact (status pages, crash reports) without keeping a log
// file on the image's disk. It is safe for concurrent use.
type ring struct {
	mu    sync.Mutex
	lines []string // fixed capacity, used as a circular buffer once full
	next  int      // index the next line is written to when full
	full  bool
	// subs receive every line added after they subscribed (log follow).
	subs map[chan string]struct{}
}

func newRing(capacity int) *ring {
	if capacity <= 0 {
		capacity = DefaultRingLines
	}
	return &ring{lines: make([]string, 0, capacity)}
}

func (r *ring) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.subs {
		// A follower that does not keep up loses lines rather than
		// stalling the app's output (its pipe would fill and block it).
		select {
		case c <- line:
		default:
		}
	}
	if !r.full {
		r.lines = append(r.lines, line)
		if len(r.lines) == cap(r.lines) {
			r.full = true
		}
		return
	}
	r.lines[r.next] = line
	r.next = (r.next + 1) % len(r.lines)
}

// last returns up to n of the most recent lines, oldest first; n <= 0 means all.
func (r *ring) last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	size := len(r.lines)
	if n <= 0 || n > size {
		n = size
	}
	out := make([]string, 0, n)
	// The oldest stored line is at r.next when full and at 0 otherwise; skip
	// size-n lines from there.
	start := size - n
	if r.full {
		start += r.next
	}
	for i := 0; i < n; i++ {
		out = append(out, r.lines[(start+i)%size])
	}
	return out
}
