package supervise

import (
	"strings"
	"testing"
	"time"
)

// chatty prints 60 lines of 70 000 bytes (cut at maxLine: 4 MiB in
// all) and then "done".
const chatty = `i=0; while [ $i -lt 60 ]; do head -c 70000 /dev/zero | tr '\0' x; echo; i=$((i+1)); done; echo done; exec sleep 100`

func ringBytes(lines []string) int {
	n := 0
	for _, l := range lines {
		n += len(l)
	}
	return n
}

// A chatty app keeps at most its ring's byte bound of history in PID 1
// (it was 1000 lines of up to 64 KiB: 62.5 MiB per app).
func TestChattyAppRingBounded(t *testing.T) {
	s := New(shService(t, "chatty", chatty, nil))
	runService(t, s)
	waitFor(t, "done", func() bool {
		l := s.Lines(1)
		return len(l) == 1 && l[0] == "chatty: done"
	})
	lines := s.Lines(0)
	if n := ringBytes(lines); n > DefaultRingBytes {
		t.Errorf("the ring holds %d bytes in %d lines, over its bound of %d", n, len(lines), DefaultRingBytes)
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[len(lines)-2], "chatty: xxx") {
		t.Errorf("the most recent lines were not kept: %d lines", len(lines))
	}
}

// A follower that stops reading (a stuck `logs --follow` client) holds at
// most FollowBytes of lines; the rest are dropped, and it is told how many
// once it reads again.
func TestStuckFollowerBounded(t *testing.T) {
	s := New(shService(t, "chatty", chatty, nil))
	lines, cancel := s.Subscribe()
	defer cancel()
	runService(t, s)
	waitFor(t, "done", func() bool {
		l := s.Lines(1)
		return len(l) == 1 && l[0] == "chatty: done"
	})
	// Everything the follower holds is in the channel now.
	var held []string
	for len(lines) > 0 {
		held = append(held, <-lines)
	}
	if n := ringBytes(held); n > FollowBytes+maxLine {
		t.Errorf("a stuck follower holds %d bytes in %d lines, over its bound of %d", n, len(held), FollowBytes)
	}
	// Reading again, it first learns what it missed.
	s.Restart()
	deadline := time.After(time.Minute)
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, "lines dropped: this reader fell behind") {
				return
			}
			t.Errorf("got %.40q before the drop notice", l)
		case <-deadline:
			t.Fatal("the follower got no drop notice after catching up")
		}
	}
}
