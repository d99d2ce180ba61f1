package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeFleet is nodes whose step records concurrency and fails for the
// nodes in bad.
type fakeFleet struct {
	mu         sync.Mutex
	running    int
	maxRunning int
	changed    []string
	bad        map[string]bool
	release    chan struct{} // when set, each step waits for a token
}

func (f *fakeFleet) step(ctx context.Context, node string) error {
	f.mu.Lock()
	f.running++
	f.maxRunning = max(f.maxRunning, f.running)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}()
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.bad[node] {
		return fmt.Errorf("the new version did not become healthy: app web exited with status 1")
	}
	f.mu.Lock()
	f.changed = append(f.changed, node)
	f.mu.Unlock()
	return nil
}

func nodes(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("n%d", i+1))
	}
	return out
}

func TestAllHealthy(t *testing.T) {
	for _, width := range []int{0, 1, 2, 5, 20} {
		f := &fakeFleet{release: make(chan struct{})}
		done := make(chan Result)
		go func() { done <- Roll(context.Background(), nodes(10), f.step, Options{MaxUnavailable: width}) }()
		for range 10 {
			f.release <- struct{}{}
		}
		res := <-done
		if err := res.Err(); err != nil || len(res.Done) != 10 {
			t.Fatalf("width %d: %v, %+v", width, err, res)
		}
		if want := min(max(width, 1), 10); f.maxRunning > want {
			t.Errorf("width %d: %d nodes changed at once", width, f.maxRunning)
		}
	}
}

func TestWidthIsUsed(t *testing.T) {
	// With width 3, three nodes start before any finishes.
	f := &fakeFleet{release: make(chan struct{})}
	started := make(chan string, 10)
	done := make(chan Result)
	go func() {
		done <- Roll(context.Background(), nodes(6), f.step, Options{MaxUnavailable: 3, Report: func(e Event) {
			if e.Kind == Started {
				started <- e.Node
			}
		}})
	}()
	for range 3 {
		<-started
	}
	select {
	case n := <-started:
		t.Fatalf("node %s started while three were in flight", n)
	default:
	}
	for range 6 {
		f.release <- struct{}{}
	}
	if res := <-done; len(res.Done) != 6 {
		t.Fatalf("%+v", res)
	}
}

func TestStopsAtTheFirstFailure(t *testing.T) {
	f := &fakeFleet{bad: map[string]bool{"n3": true}}
	var events []string
	res := Roll(context.Background(), nodes(6), f.step, Options{MaxUnavailable: 1, Report: func(e Event) {
		events = append(events, fmt.Sprintf("%s:%d", e.Node, e.Kind))
	}})
	if !slices.Equal(res.Done, []string{"n1", "n2"}) || len(res.Failed) != 1 || res.Failed[0].Node != "n3" || !slices.Equal(res.Untouched, []string{"n4", "n5", "n6"}) {
		t.Fatalf("%+v", res)
	}
	if !slices.Equal(f.changed, []string{"n1", "n2"}) {
		t.Fatalf("changed %v", f.changed)
	}
	err := res.Err()
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("%v", err)
	}
	for _, want := range []string{"node n3 failed: the new version did not become healthy", "changed: n1, n2", "not touched (they keep what they run): n4, n5, n6"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Join(events, " ") != "n1:0 n1:1 n2:0 n2:1 n3:0 n3:2" {
		t.Errorf("events %v", events)
	}
}

func TestFailureWithWidth(t *testing.T) {
	// Width 2: n1 fails while n2 is in flight; n2 finishes, nothing else
	// starts.
	f := &fakeFleet{bad: map[string]bool{"n1": true}}
	failNow, finish := make(chan struct{}), make(chan struct{})
	started, failed := make(chan string, 10), make(chan string, 10)
	done := make(chan Result)
	step := func(ctx context.Context, n string) error {
		if n == "n1" {
			<-failNow
		} else {
			<-finish
		}
		return f.step(ctx, n)
	}
	go func() {
		done <- Roll(context.Background(), nodes(5), step, Options{MaxUnavailable: 2, Report: func(e Event) {
			switch e.Kind {
			case Started:
				started <- e.Node
			case Failed:
				failed <- e.Node
			}
		}})
	}()
	<-started
	<-started
	close(failNow) // n1 fails while n2 is in flight
	<-failed
	close(finish) // then n2 (and any other node wrongly started) finishes
	res := <-done
	if len(res.Failed) != 1 || res.Failed[0].Node != "n1" || !slices.Equal(res.Done, []string{"n2"}) || !slices.Equal(res.Untouched, []string{"n3", "n4", "n5"}) {
		t.Fatalf("%+v", res)
	}
}

func TestCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeFleet{}
	res := Roll(ctx, nodes(4), func(ctx context.Context, n string) error {
		err := f.step(ctx, n)
		if n == "n2" {
			cancel()
		}
		return err
	}, Options{})
	if !slices.Equal(res.Done, []string{"n1", "n2"}) || !slices.Equal(res.Untouched, []string{"n3", "n4"}) || len(res.Failed) != 0 {
		t.Fatalf("%+v", res)
	}
	if err := res.Err(); err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("%v", err)
	}
}

func TestAsk(t *testing.T) {
	var mu sync.Mutex
	running, most := 0, 0
	gate := make(chan struct{})
	go func() {
		for range 8 {
			gate <- struct{}{}
		}
	}()
	out := Ask(context.Background(), nodes(8), 0, func(ctx context.Context, n string) (string, error) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		<-gate
		mu.Lock()
		running--
		mu.Unlock()
		if n == "n4" {
			return "", errors.New("unreachable")
		}
		return "up " + n, nil
	})
	for i, a := range out {
		want := fmt.Sprintf("n%d", i+1)
		if a.Node != want {
			t.Fatalf("answer %d is %s's", i, a.Node)
		}
		if (a.Err != nil) != (want == "n4") || (a.Err == nil && a.Value != "up "+want) {
			t.Errorf("%+v", a)
		}
	}
}
