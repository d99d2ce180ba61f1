package follow

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

// waves is a signed rollout as the release format gives it: cumulative
// shares, each from its time on, or paused.
type waves struct {
	paused bool
	shares []float64
	from   []time.Time
}

func (w *waves) ApplyAt(seed float64) (time.Time, bool) {
	if w.paused {
		return time.Time{}, false
	}
	for i, s := range w.shares {
		if seed < s {
			return w.from[i], true
		}
	}
	return w.from[len(w.from)-1], true
}

// fleet is several simulated nodes following one registry with one
// controlled clock, each with its own seed and next check time.
type fleet struct {
	reg   *registry
	clock *clock
	nodes []*node
	fs    []*Follower
	next  []time.Time
}

func newFleet(n int) *fleet {
	fl := &fleet{reg: newRegistry(), clock: &clock{now: t0}}
	for i := range n {
		nd := newNode("web")
		fl.nodes = append(fl.nodes, nd)
		fl.fs = append(fl.fs, New(Config{
			Ref: "registry.test/shop:stable", Interval: interval,
			Source: fl.reg, Node: nd, State: &memState{}, Clock: fl.clock,
			Rand: rand.New(rand.NewPCG(uint64(i), 42)),
		}))
		fl.next = append(fl.next, t0)
	}
	return fl
}

// run advances the clock by d in steps of a second, checking each node
// when its wait is over.
func (fl *fleet) run(d time.Duration) {
	end := fl.clock.Now().Add(d)
	for now := fl.clock.Now(); !now.After(end); now = now.Add(time.Second) {
		fl.clock.mu.Lock()
		fl.clock.now = now
		fl.clock.mu.Unlock()
		for i, f := range fl.fs {
			if !now.Before(fl.next[i]) {
				fl.next[i] = now.Add(f.Check(context.Background()))
			}
		}
	}
}

// running counts the nodes that run version.
func (fl *fleet) running(version string) int {
	n := 0
	for _, nd := range fl.nodes {
		if nd.version("web") == digestOf([]byte(version)) {
			n++
		}
	}
	return n
}

func TestWaves(t *testing.T) {
	const nodes = 200
	fl := newFleet(nodes)
	fl.reg.push(&Release{Version: "v2", Apps: []AppRelease{fl.reg.app("web", "web v2")},
		Schedule: &waves{shares: []float64{0.1, 0.5, 1}, from: []time.Time{t0, t0.Add(time.Hour), t0.Add(2 * time.Hour)}}})

	// Within the first hour only the first wave applies: about a tenth.
	fl.run(55 * time.Minute)
	first := fl.running("web v2")
	if first < nodes*5/100 || first > nodes*15/100 {
		t.Fatalf("%d of %d nodes applied in the first wave, want about 10%%", first, nodes)
	}
	waiting := 0
	for _, f := range fl.fs {
		if st := f.Status(); st.State == StateWaiting {
			waiting++
			if !st.WaveOpens.After(fl.clock.Now()) {
				t.Errorf("waiting for a wave that opened at %v", st.WaveOpens)
			}
		}
	}
	if waiting != nodes-first {
		t.Errorf("%d nodes say they wait for their wave, want %d", waiting, nodes-first)
	}
	// After the second wave opens (and one interval with its jitter):
	// about half.
	fl.run(15 * time.Minute)
	second := fl.running("web v2")
	if second < nodes*40/100 || second > nodes*60/100 {
		t.Fatalf("%d of %d nodes applied after the second wave, want about 50%%", second, nodes)
	}
	// After the last: all.
	fl.run(70 * time.Minute)
	if all := fl.running("web v2"); all != nodes {
		t.Fatalf("%d of %d nodes applied after the last wave", all, nodes)
	}
}

func TestNoWavesAppliesAtOnce(t *testing.T) {
	fl := newFleet(50)
	fl.run(0)
	fl.reg.push(&Release{Apps: []AppRelease{fl.reg.app("web", "web v2")}})
	fl.run(interval + interval/5)
	if n := fl.running("web v2"); n != 50 {
		t.Fatalf("%d of 50 nodes applied a release without waves within one interval", n)
	}
}

func TestPauseHoldsTheRollout(t *testing.T) {
	const nodes = 100
	fl := newFleet(nodes)
	plan := waves{shares: []float64{0.2, 1}, from: []time.Time{t0, t0.Add(time.Hour)}}
	bad := &Release{Version: "v2", Apps: []AppRelease{fl.reg.app("web", "web v2")}, Schedule: &plan}
	fl.reg.push(bad)
	fl.run(30 * time.Minute)
	first := fl.running("web v2")
	if first == 0 || first > nodes/2 {
		t.Fatalf("%d nodes in the first wave", first)
	}
	// The owner sees trouble and promotes a paused copy: nobody else
	// applies it, however long.
	paused, pausedPlan := *bad, plan
	pausedPlan.paused = true
	paused.Schedule = &pausedPlan
	fl.reg.push(&paused)
	fl.run(5 * time.Hour)
	if n := fl.running("web v2"); n != first {
		t.Fatalf("%d nodes run v2 after the pause, %d did before it", n, first)
	}
	held := 0
	for _, f := range fl.fs {
		if f.Status().State == StatePaused {
			held++
		}
	}
	if held != nodes-first {
		t.Errorf("%d nodes say the rollout is paused, want %d", held, nodes-first)
	}
	// A fixed release without waves reaches everyone.
	fl.reg.push(&Release{Version: "v3", Apps: []AppRelease{fl.reg.app("web", "web v3")}})
	fl.run(interval + interval/5)
	if n := fl.running("web v3"); n != nodes {
		t.Fatalf("%d of %d nodes run v3", n, nodes)
	}
}
