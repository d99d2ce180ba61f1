package follow

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

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
		Rollout: Rollout{Start: t0, Waves: []Wave{{Share: 0.1, AfterSeconds: 0}, {Share: 0.5, AfterSeconds: 3600}, {Share: 1, AfterSeconds: 7200}}}})

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
	waves := []Wave{{Share: 0.2, AfterSeconds: 0}, {Share: 1, AfterSeconds: 3600}}
	bad := &Release{Version: "v2", Apps: []AppRelease{fl.reg.app("web", "web v2")}, Rollout: Rollout{Start: t0, Waves: waves}}
	fl.reg.push(bad)
	fl.run(30 * time.Minute)
	first := fl.running("web v2")
	if first == 0 || first > nodes/2 {
		t.Fatalf("%d nodes in the first wave", first)
	}
	// The owner sees trouble and promotes a paused copy: nobody else
	// applies it, however long.
	paused := *bad
	paused.Rollout.Paused = true
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

func TestRolloutCheck(t *testing.T) {
	for _, c := range []struct {
		json, err string
	}{
		{`{}`, ""},
		{`{"paused": true}`, ""},
		{`{"start": "2026-12-03T12:00:00Z", "waves": [{"share": 0.1, "afterSeconds": 0}, {"share": 1, "afterSeconds": 3600}]}`, ""},
		{`{"start": "2026-12-03T12:00:00Z", "waves": [{"share": 0.5, "afterSeconds": 0}]}`, ""},
		{`{"waves": [{"share": 1, "afterSeconds": 0}]}`, "without a start time"},
		{`{"start": "2026-12-03T12:00:00Z", "waves": [{"share": 0.5, "afterSeconds": 0}, {"share": 0.5, "afterSeconds": 10}]}`, "wave 1: share 0.5 must be above"},
		{`{"start": "2026-12-03T12:00:00Z", "waves": [{"share": 1.5, "afterSeconds": 0}]}`, "at most 1"},
		{`{"start": "2026-12-03T12:00:00Z", "waves": [{"share": 0, "afterSeconds": 0}]}`, "must be above"},
		{`{"start": "2026-12-03T12:00:00Z", "waves": [{"share": 0.1, "afterSeconds": 60}, {"share": 1, "afterSeconds": 10}]}`, "wave 1: afterSeconds 10"},
		{`{"start": "2026-12-03T12:00:00Z", "waves": [{"share": 0.1, "afterSeconds": -1}]}`, "afterSeconds -1"},
		{`{"start": "2026-12-03T12:00:00Z", "waves": [{"share": 1, "afterSeconds": 99999999999}]}`, "afterSeconds 99999999999"},
		{`{"wave": []}`, "unknown field"},
		{`{} {}`, "data after"},
		{`[]`, "cannot unmarshal"},
	} {
		_, err := ParseRollout([]byte(c.json))
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.json, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, ErrInvalidRollout)):
			t.Errorf("%s: error %v, want one containing %q", c.json, err, c.err)
		}
	}
}

func TestOpensAt(t *testing.T) {
	r := Rollout{Start: t0, Waves: []Wave{{Share: 0.1, AfterSeconds: 0}, {Share: 0.6, AfterSeconds: 60}}}
	for _, c := range []struct {
		seed  float64
		after time.Duration
	}{{0, 0}, {0.0999, 0}, {0.1, time.Minute}, {0.59, time.Minute}, {0.6, time.Minute}, {0.99, time.Minute}} {
		if got := r.OpensAt(c.seed); !got.Equal(t0.Add(c.after)) {
			t.Errorf("seed %v opens at %v, want %v", c.seed, got, t0.Add(c.after))
		}
	}
	if got := (&Rollout{}).OpensAt(0.5); !got.IsZero() {
		t.Errorf("no waves opens at %v", got)
	}
}

func FuzzParseRollout(f *testing.F) {
	f.Add([]byte(`{"start": "2026-12-03T12:00:00Z", "waves": [{"share": 0.1, "afterSeconds": 0}, {"share": 1, "afterSeconds": 3600}]}`))
	f.Add([]byte(`{"paused": true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRollout(b)
		if err != nil {
			return
		}
		if err := r.Check(); err != nil {
			t.Fatalf("parsed but does not check: %v", err)
		}
		// Every seed finds a time no earlier than the start.
		for _, s := range []float64{0, 0.5, 0.999999} {
			if at := r.OpensAt(s); len(r.Waves) > 0 && at.Before(r.Start) {
				t.Fatalf("seed %v opens at %v, before the start %v", s, at, r.Start)
			}
		}
	})
}
