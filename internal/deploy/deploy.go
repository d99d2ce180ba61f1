// Package deploy is the transaction that changes which version of an app
// runs: admit → stage → switch → health gate → commit | revert.
//
//   - admit: one transaction per app at a time (a second deploy or rollback
//     is refused as busy; a restart waits for the transaction to end), and
//     optionally one deploy per node (Gate);
//   - stage: the version store receives and verifies the bundle, the
//     image's own checks (Config.Admit) accept it, its persist dirs are
//     bound into its code dir;
//   - switch: the service runs the new version in place of the old;
//   - health gate: the new process starts, Health answers within
//     HealthTimeout, and it is still the same process Settle later;
//   - commit: the store records it as current (a reboot runs it); the old
//     version's persist dirs are unbound;
//   - revert (unhealthy, cancelled, or the store could not record it): the
//     old command runs again and the new version's persist dirs are unbound.
//
// It knows the rest of PID 1 only through two small interfaces, Service
// (the supervised process) and Store (the version store), plus Persist and
// Health, so its tests run anywhere with fakes.
//
// Persist mounts live only on the code dir of the version that runs (and,
// during a transaction, of the one being tried): a version that is not
// running has none, so the store's removal of a version that falls off
// never meets the app's persistent data (issue 12, item 1).
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/store"
	"github.com/nodeboot/nodeboot/internal/supervise"
)

// Service is the app's supervised process (*supervise.Service).
type Service interface {
	Command() supervise.Command
	SetCommand(supervise.Command)
	// Restart stops the running process and starts the command again; it
	// does not wait.
	Restart()
	Status() supervise.Status
	Subscribe() (<-chan string, func())
}

// Store is the version store (*store.Store).
type Store interface {
	Receive(app string, body io.Reader, digest string, lim bundle.Limits) (*store.Version, error)
	Current(app string) (*store.Version, error)
	Previous(app string) (*store.Version, error)
	Switch(app string, v *store.Version) error
	Rollback(app string) (*store.Version, error)
	Reset(app string) error
}

// Persist binds and unbinds an app's persist dirs in a code dir
// (internal/persist). Bind must be idempotent.
type Persist interface {
	Bind(codeDir string) error
	Unbind(codeDir string) error
}

// Health probes the app once: nil when it serves (its port accepts, its
// health path answers 2xx). The gate calls it until it succeeds.
type Health func(ctx context.Context) error

// Image is the version label of the image's own code.
const Image = "image"

// Defaults for Config's durations.
const (
	DefaultHealthTimeout = 30 * time.Second
	DefaultSettle        = 2 * time.Second
	defaultPoll          = 100 * time.Millisecond
	// maxLogLines is how many of the new version's last lines an
	// unhealthy answer carries.
	maxLogLines = 50
)

// Errors of a transaction, wrapped with the reason.
var (
	// ErrBusy: another deploy or rollback of this app (or, with a Gate,
	// of any app) is in progress.
	ErrBusy = errors.New("busy")
	// ErrNoStore: this node keeps no versions (/data has no store).
	ErrNoStore = errors.New("no version store")
	// ErrRefused: the bundle is not one this image can run (another app's,
	// a Node range or a library the image lacks). Nothing switched.
	ErrRefused = errors.New("version refused")
	// ErrDiskFull: /data ran out of space while staging (ENOSPC).
	ErrDiskFull = errors.New("disk full")
	// ErrIO: the disk failed while staging (EIO).
	ErrIO = errors.New("I/O error")
	// ErrNoPrevious: nothing to roll back to.
	ErrNoPrevious = errors.New("no previous version")
	// ErrNotRecorded: the new version was healthy but the store could
	// not make it current; the old version runs again.
	ErrNotRecorded = errors.New("could not record the switch")
)

// UnhealthyError is a version that did not become healthy (or a
// transaction cancelled before it did); the previous version runs again.
type UnhealthyError struct {
	Msg  string
	Logs []string // the new version's last lines
	Err  error    // the cause (context.Canceled when cancelled)
}

func (e *UnhealthyError) Error() string { return e.Msg }
func (e *UnhealthyError) Unwrap() error { return e.Err }

// Config is one app's transaction set-up.
type Config struct {
	App     string
	Service Service
	Store   Store // nil: deploys are refused (ErrNoStore), the image runs
	Persist Persist
	Health  Health
	// Command is what runs a version; nil v is the image's own code.
	Command func(v *store.Version) supervise.Command
	// Admit refuses a received version this image cannot run (nil: all).
	Admit func(v *store.Version) error
	// Gate, shared by several apps, allows one deploy or rollback at a
	// time among them (nil: no node-wide limit).
	Gate *Gate
	// Log receives what happens, for the console.
	Log func(format string, args ...any)
	// ImageFirst runs the image's own code at boot whatever the store
	// names current, and leaves the store as it is: an OS update's trial
	// boot must test the apps the update carries, and a failed trial
	// returns to the old image with its deployed versions as they were.
	// KeepImage makes the choice last once the update is committed.
	ImageFirst bool

	HealthTimeout time.Duration // default DefaultHealthTimeout
	Settle        time.Duration // default DefaultSettle; <0: none
	Poll          time.Duration // how often the gate looks; default 100 ms
}

// Result is a committed transaction.
type Result struct {
	Version, Previous string // digests, or Image
	// Warnings are things that went wrong after the commit, which did
	// not undo it (an old version that could not be removed).
	Warnings []string
}

// App runs the transactions of one app. Its methods may be called from
// several goroutines.
type App struct {
	cfg  Config
	lock chan struct{} // held by a transaction or a restart

	running *store.Version // nil: the image's code; guarded by lock

	mu      sync.Mutex // guards version and prev, read by Versions
	version string
	prev    string
}

// New returns the App for cfg and chooses what it runs at boot: the
// store's current version with its persist dirs bound, else the image's
// code. It sets the service's command, so call it before the service runs.
func New(cfg Config) *App {
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.Settle == 0 {
		cfg.Settle = DefaultSettle
	}
	if cfg.Poll <= 0 {
		cfg.Poll = defaultPoll
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	if cfg.Health == nil {
		cfg.Health = func(context.Context) error { return nil }
	}
	a := &App{cfg: cfg, lock: make(chan struct{}, 1), version: Image}
	a.boot()
	return a
}

func (a *App) boot() {
	st := a.cfg.Store
	if st == nil {
		return
	}
	v, err := st.Current(a.cfg.App)
	if err != nil {
		a.cfg.Log("app %s: deployed versions unreadable, running the image's: %v", a.cfg.App, err)
		return
	}
	if v == nil {
		return
	}
	if a.cfg.ImageFirst {
		a.cfg.Log("app %s: running the image's version (deployed version %s stays in the store)", a.cfg.App, Short(v.Digest))
		return
	}
	if err := a.bind(v); err != nil {
		a.cfg.Log("app %s: version %s: %v; running the image's version", a.cfg.App, Short(v.Digest), err)
		a.unbind(v)
		return
	}
	a.cfg.Service.SetCommand(a.cfg.Command(v))
	prev := Image
	if p, err := st.Previous(a.cfg.App); err == nil && p != nil {
		prev = p.Digest
	}
	a.running = v
	a.setVersions(v.Digest, prev)
	a.cfg.Log("app %s: running deployed version %s", a.cfg.App, Short(v.Digest))
}

// KeepImage makes the image's own code this app's current version in the
// store when it runs it (store Reset: the deployed version that was
// current becomes previous, so a rollback returns to it). PID 1 calls it
// before it commits an OS update, so that the boots after the trial run
// the apps the update carries, as the trial did (ImageFirst).
func (a *App) KeepImage() error {
	st := a.cfg.Store
	if st == nil {
		return nil
	}
	// Waits for a deploy or rollback in progress: its outcome decides.
	a.lock <- struct{}{}
	defer func() { <-a.lock }()
	if a.running != nil {
		// A version deployed during the trial runs: it stays current.
		return nil
	}
	cur, err := st.Current(a.cfg.App)
	if err != nil || cur == nil {
		return err
	}
	if err := st.Reset(a.cfg.App); err != nil {
		return fmt.Errorf("app %s: making the image's version current: %w", a.cfg.App, err)
	}
	a.setVersions(Image, cur.Digest)
	a.cfg.Log("app %s: the image's version is current; deployed version %s is previous", a.cfg.App, Short(cur.Digest))
	return nil
}

// Versions returns the running version and the one a rollback returns to
// ("" none), as digests or Image.
func (a *App) Versions() (version, previous string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.version, a.prev
}

func (a *App) setVersions(v, p string) {
	a.mu.Lock()
	a.version, a.prev = v, p
	a.mu.Unlock()
}

// Short is a digest's first 12 hex digits, for messages.
func Short(digest string) string {
	d := strings.TrimPrefix(digest, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

// Gate allows one transaction at a time among the apps that share it.
type Gate struct{ ch chan struct{} }

// NewGate returns an open gate.
func NewGate() *Gate { return &Gate{ch: make(chan struct{}, 1)} }

// admit takes the app's lock and the gate without waiting: a second
// deploy while one runs is a mistake to report, not to queue.
func (a *App) admit(what string) (release func(), err error) {
	select {
	case a.lock <- struct{}{}:
	default:
		return nil, fmt.Errorf("%w: a deploy, rollback or restart of %s is in progress; %s again when it ends", ErrBusy, a.cfg.App, what)
	}
	if g := a.cfg.Gate; g != nil {
		select {
		case g.ch <- struct{}{}:
		default:
			<-a.lock
			return nil, fmt.Errorf("%w: another app's deploy or rollback is in progress; %s again when it ends", ErrBusy, what)
		}
		return func() { <-g.ch; <-a.lock }, nil
	}
	return func() { <-a.lock }, nil
}

// Deploy receives a bundle whose sha256 is digest and switches the app to
// it once it is healthy.
func (a *App) Deploy(ctx context.Context, digest string, body io.Reader, lim bundle.Limits) (Result, error) {
	release, err := a.admit("deploy")
	if err != nil {
		return Result{}, err
	}
	defer release()
	if a.cfg.Store == nil {
		return Result{}, fmt.Errorf("%w: this node has no version store on /data", ErrNoStore)
	}
	v, err := a.stage(digest, body, lim)
	if err != nil {
		return Result{}, err
	}
	return a.switchTo(ctx, v, commitSwitch)
}

// stage receives v into the store, admits it and binds its persist dirs.
func (a *App) stage(digest string, body io.Reader, lim bundle.Limits) (*store.Version, error) {
	v, err := a.cfg.Store.Receive(a.cfg.App, body, digest, lim)
	if err != nil {
		return nil, stageError(err)
	}
	if v.Meta.App != a.cfg.App {
		return nil, fmt.Errorf("%w: the bundle is for app %q, not %q", ErrRefused, v.Meta.App, a.cfg.App)
	}
	if a.cfg.Admit != nil {
		if err := a.cfg.Admit(v); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRefused, err)
		}
	}
	if err := a.bind(v); err != nil {
		a.unbindUnlessRunning(v)
		return nil, stageError(fmt.Errorf("preparing version %s: %w", Short(v.Digest), err))
	}
	return v, nil
}

// stageError names a full or failing disk so the owner knows what to do.
func stageError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: /data has no room for this version (%w); free space on the node (a rollback and a new deploy drop the oldest version) or deploy a smaller bundle", ErrDiskFull, err)
	case errors.Is(err, syscall.EIO):
		return fmt.Errorf("%w: /data failed to read or write (%w); the disk may be failing: check the node's console and replace the disk", ErrIO, err)
	}
	return err
}

// Rollback runs the previous version (or the image's own) with the same
// health gate, then records it.
func (a *App) Rollback(ctx context.Context) (Result, error) {
	release, err := a.admit("roll back")
	if err != nil {
		return Result{}, err
	}
	defer release()
	_, prev := a.Versions()
	if a.cfg.Store == nil || prev == "" {
		return Result{}, fmt.Errorf("%w: app %s has no previous version", ErrNoPrevious, a.cfg.App)
	}
	if prev == Image {
		return a.switchTo(ctx, nil, commitReset)
	}
	v, err := a.cfg.Store.Previous(a.cfg.App)
	if err != nil || v == nil {
		return Result{}, fmt.Errorf("%w: app %s: the previous version is gone (%v)", ErrNoPrevious, a.cfg.App, err)
	}
	if err := a.bind(v); err != nil {
		a.unbindUnlessRunning(v)
		return Result{}, stageError(fmt.Errorf("preparing version %s: %w", Short(v.Digest), err))
	}
	return a.switchTo(ctx, v, commitRollback)
}

// Restart restarts the app and returns the new process's pid. It waits
// for a deploy or rollback in progress to end first: restarting in the
// middle of one would look like a crash to its health gate and undo it
// (issue 12, item 14).
func (a *App) Restart(ctx context.Context) (int, error) {
	select {
	case a.lock <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-a.lock }()
	svc := a.cfg.Service
	old := svc.Status().PID
	svc.Restart()
	// Answer with the new pid once there is one, so the caller sees it.
	deadline := time.Now().Add(a.cfg.HealthTimeout)
	for time.Now().Before(deadline) {
		s := svc.Status()
		if s.State == supervise.StateRunning && s.PID != 0 && s.PID != old {
			return s.PID, nil
		}
		if err := sleep(ctx, a.cfg.Poll); err != nil {
			return 0, err
		}
	}
	return svc.Status().PID, nil
}

type commitKind int

const (
	commitSwitch   commitKind = iota // a new version: Switch
	commitRollback                   // the previous version: Rollback
	commitReset                      // the image's code: Reset
)

// switchTo runs target (nil: the image's code) in place of what runs now;
// healthy and recorded → it is the app's version, else the old one runs
// again.
func (a *App) switchTo(ctx context.Context, target *store.Version, kind commitKind) (Result, error) {
	svc := a.cfg.Service
	oldCmd := svc.Command()
	old := a.running
	label := Image
	if target != nil {
		label = target.Digest
	}
	lines, cancel := svc.Subscribe()
	var recent []string
	collect := func() {
		for {
			select {
			case l := <-lines:
				recent = append(recent, l)
				if len(recent) > maxLogLines {
					recent = recent[1:]
				}
			default:
				return
			}
		}
	}
	a.cfg.Log("app %s: starting version %s", a.cfg.App, Short(label))
	before := svc.Status()
	svc.SetCommand(a.cfg.Command(target))
	svc.Restart()
	err := a.gate(ctx, before, collect)
	collect()
	cancel()
	if err != nil {
		a.cfg.Log("app %s: version %s unhealthy (%v): back to the previous version", a.cfg.App, Short(label), err)
		a.revert(oldCmd, old, target)
		what := "did not become healthy"
		if ctx.Err() != nil {
			what = "was cancelled before it was healthy"
		}
		return Result{}, &UnhealthyError{
			Msg:  fmt.Sprintf("version %s of %s %s: %v; the previous version serves again", Short(label), a.cfg.App, what, err),
			Logs: recent,
			Err:  err,
		}
	}

	res := Result{Version: label}
	if err := a.commit(target, old, kind); err != nil {
		if !a.committed(target) {
			a.cfg.Log("app %s: version %s runs but could not be recorded: %v; back to the previous version", a.cfg.App, Short(label), err)
			a.revert(oldCmd, old, target)
			return Result{}, fmt.Errorf("%w: version %s of %s was healthy, but recording it as current failed (%w); the previous version serves again, deploy again once /data is fixed", ErrNotRecorded, Short(label), a.cfg.App, err)
		}
		// Recorded: what failed came after (removing the version that
		// fell off). It stays until the next boot's clean-up.
		w := fmt.Sprintf("version %s is current, but cleaning up after the switch failed: %v", Short(label), err)
		a.cfg.Log("app %s: %s", a.cfg.App, w)
		res.Warnings = append(res.Warnings, w)
	}
	// The old version is not running any more: its persist mounts go, so
	// that nothing that removes it later can reach the persistent data.
	if old != nil && (target == nil || old.Dir != target.Dir) {
		if err := a.unbindDir(old.Dir); err != nil {
			w := fmt.Sprintf("the previous version's persist dirs stay mounted until the next boot: %v", err)
			a.cfg.Log("app %s: %s", a.cfg.App, w)
			res.Warnings = append(res.Warnings, w)
		}
	}
	oldLabel, oldPrev := a.Versions()
	a.running = target
	res.Previous = oldLabel
	if label == oldLabel {
		// The running version deployed again: the store kept its
		// previous, and so does the app.
		res.Previous = oldPrev
	}
	a.setVersions(label, res.Previous)
	a.cfg.Log("app %s: now running version %s (previous %s)", a.cfg.App, Short(label), Short(res.Previous))
	return res, nil
}

// commit records target in the store.
func (a *App) commit(target, old *store.Version, kind commitKind) error {
	st := a.cfg.Store
	switch kind {
	case commitRollback:
		_, err := st.Rollback(a.cfg.App)
		return err
	case commitReset:
		return st.Reset(a.cfg.App)
	}
	// The version that falls off the store now is neither running nor
	// being tried, so it has no persist mounts; unbinding it anyway keeps
	// a mount left by an earlier failure from meeting its removal.
	if fall, err := st.Previous(a.cfg.App); err == nil && fall != nil && fall.Dir != target.Dir && (old == nil || fall.Dir != old.Dir) {
		if err := a.unbindDir(fall.Dir); err != nil {
			return fmt.Errorf("unmounting the persist dirs of version %s before it is removed: %w", Short(fall.Digest), err)
		}
	}
	return st.Switch(a.cfg.App, target)
}

// committed reports whether the store names target as current, whatever
// error the commit returned.
func (a *App) committed(target *store.Version) bool {
	cur, err := a.cfg.Store.Current(a.cfg.App)
	if err != nil {
		return false
	}
	if target == nil {
		return cur == nil
	}
	return cur != nil && cur.Digest == target.Digest
}

// revert runs the old command again and unbinds target's persist dirs.
// It runs to its end even when the transaction's context is cancelled:
// the app must not be left on a half-tried version.
func (a *App) revert(oldCmd supervise.Command, old, target *store.Version) {
	svc := a.cfg.Service
	before := svc.Status()
	svc.SetCommand(oldCmd)
	svc.Restart()
	if target != nil && (old == nil || old.Dir != target.Dir) {
		// After the restart has stopped target's process; a detached
		// unmount does not wait for its open files anyway.
		if err := a.unbindDir(target.Dir); err != nil {
			a.cfg.Log("app %s: version %s: %v", a.cfg.App, Short(target.Digest), err)
		}
	}
	// Answer once the previous version serves again, so a client that
	// sees the error also sees the old version answering.
	if err := a.gate(context.Background(), before, func() {}); err != nil {
		a.cfg.Log("app %s: the previous version is not healthy either: %v", a.cfg.App, err)
	}
}

func (a *App) bind(v *store.Version) error {
	if a.cfg.Persist == nil {
		return nil
	}
	return a.cfg.Persist.Bind(v.Dir)
}

func (a *App) unbindDir(dir string) error {
	if a.cfg.Persist == nil {
		return nil
	}
	return a.cfg.Persist.Unbind(dir)
}

func (a *App) unbind(v *store.Version) {
	if v == nil {
		return
	}
	if err := a.unbindDir(v.Dir); err != nil {
		a.cfg.Log("app %s: version %s: %v", a.cfg.App, Short(v.Digest), err)
	}
}

func (a *App) unbindUnlessRunning(v *store.Version) {
	if a.running != nil && a.running.Dir == v.Dir {
		return
	}
	a.unbind(v)
}

// gate waits until the restarted service runs a new process, Health
// accepts it within HealthTimeout, and it is still the same process
// Settle later.
func (a *App) gate(ctx context.Context, before supervise.Status, collect func()) error {
	svc := a.cfg.Service
	deadline := time.Now().Add(a.cfg.HealthTimeout)
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var pid int
	// The restart first stops the old process; wait for the new one.
	for {
		collect()
		s := svc.Status()
		if s.State == supervise.StateRunning && s.PID != before.PID && s.PID != 0 {
			pid = s.PID
			break
		}
		if s.Restarts > before.Restarts {
			return exited(s)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("it did not start within %v", a.cfg.HealthTimeout)
		}
		if err := sleep(ctx, a.cfg.Poll); err != nil {
			return err
		}
	}
	crashed := func() error {
		s := svc.Status()
		if s.PID != pid || s.Restarts > before.Restarts {
			return exited(s)
		}
		return nil
	}
	for {
		collect()
		if err := crashed(); err != nil {
			return err
		}
		err := a.cfg.Health(hctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("it did not answer within %v: %w", a.cfg.HealthTimeout, err)
		}
		if err := sleep(ctx, a.cfg.Poll); err != nil {
			return err
		}
	}
	settle := time.Now().Add(a.cfg.Settle)
	for time.Now().Before(settle) {
		collect()
		if err := crashed(); err != nil {
			return err
		}
		if err := sleep(ctx, a.cfg.Poll); err != nil {
			return err
		}
	}
	return crashed()
}

func exited(s supervise.Status) error {
	if s.LastExit == "" {
		return errors.New("it exited")
	}
	return fmt.Errorf("it exited: %s", s.LastExit)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
