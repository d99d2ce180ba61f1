package follow

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

const interval = 5 * time.Minute

type world struct {
	t     *testing.T
	reg   *registry
	node  *node
	clock *clock
	state *memState
	f     *Follower
	logs  []string
}

func newWorld(t *testing.T, apps ...string) *world {
	w := &world{t: t, reg: newRegistry(), node: newNode(apps...), clock: &clock{now: t0}, state: &memState{}}
	w.boot(1)
	return w
}

// boot starts a follower over the world's state, as a (re)boot does.
func (w *world) boot(seed uint64) {
	w.f = New(Config{
		Ref: "registry.test/shop:stable", Interval: interval,
		Source: w.reg, Node: w.node, State: w.state, Clock: w.clock,
		Rand: rand.New(rand.NewPCG(seed, seed)),
		Log:  func(f string, a ...any) { w.logs = append(w.logs, f) },
	})
}

// check runs one check and checks its wait is within what it may be.
func (w *world) check() time.Duration {
	w.t.Helper()
	d := w.f.Check(context.Background())
	if d <= 0 || d > interval+interval/2 {
		w.t.Fatalf("wait %v, want within (0, interval + its jitter or backoff's]", d)
	}
	return d
}

func TestAppliesWhatTheTagNames(t *testing.T) {
	w := newWorld(t, "web")
	v2 := w.reg.push(&Release{Version: "v2", Apps: []AppRelease{w.reg.app("web", "web v2")}})
	d := w.check()
	if d < interval {
		t.Errorf("wait %v after a good check, want at least the interval", d)
	}
	st := w.f.Status()
	if w.node.version("web") != digestOf([]byte("web v2")) || st.Applied != v2 || st.State != StateIdle || st.Version != "v2" || st.LastError != "" {
		t.Fatalf("after v2: node runs %s, status %+v", w.node.version("web"), st)
	}
	if !st.LastCheck.Equal(t0) || st.Target != v2 {
		t.Errorf("status %+v, want last check %v and target %s", st, t0, v2)
	}
	// Unchanged: nothing fetched or deployed again.
	w.check()
	w.check()
	if n := w.reg.fetchCount(v2); n != 1 {
		t.Errorf("v2 fetched %d times, want once", n)
	}
	if n := w.node.deployCount(); n != 1 {
		t.Errorf("%d deploys, want 1", n)
	}
	// A new tag: applied.
	v3 := w.reg.push(&Release{Version: "v3", Apps: []AppRelease{w.reg.app("web", "web v3")}})
	w.check()
	if w.f.Status().Applied != v3 || w.node.version("web") != digestOf([]byte("web v3")) {
		t.Fatalf("after v3: %+v", w.f.Status())
	}
	// Back to v2 (a promote of the old release): followed too.
	w.reg.mu.Lock()
	w.reg.tag = v2
	w.reg.mu.Unlock()
	w.check()
	if w.node.version("web") != digestOf([]byte("web v2")) {
		t.Fatalf("after going back to v2 the node runs %s", w.node.version("web"))
	}
}

func TestAlreadyRunningIsNotDeployed(t *testing.T) {
	w := newWorld(t, "web", "worker")
	w.node.apps["worker"] = digestOf([]byte("worker v1"))
	v := w.reg.push(&Release{Apps: []AppRelease{w.reg.app("web", "web v2"), w.reg.app("worker", "worker v1")}})
	w.check()
	if got := w.node.deploys; len(got) != 1 || !strings.HasPrefix(got[0], "web@") {
		t.Fatalf("deploys %v, want only web's", got)
	}
	if w.f.Status().Applied != v {
		t.Fatalf("status %+v", w.f.Status())
	}
}

func TestUnhealthyIsNotRetriedUntilTheTagMoves(t *testing.T) {
	w := newWorld(t, "web")
	v2 := w.reg.push(&Release{Version: "v2", Apps: []AppRelease{w.reg.app("web", "web v2")}})
	w.check()
	v3 := w.reg.push(&Release{Version: "v3", Apps: []AppRelease{w.reg.app("web", "crash v3")}})
	w.check()
	st := w.f.Status()
	if st.State != StateFailed || !strings.Contains(st.LastError, "did not become healthy") || !strings.Contains(st.LastError, "app web") {
		t.Fatalf("after a crashing v3: %+v", st)
	}
	if st.Applied != v2 || w.node.version("web") != digestOf([]byte("web v2")) {
		t.Fatalf("after a crashing v3 the node should still run v2: %+v, runs %s", st, w.node.version("web"))
	}
	for range 5 {
		w.check()
	}
	// A reboot does not make it try again either.
	w.boot(2)
	if w.f.Status().LastError == "" {
		t.Errorf("after a reboot the refusal is not reported: %+v", w.f.Status())
	}
	for range 3 {
		w.check()
	}
	if n := w.node.deployCount(); n != 2 {
		t.Errorf("%d deploy attempts, want 2 (v2, then v3 once)", n)
	}
	if n := w.reg.fetchCount(v3); n != 1 {
		t.Errorf("v3 fetched %d times, want once", n)
	}
	if st := w.f.Status(); st.State != StateFailed || st.Target != v3 {
		t.Errorf("status %+v", st)
	}
	// The tag moves: the next release is applied and the error is gone.
	v4 := w.reg.push(&Release{Version: "v4", Apps: []AppRelease{w.reg.app("web", "web v4")}})
	w.check()
	if st := w.f.Status(); st.Applied != v4 || st.LastError != "" || st.State != StateIdle {
		t.Fatalf("after v4: %+v", st)
	}
}

func TestUnverifiedIsNeverApplied(t *testing.T) {
	w := newWorld(t, "web")
	w.reg.push(&Release{Version: "v2", Apps: []AppRelease{w.reg.app("web", "web v2")}})
	w.check()
	bad := w.reg.pushRejected("signed by key 3f2a…, the node trusts 9c1e…")
	for range 3 {
		w.check()
	}
	st := w.f.Status()
	if st.State != StateFailed || !strings.Contains(st.LastError, "signed by key") || !strings.Contains(st.LastError, ErrRejected.Error()) {
		t.Fatalf("status %+v", st)
	}
	if w.node.deployCount() != 1 || w.node.version("web") != digestOf([]byte("web v2")) {
		t.Fatalf("deploys %v", w.node.deploys)
	}
	if n := w.reg.fetchCount(bad); n != 1 {
		t.Errorf("the rejected digest was fetched %d times, want once", n)
	}
}

func TestReleaseForOtherApps(t *testing.T) {
	w := newWorld(t, "web")
	w.reg.push(&Release{Apps: []AppRelease{w.reg.app("api", "api v2")}})
	w.check()
	st := w.f.Status()
	if st.State != StateFailed || !strings.Contains(st.LastError, "app api, which this node does not run") {
		t.Fatalf("status %+v", st)
	}
	if w.node.deployCount() != 0 {
		t.Fatal("deployed a release for other apps")
	}
}

func TestRegistryDown(t *testing.T) {
	w := newWorld(t, "web")
	v2 := w.reg.push(&Release{Version: "v2", Apps: []AppRelease{w.reg.app("web", "web v2")}})
	w.check()
	w.reg.setDown(errors.New("dial tcp 10.0.2.2:5000: connect: connection refused"))
	v3 := w.reg.push(&Release{Version: "v3", Apps: []AppRelease{w.reg.app("web", "web v3")}})
	var waits []time.Duration
	for range 8 {
		waits = append(waits, w.check())
	}
	st := w.f.Status()
	if st.State != StateOffline || !strings.Contains(st.LastError, "connection refused") || st.Failures != 8 {
		t.Fatalf("status while down: %+v", st)
	}
	if st.Applied != v2 || w.node.version("web") != digestOf([]byte("web v2")) || !st.LastCheck.Equal(t0) {
		t.Fatalf("while down the node should keep v2 and its last good check: %+v", st)
	}
	// Backoff: starts short, grows, never beyond the interval plus half.
	if waits[0] >= interval/2 {
		t.Errorf("first retry after %v, want well before the interval", waits[0])
	}
	for i, d := range waits {
		if d > interval+interval/2 {
			t.Errorf("retry %d after %v, more than the interval and its jitter", i, d)
		}
	}
	if waits[len(waits)-1] < interval {
		t.Errorf("last retry after %v: the backoff did not reach the interval (%v)", waits[len(waits)-1], waits)
	}
	w.reg.setDown(nil)
	w.check()
	if st := w.f.Status(); st.Applied != v3 || st.State != StateIdle || st.LastError != "" || st.Failures != 0 {
		t.Fatalf("after the registry returned: %+v", st)
	}
}

func TestCutDownloadIsRetried(t *testing.T) {
	w := newWorld(t, "web")
	w.reg.setCut(3)
	v2 := w.reg.push(&Release{Version: "v2", Apps: []AppRelease{w.reg.app("web", "web v2")}})
	w.check()
	st := w.f.Status()
	if st.State != StateOffline || !strings.Contains(st.LastError, "connection reset") {
		t.Fatalf("after a cut download: %+v", st)
	}
	w.reg.setCut(0)
	w.check()
	if st := w.f.Status(); st.Applied != v2 {
		t.Fatalf("the cut download was not retried: %+v", st)
	}
}

func TestOSUpdate(t *testing.T) {
	w := newWorld(t, "web")
	rel := &Release{Version: "v2", Apps: []AppRelease{w.reg.app("web", "web v2")},
		OS: &OSRelease{Image: "img-2", Version: 2, Open: w.reg.blob([]byte("payload 2"))}}
	v2 := w.reg.push(rel)
	w.check()
	if st := w.f.Status(); st.State != StateReboot || st.Applied != "" {
		t.Fatalf("after an OS release: %+v", st)
	}
	if len(w.node.installs) != 1 || w.node.installs[0] != "payload 2" || w.node.version("web") != digestOf([]byte("web v2")) {
		t.Fatalf("installs %v, web %s: want the app deployed, then the OS", w.node.installs, w.node.version("web"))
	}
	// The trial boot: the follower waits for its outcome.
	w.node.os = OSState{Image: "img-2", Trial: true}
	w.boot(1)
	w.check()
	if st := w.f.Status(); st.State != StateTrial || w.node.deployCount() != 1 {
		t.Fatalf("on the trial boot: %+v", st)
	}
	// Committed: applied.
	w.node.os = OSState{Image: "img-2"}
	w.check()
	if st := w.f.Status(); st.State != StateIdle || st.Applied != v2 {
		t.Fatalf("after the commit: %+v", st)
	}
	if len(w.node.installs) != 1 {
		t.Fatalf("installs %v", w.node.installs)
	}
}

func TestFailedTrialIsNotRetried(t *testing.T) {
	w := newWorld(t, "web")
	w.reg.push(&Release{Version: "v3", OS: &OSRelease{Image: "img-3", Version: 3, Open: w.reg.blob([]byte("payload 3"))}})
	w.check()
	// The trial failed: the node is back on img-1 and its updater says why.
	w.node.os = OSState{Image: "img-1", FailedImage: "img-3", FailedReason: "app web crash-loops"}
	w.boot(1)
	for range 3 {
		w.check()
	}
	st := w.f.Status()
	if st.State != StateFailed || !strings.Contains(st.LastError, "img-3 failed its trial") || !strings.Contains(st.LastError, "crash-loops") {
		t.Fatalf("status %+v", st)
	}
	if len(w.node.installs) != 1 {
		t.Fatalf("the failed image was installed %d times", len(w.node.installs))
	}
}

func TestOSRefusedIsNotRetried(t *testing.T) {
	w := newWorld(t, "web")
	w.node.osRefuse = errors.New("the payload is not signed by a key this node trusts")
	w.reg.push(&Release{OS: &OSRelease{Image: "img-2", Version: 2, Open: w.reg.blob([]byte("payload"))}})
	w.check()
	w.check()
	st := w.f.Status()
	if st.State != StateFailed || !strings.Contains(st.LastError, "not signed by a key this node trusts") {
		t.Fatalf("status %+v", st)
	}
}

func TestSeedIsStable(t *testing.T) {
	w := newWorld(t, "web")
	seed := w.f.Status().Seed
	w.boot(99)
	if got := w.f.Status().Seed; got != seed {
		t.Fatalf("seed %v after a reboot, was %v", got, seed)
	}
	w.state.b = []byte("{not json")
	w.boot(7)
	if got := w.f.Status().Seed; got == seed || got < 0 || got >= 1 {
		t.Fatalf("a damaged record gave seed %v", got)
	}
}

func TestRunWaitsWithJitter(t *testing.T) {
	w := newWorld(t, "web")
	w.reg.push(&Release{Apps: []AppRelease{w.reg.app("web", "web v2")}})
	ctx, cancel := context.WithCancel(context.Background())
	w.clock.onWait = func(n int) {
		if n == 50 {
			cancel()
		}
	}
	w.f.Run(ctx)
	distinct := map[time.Duration]bool{}
	for _, d := range w.clock.slept {
		if d < interval || d > interval+interval/5 {
			t.Fatalf("waited %v, want interval %v plus at most a fifth", d, interval)
		}
		distinct[d] = true
	}
	if len(distinct) < 10 {
		t.Errorf("only %d distinct waits in 50: no jitter", len(distinct))
	}
	if st := w.f.Status(); !st.NextCheck.After(st.LastCheck) {
		t.Errorf("next check %v not after the last %v", st.NextCheck, st.LastCheck)
	}
}

// blockingClock's Sleep waits for its context alone, and says when it
// starts waiting.
type blockingClock struct {
	*clock
	waiting chan struct{}
}

func (c blockingClock) Sleep(ctx context.Context, d time.Duration) error {
	c.waiting <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

// TestWake: Wake ends Run's wait at once (the owner just gave the node
// pull credentials); without it the wait would never end here.
func TestWake(t *testing.T) {
	w := newWorld(t, "web")
	bc := blockingClock{clock: w.clock, waiting: make(chan struct{})}
	w.f = New(Config{Ref: "registry.test/shop:stable", Interval: interval, Source: w.reg, Node: w.node, State: w.state, Clock: bc})
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan struct{})
	go func() { w.f.Run(ctx); close(ended) }()
	waitOn := func(what string) {
		t.Helper()
		select {
		case <-bc.waiting:
		case <-time.After(time.Minute):
			t.Fatalf("the follower did not %s", what)
		}
	}
	waitOn("wait after its first check")
	w.reg.mu.Lock()
	n := w.reg.resolves
	w.reg.mu.Unlock()
	w.f.Wake()
	waitOn("check again after Wake")
	w.reg.mu.Lock()
	if w.reg.resolves != n+1 {
		t.Errorf("resolves %d after Wake, want %d", w.reg.resolves, n+1)
	}
	w.reg.mu.Unlock()
	cancel()
	<-ended
}
