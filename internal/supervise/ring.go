package supervise

import (
	"fmt"
	"sync"
)

const (
	// DefaultRingLines is the number of output lines kept per service when
	// Options.RingLines is zero.
	DefaultRingLines = 1000
	// DefaultRingBytes bounds the bytes kept per service when
	// Options.RingBytes is zero. Lines alone were no bound: 1000 lines of
	// up to 64 KiB each let one chatty app hold 62.5 MiB of PID 1's memory.
	// Each service has its own ring, so a chatty app pushes out only its
	// own history; the persisted log file keeps the rest.
	DefaultRingBytes = 1 << 20
	// FollowBytes bounds what waits for one follower (`logs --follow`): a
	// reader that stops reading loses lines, counted, rather than growing
	// PID 1's memory or stalling the app.
	FollowBytes = 256 << 10
	// followLines is the follower channel's capacity.
	followLines = 256
)

// ring keeps the most recent lines of a service's output so that they can be
// shown after the fact (status pages, crash reports) without keeping a log
// file on the image's disk. It is safe for concurrent use.
type ring struct {
	mu       sync.Mutex
	lines    []string // circular: n lines from head
	head, n  int
	bytes    int
	maxBytes int
	// subs receive every line added after they subscribed (log follow).
	subs map[*follower]struct{}
}

func newRing(lines, bytes int) *ring {
	if lines <= 0 {
		lines = DefaultRingLines
	}
	if bytes <= 0 {
		bytes = DefaultRingBytes
	}
	return &ring{lines: make([]string, lines), maxBytes: bytes}
}

func (r *ring) add(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for f := range r.subs {
		f.offer(line)
	}
	// Make room: oldest lines first, until both bounds hold (a single
	// line longer than the byte bound is kept alone).
	for r.n > 0 && (r.n == len(r.lines) || r.bytes+len(line) > r.maxBytes) {
		r.bytes -= len(r.lines[r.head])
		r.lines[r.head] = ""
		r.head = (r.head + 1) % len(r.lines)
		r.n--
	}
	r.lines[(r.head+r.n)%len(r.lines)] = line
	r.n++
	r.bytes += len(line)
}

// last returns up to n of the most recent lines, oldest first; n <= 0 means all.
func (r *ring) last(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n <= 0 || n > r.n {
		n = r.n
	}
	out := make([]string, 0, n)
	for i := r.n - n; i < r.n; i++ {
		out = append(out, r.lines[(r.head+i)%len(r.lines)])
	}
	return out
}

// follower is one subscriber's channel with a byte budget. The channel is
// buffered so a reader can drain it without blocking; what it holds is
// worked out from len(c): the lines sent and no longer in the channel were
// read, oldest first. Only ring.add sends, under the ring's lock.
type follower struct {
	c       chan string
	sizes   []int // sizes of the lines sent and maybe still in c, oldest first
	held    int   // sum of sizes
	dropped int   // lines dropped since the reader last got one
}

func (f *follower) offer(line string) {
	// Lines read since the last offer give their budget back.
	for read := len(f.sizes) - len(f.c); read > 0; read-- {
		f.held -= f.sizes[0]
		f.sizes = f.sizes[1:]
	}
	if f.dropped > 0 {
		notice := fmt.Sprintf("[nodeboot: %d lines dropped: this reader fell behind]", f.dropped)
		if !f.send(notice) {
			f.dropped++
			return
		}
		f.dropped = 0
	}
	if !f.send(line) {
		f.dropped++
	}
}

// send queues s if the budget and the channel allow it (a line alone in an
// empty channel always fits).
func (f *follower) send(s string) bool {
	if len(f.sizes) > 0 && f.held+len(s) > FollowBytes {
		return false
	}
	select {
	case f.c <- s:
		f.sizes = append(f.sizes, len(s))
		f.held += len(s)
		return true
	default:
		return false
	}
}
