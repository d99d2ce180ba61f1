package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/store"
	"github.com/nodeboot/nodeboot/internal/supervise"
)

const imageDir = "/apps/app"

type rig struct {
	app     *App
	svc     *fakeService
	st      *fakeStore
	persist *fakePersist
	health  *health
}

// hexOf is a made-up version's hex digest; its first 12 digits (what
// messages show) are n.
func hexOf(n int) string  { return fmt.Sprintf("%012d%052x", n, 0) }
func digest(n int) string { return "sha256:" + hexOf(n) }
func dirOf(n int) string  { return "/data/apps/app/" + hexOf(n) }

func newRig(t *testing.T, mod ...func(*Config, *rig)) *rig {
	t.Helper()
	r := &rig{svc: newFakeService(imageDir), st: newFakeStore(), persist: newFakePersist()}
	r.health = &health{svc: r.svc, unhealthy: map[string]bool{}}
	cfg := Config{
		App:     "app",
		Service: r.svc,
		Store:   r.st,
		Persist: r.persist,
		Health:  r.health.check,
		Command: func(v *store.Version) supervise.Command {
			if v == nil {
				return supervise.Command{Dir: imageDir, Args: []string{imageDir + "/server.js"}}
			}
			return supervise.Command{Dir: v.Dir, Args: []string{v.Dir + "/server.js"}}
		},
		Log:           t.Logf,
		HealthTimeout: 2 * time.Second,
		Settle:        -1,
		Poll:          5 * time.Millisecond,
	}
	for _, m := range mod {
		m(&cfg, r)
	}
	r.app = New(cfg)
	return r
}

func (r *rig) deploy(t *testing.T, n int) (Result, error) {
	t.Helper()
	return r.app.Deploy(context.Background(), digest(n), strings.NewReader("app"), bundle.Limits{})
}

func (r *rig) mustDeploy(t *testing.T, n int) Result {
	t.Helper()
	res, err := r.deploy(t, n)
	if err != nil {
		t.Fatalf("deploy %d: %v", n, err)
	}
	return res
}

// check asserts what runs, what the app reports, and that only the
// running version's code dir has persist mounts.
func (r *rig) check(t *testing.T, dir, version, previous string) {
	t.Helper()
	if got := r.svc.dir(); got != dir {
		t.Errorf("the service runs %s, want %s", got, dir)
	}
	if v, p := r.app.Versions(); v != version || p != previous {
		t.Errorf("versions %s/%s, want %s/%s", Short(v), Short(p), Short(version), Short(previous))
	}
	want := []string{}
	if dir != imageDir {
		want = append(want, dir)
	}
	got := r.persist.dirs()
	if got == nil {
		got = []string{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("persist mounts on %q, want only on the running version %q", got, want)
	}
}

func TestDeployAndRollbackSequence(t *testing.T) {
	r := newRig(t)
	r.check(t, imageDir, Image, "")
	res := r.mustDeploy(t, 1)
	if res.Version != digest(1) || res.Previous != Image || len(res.Warnings) != 0 {
		t.Errorf("result %+v", res)
	}
	r.check(t, dirOf(1), digest(1), Image)
	r.mustDeploy(t, 2)
	r.check(t, dirOf(2), digest(2), digest(1))
	r.mustDeploy(t, 3)
	r.check(t, dirOf(3), digest(3), digest(2))
	// The running version again: a restart of it, nothing else moves.
	r.mustDeploy(t, 3)
	r.check(t, dirOf(3), digest(3), digest(2))
	if !slices.Equal(r.st.removed, []string{digest(1)}) {
		t.Errorf("the store removed %q, want version 1", r.st.removed)
	}
	if _, err := r.app.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.check(t, dirOf(2), digest(2), digest(3))
	if r.st.cur != digest(2) || r.st.prev != digest(3) {
		t.Errorf("store %s/%s after a rollback", r.st.cur, r.st.prev)
	}
}

func TestRollbackToTheImage(t *testing.T) {
	r := newRig(t)
	r.mustDeploy(t, 1)
	res, err := r.app.Rollback(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Version != Image || res.Previous != digest(1) {
		t.Errorf("result %+v", res)
	}
	r.check(t, imageDir, Image, digest(1))
	if r.st.cur != "" || r.st.prev != digest(1) {
		t.Errorf("store %q/%q: the reset was not recorded", r.st.cur, r.st.prev)
	}
	// And forward again to the deployed version.
	if _, err := r.app.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.check(t, dirOf(1), digest(1), Image)

	// The image's version unhealthy: the deployed one stays, recorded.
	r = newRig(t)
	r.mustDeploy(t, 1)
	r.health.unhealthy[imageDir] = true
	var ue *UnhealthyError
	if _, err := r.app.Rollback(context.Background()); !errors.As(err, &ue) {
		t.Fatalf("rollback to an unhealthy image: %v", err)
	}
	r.check(t, dirOf(1), digest(1), Image)
	if r.st.cur != digest(1) {
		t.Errorf("the store's current moved to %q", r.st.cur)
	}
}

func TestNoPrevious(t *testing.T) {
	r := newRig(t)
	if _, err := r.app.Rollback(context.Background()); !errors.Is(err, ErrNoPrevious) {
		t.Errorf("rollback of the image: %v, want ErrNoPrevious", err)
	}
	r = newRig(t, func(c *Config, _ *rig) { c.Store = nil })
	if _, err := r.deploy(t, 1); !errors.Is(err, ErrNoStore) {
		t.Errorf("deploy without a store: %v", err)
	}
}

func TestUnhealthyVersionReverts(t *testing.T) {
	for _, c := range []struct {
		name, want string
		spoil      func(r *rig)
	}{
		{"never answers", "connection refused", func(r *rig) { r.health.unhealthy[dirOf(2)] = true }},
		{"crashes on start", "it exited: exit status 3", func(r *rig) { r.svc.crash[dirOf(2)] = "missing DATABASE_URL" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			r.mustDeploy(t, 1)
			c.spoil(r)
			_, err := r.deploy(t, 2)
			var ue *UnhealthyError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "the previous version serves again") {
				t.Fatalf("deploy of a bad version: %v", err)
			}
			if c.name == "crashes on start" && !slices.Contains(ue.Logs, "missing DATABASE_URL") {
				t.Errorf("the error lacks the new version's last lines: %q", ue.Logs)
			}
			r.check(t, dirOf(1), digest(1), Image)
			if r.st.cur != digest(1) {
				t.Errorf("the store's current moved to %s", r.st.cur)
			}
		})
	}
}

func TestFailedSwitchReverts(t *testing.T) {
	r := newRig(t)
	r.mustDeploy(t, 1)
	r.st.switchErr = fmt.Errorf("renaming current: %w", syscall.EROFS)
	_, err := r.deploy(t, 2)
	if !errors.Is(err, ErrNotRecorded) || !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "previous version serves again") {
		t.Fatalf("deploy whose switch fails: %v", err)
	}
	// What runs is what a reboot would run.
	r.check(t, dirOf(1), digest(1), Image)
}

// TestCleanupFailureIsAWarning: the store recorded the switch but could
// not remove the version that fell off. The deploy happened: it is not
// an error that says otherwise (issue 12, item 1: a 500 after a switch).
func TestCleanupFailureIsAWarning(t *testing.T) {
	r := newRig(t)
	r.mustDeploy(t, 1)
	r.mustDeploy(t, 2)
	r.st.gcErr = fmt.Errorf("unlinkat: %w", syscall.EBUSY)
	res, err := r.deploy(t, 3)
	if err != nil {
		t.Fatalf("a deploy that switched answered an error: %v", err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "busy") {
		t.Errorf("warnings %q, want the clean-up's failure", res.Warnings)
	}
	r.check(t, dirOf(3), digest(3), digest(2))
}

func TestStagingErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want error
		msg  string
	}{
		{"ENOSPC", fmt.Errorf("extracting: write app/x: %w", syscall.ENOSPC), ErrDiskFull, "no room"},
		{"EIO", fmt.Errorf("extracting: %w", syscall.EIO), ErrIO, "disk may be failing"},
		{"bad bundle", fmt.Errorf("%w: not zstd", bundle.ErrInvalid), bundle.ErrInvalid, "not zstd"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			r.st.receiveErr = c.err
			_, err := r.deploy(t, 1)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("deploy: %v; want %v saying %q", err, c.want, c.msg)
			}
			if len(r.svc.log()) != 0 {
				t.Errorf("the service was touched: %q", r.svc.log())
			}
			r.check(t, imageDir, Image, "")
		})
	}
	r := newRig(t)
	r.persist.bindErr = fmt.Errorf("persist db: creating x: %w", syscall.ENOSPC)
	if _, err := r.deploy(t, 1); !errors.Is(err, ErrDiskFull) {
		t.Errorf("a full disk while binding: %v", err)
	}
	r.check(t, imageDir, Image, "")
}

func TestAdmitRefuses(t *testing.T) {
	r := newRig(t, func(c *Config, _ *rig) {
		c.Admit = func(*store.Version) error { return errors.New("the new version needs node >=99") }
	})
	if _, err := r.deploy(t, 1); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "node >=99") {
		t.Errorf("deploy: %v", err)
	}
	r = newRig(t)
	_, err := r.app.Deploy(context.Background(), digest(1), strings.NewReader("other"), bundle.Limits{})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), `for app "other"`) {
		t.Errorf("another app's bundle: %v", err)
	}
	r.check(t, imageDir, Image, "")
}

func TestCancelledDeployReverts(t *testing.T) {
	r := newRig(t)
	r.mustDeploy(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	r.health.hook = func(context.Context) error {
		if r.svc.dir() == dirOf(2) {
			cancel()
			return errUnhealthy
		}
		return nil
	}
	_, err := r.app.Deploy(ctx, digest(2), strings.NewReader("app"), bundle.Limits{})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("cancelled deploy: %v", err)
	}
	r.check(t, dirOf(1), digest(1), Image)
}

// TestRestartWaitsForDeploy: a restart asked for while a deploy's health
// gate runs happens after the deploy, and cannot make the gate see a
// "crash" and roll the deploy back (issue 12, item 14).
func TestRestartWaitsForDeploy(t *testing.T) {
	r := newRig(t)
	restarted := make(chan struct{}, 10)
	r.svc.onRestart = func() { restarted <- struct{}{} }
	var (
		once   sync.Once
		pid    int
		rerr   error
		doneRs = make(chan struct{})
	)
	r.health.hook = func(context.Context) error {
		if r.svc.dir() != dirOf(1) {
			return nil
		}
		once.Do(func() {
			<-restarted // the deploy's own restart
			go func() {
				pid, rerr = r.app.Restart(context.Background())
				close(doneRs)
			}()
			// Give an unserialised restart every chance to land inside
			// the gate; a serialised one waits, and this wait ends.
			select {
			case <-restarted:
			case <-time.After(200 * time.Millisecond):
			}
		})
		return nil
	}
	r.app.cfg.Settle = 20 * time.Millisecond
	if _, err := r.deploy(t, 1); err != nil {
		t.Fatalf("a restart during the health gate undid the deploy: %v", err)
	}
	<-doneRs
	if rerr != nil || pid == 0 {
		t.Errorf("restart: %d, %v", pid, rerr)
	}
	r.check(t, dirOf(1), digest(1), Image)
	ev := r.svc.log()
	if want := []string{"restart " + dirOf(1), "restart " + dirOf(1)}; !slices.Equal(ev, want) {
		t.Errorf("service events %q, want the deploy's start then the restart", ev)
	}
}

func TestRestartHonoursCancellation(t *testing.T) {
	r := newRig(t)
	r.app.lock <- struct{}{} // a transaction holds the app
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.app.Restart(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("restart with a cancelled context while busy: %v", err)
	}
}

func TestBusy(t *testing.T) {
	gate := NewGate()
	block := make(chan struct{})
	entered := make(chan struct{})
	r := newRig(t, func(c *Config, r *rig) { c.Gate = gate })
	r.health.hook = func(context.Context) error {
		if r.svc.dir() == dirOf(1) {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-block
		}
		return nil
	}
	other := newRig(t, func(c *Config, _ *rig) { c.Gate = gate; c.App = "other" })
	done := make(chan error)
	go func() { _, err := r.deploy(t, 1); done <- err }()
	<-entered
	if _, err := r.deploy(t, 2); !errors.Is(err, ErrBusy) {
		t.Errorf("a second deploy of the same app: %v, want busy", err)
	}
	if _, err := r.app.Rollback(context.Background()); !errors.Is(err, ErrBusy) {
		t.Errorf("a rollback during a deploy: %v, want busy", err)
	}
	if _, err := other.app.Deploy(context.Background(), digest(3), strings.NewReader("other"), bundle.Limits{}); !errors.Is(err, ErrBusy) {
		t.Errorf("another app's deploy through the same gate: %v, want busy", err)
	}
	close(block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Free again.
	r.health.hook = nil
	r.mustDeploy(t, 2)
}

func TestBootRunsTheCurrentVersion(t *testing.T) {
	st := newFakeStore()
	for i := 1; i <= 2; i++ {
		st.versions[digest(i)] = &store.Version{App: "app", Digest: digest(i), Dir: dirOf(i)}
	}
	st.cur, st.prev = digest(2), digest(1)
	r := newRig(t, func(c *Config, r *rig) { r.st = st; c.Store = st })
	r.check(t, dirOf(2), digest(2), digest(1))

	// Its persist dirs cannot be bound: the image's version runs.
	p := newFakePersist()
	p.bindErr = errors.New("persist db: a symlink is in the way")
	r = newRig(t, func(c *Config, r *rig) { r.st = st; c.Store = st; r.persist = p; c.Persist = p })
	r.check(t, imageDir, Image, "")
}

// TestImageFirst is an OS update's trial boot over a store whose current
// version was deployed on the old image: the trial runs the image's code
// and leaves the store alone (a failed trial boots the old image with its
// deployed version); KeepImage at the commit makes the image's code
// current, with the deployed version previous for a rollback.
func TestImageFirst(t *testing.T) {
	st := newFakeStore()
	for i := 1; i <= 2; i++ {
		st.versions[digest(i)] = &store.Version{App: "app", Digest: digest(i), Dir: dirOf(i)}
	}
	st.cur, st.prev = digest(2), digest(1)
	trial := newRig(t, func(c *Config, r *rig) { r.st = st; c.Store = st; c.ImageFirst = true })
	trial.check(t, imageDir, Image, "")
	if st.cur != digest(2) || st.prev != digest(1) {
		t.Fatalf("the trial boot changed the store: current %s, previous %s", Short(st.cur), Short(st.prev))
	}
	// The trial failed: the old image boots its deployed version.
	old := newRig(t, func(c *Config, r *rig) { r.st = st; c.Store = st })
	old.check(t, dirOf(2), digest(2), digest(1))

	// The trial again, committed this time.
	trial = newRig(t, func(c *Config, r *rig) { r.st = st; c.Store = st; c.ImageFirst = true })
	if err := trial.app.KeepImage(); err != nil {
		t.Fatal(err)
	}
	trial.check(t, imageDir, Image, digest(2))
	if st.cur != "" || st.prev != digest(2) {
		t.Fatalf("after KeepImage: current %q, previous %s, want the image's and %s", Short(st.cur), Short(st.prev), Short(digest(2)))
	}
	// The boots after it run the image's code; a rollback returns to
	// the version deployed before the update.
	next := newRig(t, func(c *Config, r *rig) { r.st = st; c.Store = st })
	next.check(t, imageDir, Image, "")
	if _, err := trial.app.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	trial.check(t, dirOf(2), digest(2), Image)
}
