package watchdog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeDog struct {
	mu    sync.Mutex
	feeds int
	fail  func(n int) error
	fed   chan int
}

func (d *fakeDog) Keepalive() error {
	d.mu.Lock()
	d.feeds++
	n := d.feeds
	d.mu.Unlock()
	d.fed <- n
	if d.fail != nil {
		return d.fail(n)
	}
	return nil
}

// TestFeed checks that the watchdog is fed at once and then on every tick
// until the context ends, and that a run of failures is logged once, with
// its end.
func TestFeed(t *testing.T) {
	dog := &fakeDog{fed: make(chan int, 100), fail: func(n int) error {
		if n >= 2 && n <= 4 {
			return errors.New("EIO")
		}
		return nil
	}}
	var mu sync.Mutex
	var logs []string
	logf := func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(f, a...))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Feed(ctx, dog, time.Millisecond, logf); close(done) }()
	for n := range dog.fed {
		if n == 6 {
			break
		}
	}
	cancel()
	go func() {
		for range dog.fed {
		}
	}()
	<-done
	mu.Lock()
	defer mu.Unlock()
	got := strings.Join(logs, "\n")
	if strings.Count(got, "keepalive failed") != 1 || strings.Count(got, "works again") != 1 {
		t.Errorf("logs:\n%s\nwant one failure line and one recovery line", got)
	}
}

func TestInterval(t *testing.T) {
	for _, c := range []struct{ timeout, want time.Duration }{
		{30 * time.Second, 10 * time.Second},
		{0, time.Second},
		{time.Millisecond, 100 * time.Millisecond},
	} {
		if got := Interval(c.timeout); got != c.want {
			t.Errorf("Interval(%v) = %v, want %v", c.timeout, got, c.want)
		}
	}
}
