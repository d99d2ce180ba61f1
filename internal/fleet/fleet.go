// Package fleet runs a change over many nodes from the owner's machine
// (nodeboot fleet deploy|update): at most MaxUnavailable nodes at a time,
// each step returning only once its node passed its health gate or failed
// it, and no new node started after the first failure, so a bad version
// reaches as few nodes as the rollout's width. It also asks many nodes
// something at once (nodeboot fleet status).
package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// Step changes one node and returns once it is healthy with the change,
// or with why not (a node that fails its health gate runs its previous
// version again by itself: deploy and update both revert).
type Step func(ctx context.Context, node string) error

// Options tune a rollout.
type Options struct {
	// MaxUnavailable is how many nodes change at once; default 1.
	MaxUnavailable int
	// Report, if set, is told when each node starts, succeeds or fails.
	// It is called from several goroutines, one call at a time.
	Report func(Event)
}

// EventKind is what happened to a node.
type EventKind int

const (
	Started EventKind = iota
	Done
	Failed
)

// Event is one node's progress.
type Event struct {
	Node string
	Kind EventKind
	Err  error // for Failed
}

// NodeError is a node that failed its step.
type NodeError struct {
	Node string
	Err  error
}

// Result is how a rollout ended.
type Result struct {
	Done   []string    // changed and healthy, in the order they finished
	Failed []NodeError // in the order they failed; the first stopped the rollout
	// Untouched were never started: the rollout stopped before them
	// (a failure, or ctx ended). They keep what they ran.
	Untouched []string
}

// ErrStopped is wrapped by Result.Err when a rollout did not reach every
// node.
var ErrStopped = errors.New("rollout stopped")

// Err is nil when every node was changed, else says which node failed
// (or that the rollout was cancelled) and where the others stand.
func (r *Result) Err() error {
	if len(r.Failed) == 0 && len(r.Untouched) == 0 {
		return nil
	}
	var b strings.Builder
	if len(r.Failed) > 0 {
		f := r.Failed[0]
		fmt.Fprintf(&b, "node %s failed: %v", f.Node, f.Err)
		for _, g := range r.Failed[1:] {
			fmt.Fprintf(&b, "; node %s (changing at the same time) failed too: %v", g.Node, g.Err)
		}
	} else {
		b.WriteString("cancelled")
	}
	fmt.Fprintf(&b, "; changed: %s; not touched (they keep what they run): %s", list(r.Done), list(r.Untouched))
	return fmt.Errorf("%w: %s", ErrStopped, b.String())
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// Roll runs step over nodes in their order, at most o.MaxUnavailable at
// a time. After the first failure (or once ctx ends) it starts no other
// node and waits for those in flight.
func Roll(ctx context.Context, nodes []string, step Step, o Options) Result {
	width := max(o.MaxUnavailable, 1)
	var (
		mu      sync.Mutex
		res     Result
		stopped bool
		wg      sync.WaitGroup
	)
	report := func(e Event) {
		if o.Report != nil {
			o.Report(e)
		}
	}
	slots := make(chan struct{}, width)
	for i, n := range nodes {
		// Wait for a free slot, or for the end.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		mu.Lock()
		stop := stopped || ctx.Err() != nil
		if stop {
			res.Untouched = append(res.Untouched, nodes[i:]...)
			mu.Unlock()
			break
		}
		report(Event{Node: n, Kind: Started})
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := step(ctx, n)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed = append(res.Failed, NodeError{n, err})
				stopped = true
				report(Event{Node: n, Kind: Failed, Err: err})
			} else {
				res.Done = append(res.Done, n)
				report(Event{Node: n, Kind: Done})
			}
			<-slots
		}()
	}
	wg.Wait()
	return res
}

// Answer is one node's answer to Ask.
type Answer[T any] struct {
	Node  string
	Value T
	Err   error
}

// Ask calls f for every node, at most limit at a time (0: all at once),
// and returns the answers in the order of nodes.
func Ask[T any](ctx context.Context, nodes []string, limit int, f func(ctx context.Context, node string) (T, error)) []Answer[T] {
	out := make([]Answer[T], len(nodes))
	if limit <= 0 {
		limit = len(nodes)
	}
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			v, err := f(ctx, n)
			out[i] = Answer[T]{Node: n, Value: v, Err: err}
		}()
	}
	wg.Wait()
	return out
}
