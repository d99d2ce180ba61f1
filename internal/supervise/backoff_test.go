package supervise

import (
	"strings"
	"testing"
	"time"
)

func TestBackoffTable(t *testing.T) {
	var b Backoff // defaults: 1s, 60s, reset after 60s
	s := time.Second
	want := []time.Duration{1 * s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 60 * s, 60 * s}
	var prev time.Duration
	for i, w := range want {
		got := b.Next(prev, 0)
		if got != w {
			t.Fatalf("step %d: Next(%v, 0) = %v, want %v", i, prev, got, w)
		}
		prev = got
	}

	cases := []struct {
		prev, uptime, want time.Duration
	}{
		{60 * s, 60 * s, 1 * s},   // long run: start over
		{60 * s, 59 * s, 60 * s},  // short run: stay at the cap
		{8 * s, time.Hour, 1 * s}, // long run
		{8 * s, 500 * time.Millisecond, 16 * s},
		{0, time.Hour, 1 * s},               // first restart
		{time.Duration(1 << 62), 0, 60 * s}, // no overflow
	}
	for _, c := range cases {
		if got := b.Next(c.prev, c.uptime); got != c.want {
			t.Errorf("Next(%v, %v) = %v, want %v", c.prev, c.uptime, got, c.want)
		}
	}

	small := Backoff{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, ResetAfter: time.Second}
	var got []string
	prev = 0
	for range 6 {
		prev = small.Next(prev, 0)
		got = append(got, prev.String())
	}
	if g, w := strings.Join(got, ","), "10ms,20ms,40ms,80ms,80ms,80ms"; g != w {
		t.Errorf("small backoff = %s, want %s", g, w)
	}
	if g := small.Next(80*time.Millisecond, time.Second); g != 10*time.Millisecond {
		t.Errorf("small backoff after long run = %v, want 10ms", g)
	}
}

func TestRing(t *testing.T) {
	r := newRing(3, 0)
	if got := r.last(5); len(got) != 0 {
		t.Fatalf("empty ring returned %q", got)
	}
	r.add("a")
	r.add("b")
	if got := strings.Join(r.last(5), ","); got != "a,b" {
		t.Fatalf("last(5) = %s, want a,b", got)
	}
	for _, l := range []string{"c", "d", "e"} {
		r.add(l)
	}
	checks := []struct {
		n    int
		want string
	}{{0, "c,d,e"}, {2, "d,e"}, {1, "e"}, {10, "c,d,e"}}
	for _, c := range checks {
		if got := strings.Join(r.last(c.n), ","); got != c.want {
			t.Errorf("last(%d) = %s, want %s", c.n, got, c.want)
		}
	}
}

// The byte bound evicts the oldest lines even when the line count allows
// more; a line longer than the bound is kept alone.
func TestRingBytes(t *testing.T) {
	r := newRing(100, 10)
	for _, l := range []string{"aaaa", "bbbb", "cccc", "dddd"} {
		r.add(l)
	}
	if got := strings.Join(r.last(0), ","); got != "cccc,dddd" {
		t.Errorf("last = %s, want cccc,dddd", got)
	}
	r.add(strings.Repeat("e", 20))
	if got := r.last(0); len(got) != 1 || len(got[0]) != 20 {
		t.Errorf("a long line: last = %q", got)
	}
}

func TestFmtDuration(t *testing.T) {
	cases := map[time.Duration]string{
		10 * time.Millisecond:  "10ms",
		200 * time.Millisecond: "0.2s",
		4 * time.Second:        "4s",
		60 * time.Second:       "60s",
		3723 * time.Second:     "1h2m3s",
	}
	for d, want := range cases {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
