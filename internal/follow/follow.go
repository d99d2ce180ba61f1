// Package follow is a node's side of following a tag in an OCI registry
// (issue 14): poll the tag with jitter, resolve it to a digest, fetch and
// verify the release it names, wait for the node's wave of the rollout,
// and hand what changed to the deploy transaction (apps) or the OS
// updater. It never applies what did not verify, never retries a digest
// that failed until the tag moves, and rides out an unreachable registry
// with backoff, saying so in its status.
//
// It knows the registry and the node only through the small Source and
// Node interfaces, so its tests run against fakes with a controlled clock.
package follow

import (
	"context"
	"errors"
	"fmt"
	"github.com/nodeboot/nodeboot/internal/crash"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// Source is the followed tag in its registry.
type Source interface {
	// Resolve returns the digest the tag names now.
	Resolve(ctx context.Context) (string, error)
	// Fetch returns the release with that digest, its signature verified
	// against the keys the image trusts. A release that is not one, does
	// not verify or is not for this node wraps ErrRejected: it is never
	// fetched again until the tag moves. Any other error (the network,
	// the registry) is retried with backoff.
	Fetch(ctx context.Context, digest string) (*Release, error)
}

// ErrRejected marks what a digest holds as unusable for good: a bad or
// missing signature, a key the node does not trust, not a nodeboot
// release, a release for other apps or another arch.
var ErrRejected = errors.New("release rejected")

// Release is what a tag names once verified.
type Release struct {
	// Version is the release's label, for messages ("v2").
	Version string
	Apps    []AppRelease
	// OS is the OS update payload, nil when the release has none.
	OS *OSRelease
	// Schedule is the signed rollout (waves, pause); nil: every node at
	// once.
	Schedule Schedule
}

// Schedule says when a node may apply a release (Bottlerocket's waves):
// each node draws a stable random seed in [0, 1) once, and the signed
// release says from when each share of the fleet may apply it. ok is false
// while the rollout is paused; a zero time is at once. The release format
// (internal/oci's Rollout) implements it.
type Schedule interface {
	ApplyAt(seed float64) (at time.Time, ok bool)
}

// AppRelease is one app's version in a release.
type AppRelease struct {
	Name string
	// Digest is the deploy bundle's "sha256:<hex>", which the signed
	// release names and the version store checks while receiving it.
	Digest string
	// Open streams the bundle.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// OSRelease is the OS image in a release.
type OSRelease struct {
	Image   string
	Version uint64
	// Open streams the OS update payload (internal/ospayload), which the
	// updater verifies again on its own, chunk by chunk.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// OSState is what the node's updater says about its OS.
type OSState struct {
	Image string // the running image
	// Trial is true while an update's trial boot has not been committed:
	// the follower waits for its outcome.
	Trial bool
	// FailedImage and FailedReason are the last update that did not take
	// (a failed trial), so that the follower does not try it again.
	FailedImage, FailedReason string
}

// Node is what the follower changes.
type Node interface {
	// AppVersion is the digest of the version app runs, or something
	// that is no digest (the image's own code); ok false when the node
	// has no such app.
	AppVersion(app string) (version string, ok bool)
	// Deploy runs the health-gated deploy of one app's bundle.
	Deploy(ctx context.Context, app, digest string, body io.Reader) error
	OS() OSState
	// UpdateOS verifies and writes an OS update payload into the inactive
	// slot and arms its trial boot; the node reboots into it after.
	UpdateOS(ctx context.Context, body io.Reader) error
}

// Clock is the follower's time; tests control it.
type Clock interface {
	Now() time.Time
	// Sleep waits d or until ctx ends.
	Sleep(ctx context.Context, d time.Duration) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Config sets a Follower up.
type Config struct {
	// Ref is the followed registry/repo:tag, for status and messages.
	Ref string
	// Interval is the time between checks of the tag.
	Interval time.Duration
	// Jitter is the most added at random to each wait, so that a fleet
	// booted at once does not poll in step. Default Interval/5.
	Jitter time.Duration
	Source Source
	Node   Node
	// State keeps the seed and the refused digest across reboots (a file
	// on /data); nil keeps them in memory only.
	State StateFile
	Clock Clock      // default: the real one
	Rand  *rand.Rand // default: seeded at random
	Log   func(format string, args ...any)
}

// Backoff after registry errors: from the smaller of Interval and
// backoffBase, doubling, capped at Interval (a node never polls less
// often than asked), each with jitter.
const backoffBase = 5 * time.Second

// States a follower reports.
const (
	StateStarting = "starting"
	StateIdle     = "up to date"
	StateWaiting  = "waiting for its wave"
	StatePaused   = "rollout paused"
	StateApplying = "applying"
	StateTrial    = "OS update on trial"
	StateFailed   = "release refused"
	StateOffline  = "registry unreachable"
	StateReboot   = "rebooting into the OS update"
)

// Status is what status, the status page and /metrics show.
type Status struct {
	Ref string `json:"ref"`
	// State is one of the State* strings.
	State string `json:"state"`
	// LastCheck is when the tag was last resolved successfully.
	LastCheck time.Time `json:"lastCheck,omitzero"`
	// Target is the digest the tag named then.
	Target string `json:"target,omitempty"`
	// Applied is the last digest whose release the node runs in full.
	Applied string `json:"applied,omitempty"`
	// Version is the applied release's label.
	Version string `json:"version,omitempty"`
	// LastError is the last thing that went wrong ("" once a check
	// succeeds again, except for a refused digest, which stays until the
	// tag moves).
	LastError string `json:"lastError,omitempty"`
	// Failures counts registry errors in a row.
	Failures int `json:"failures,omitempty"`
	// NextCheck is when the follower looks again.
	NextCheck time.Time `json:"nextCheck,omitzero"`
	// WaveOpens is when this node's wave of the target opens, while it
	// waits for it.
	WaveOpens time.Time `json:"waveOpens,omitzero"`
	// Seed is this node's place in rollouts, in [0, 1).
	Seed float64 `json:"seed"`
}

// Follower follows one tag.
type Follower struct {
	cfg Config

	mu    sync.Mutex
	st    Status
	saved persisted
	// pending is the verified release of st.Target, kept while it waits
	// for its wave so that it is not fetched at every check.
	pending       *Release
	pendingDigest string
	// wake cuts Run's wait short (Wake).
	wake chan struct{}
}

// New returns a Follower; it loads (or draws and saves) the node's seed.
func New(cfg Config) *Follower {
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Jitter <= 0 {
		cfg.Jitter = cfg.Interval / 5
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	f := &Follower{cfg: cfg, wake: make(chan struct{}, 1)}
	f.st = Status{Ref: cfg.Ref, State: StateStarting}
	f.saved = f.load()
	f.st.Seed = f.saved.Seed
	f.st.Applied = f.saved.Applied
	f.st.Version = f.saved.Version
	if f.saved.Failed != "" {
		f.st.LastError = f.saved.FailedReason
	}
	return f
}

// Status returns a copy of the follower's status.
func (f *Follower) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

// Run checks the tag until ctx ends.
func (f *Follower) Run(ctx context.Context) {
	for ctx.Err() == nil {
		wait := f.Check(ctx)
		f.mu.Lock()
		f.st.NextCheck = f.cfg.Clock.Now().Add(wait)
		f.mu.Unlock()
		f.sleep(ctx, wait)
		if ctx.Err() != nil {
			return
		}
	}
}

// Wake makes Run check now rather than at the end of its wait: the owner
// just gave the node pull credentials, and a registry that refused it has
// pushed its next check up to a whole interval away.
func (f *Follower) Wake() {
	select {
	case f.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// sleep waits d, or until ctx ends or Wake is called.
func (f *Follower) sleep(ctx context.Context, d time.Duration) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	defer close(done)
	crash.Go("follow wake", func() {
		select {
		case <-f.wake:
			cancel()
		case <-done:
		}
	})
	f.cfg.Clock.Sleep(sctx, d)
}

// jitter is the interval with up to Jitter added.
func (f *Follower) jitter(d time.Duration) time.Duration {
	if f.cfg.Jitter > 0 {
		d += time.Duration(f.cfg.Rand.Int64N(int64(f.cfg.Jitter) + 1))
	}
	return d
}

// next is the normal wait between checks.
func (f *Follower) next() time.Duration { return f.jitter(f.cfg.Interval) }

// backoff is the wait after the n-th registry error in a row.
func (f *Follower) backoff(n int) time.Duration {
	d := min(backoffBase, f.cfg.Interval)
	for i := 1; i < n && d < f.cfg.Interval; i++ {
		d *= 2
	}
	d = min(d, f.cfg.Interval)
	// Up to half of it again at random, so that nodes that lost the
	// registry together do not come back together.
	return d + time.Duration(f.cfg.Rand.Int64N(int64(d)/2+1))
}

// Check looks at the tag once and applies what it names when it may. It
// returns how long to wait before the next check.
func (f *Follower) Check(ctx context.Context) time.Duration {
	cfg := &f.cfg
	digest, err := cfg.Source.Resolve(ctx)
	if err != nil {
		return f.offline(fmt.Errorf("resolving %s: %w", cfg.Ref, err))
	}
	now := cfg.Clock.Now()
	f.mu.Lock()
	f.st.LastCheck, f.st.Target, f.st.Failures = now, digest, 0
	f.mu.Unlock()

	if digest == f.saved.Applied && f.saved.Failed == "" {
		// Unchanged since it was applied: nothing to fetch. (What the
		// owner deploys by hand meanwhile stays until the tag moves.)
		f.set(StateIdle, "")
		return f.next()
	}
	if digest == f.saved.Failed {
		// Refused or failed before: not again until the tag moves.
		f.set(StateFailed, f.saved.FailedReason)
		return f.next()
	}
	if os := cfg.Node.OS(); os.Trial {
		// The outcome of an OS update decides what runs; touching the
		// apps now would blur which of the two failed.
		f.set(StateTrial, "")
		return f.next()
	}

	rel := f.pending
	if f.pendingDigest != digest {
		rel, err = cfg.Source.Fetch(ctx, digest)
		if errors.Is(err, ErrRejected) {
			f.refuse(digest, err.Error())
			return f.next()
		}
		if err != nil {
			return f.offline(fmt.Errorf("fetching %s@%s: %w", cfg.Ref, short(digest), err))
		}
		f.pending, f.pendingDigest = rel, digest
	}

	apps, osChange, err := f.changes(rel)
	if err != nil {
		f.refuse(digest, err.Error())
		return f.next()
	}
	if len(apps) == 0 && osChange == nil {
		f.applied(digest, rel)
		return f.next()
	}
	opens, ok := time.Time{}, true
	if rel.Schedule != nil {
		opens, ok = rel.Schedule.ApplyAt(f.saved.Seed)
	}
	if !ok {
		f.set(StatePaused, "")
		return f.next()
	}
	if now.Before(opens) {
		f.mu.Lock()
		f.st.State, f.st.LastError, f.st.WaveOpens = StateWaiting, "", opens
		f.mu.Unlock()
		// Look again at the wave's opening if that comes first, so the
		// waves keep their spacing whatever the interval.
		return min(f.next(), f.jitter(opens.Sub(now)))
	}

	f.set(StateApplying, "")
	for _, a := range apps {
		cfg.Log("follow: %s: deploying app %s version %s", releaseName(rel, digest), a.Name, short(a.Digest))
		transient, err := f.deploy(ctx, a)
		if err != nil && transient {
			return f.offline(fmt.Errorf("downloading app %s of %s: %w", a.Name, releaseName(rel, digest), err))
		}
		if err != nil {
			f.refuse(digest, fmt.Sprintf("app %s version %s: %v", a.Name, short(a.Digest), err))
			return f.next()
		}
	}
	if osChange != nil {
		cfg.Log("follow: %s: updating the OS to image %s", releaseName(rel, digest), osChange.Image)
		transient, err := f.updateOS(ctx, osChange)
		if err != nil && transient {
			return f.offline(fmt.Errorf("downloading the OS of %s: %w", releaseName(rel, digest), err))
		}
		if err != nil {
			f.refuse(digest, fmt.Sprintf("OS image %s: %v", osChange.Image, err))
			return f.next()
		}
		// The node reboots into the trial; the next boot's follower
		// finds the OS applied, or the trial's failure.
		f.set(StateReboot, "")
		return f.next()
	}
	f.applied(digest, rel)
	return f.next()
}

// changes is what rel would change on this node: apps whose version
// differs, and the OS when its image does. A release for an app the node
// does not have, or whose OS image already failed its trial here, is an
// error.
func (f *Follower) changes(rel *Release) ([]AppRelease, *OSRelease, error) {
	var apps []AppRelease
	for _, a := range rel.Apps {
		v, ok := f.cfg.Node.AppVersion(a.Name)
		if !ok {
			return nil, nil, fmt.Errorf("the release has app %s, which this node does not run: follow a tag of this node's own project", a.Name)
		}
		if v != a.Digest {
			apps = append(apps, a)
		}
	}
	var osChange *OSRelease
	if o := rel.OS; o != nil {
		st := f.cfg.Node.OS()
		if o.Image != st.Image {
			if o.Image == st.FailedImage {
				return nil, nil, fmt.Errorf("OS image %s failed its trial on this node: %s", o.Image, st.FailedReason)
			}
			osChange = o
		}
	}
	return apps, osChange, nil
}

// readErr remembers whether reading the download failed, which tells a
// cut connection (retried) from a version the node refused (not retried).
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

func (f *Follower) deploy(ctx context.Context, a AppRelease) (transient bool, err error) {
	body, err := a.Open(ctx)
	if err != nil {
		return !errors.Is(err, ErrRejected), err
	}
	defer body.Close()
	rb := &readErr{r: body}
	err = f.cfg.Node.Deploy(ctx, a.Name, a.Digest, rb)
	if err != nil && rb.err != nil {
		return true, rb.err
	}
	return false, err
}

func (f *Follower) updateOS(ctx context.Context, o *OSRelease) (transient bool, err error) {
	body, err := o.Open(ctx)
	if err != nil {
		return !errors.Is(err, ErrRejected), err
	}
	defer body.Close()
	rb := &readErr{r: body}
	err = f.cfg.Node.UpdateOS(ctx, rb)
	if err != nil && rb.err != nil {
		return true, rb.err
	}
	return false, err
}

func (f *Follower) set(state, lastErr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st.State, f.st.LastError, f.st.WaveOpens = state, lastErr, time.Time{}
}

// offline records a registry error and returns the backoff.
func (f *Follower) offline(err error) time.Duration {
	f.mu.Lock()
	f.st.Failures++
	n := f.st.Failures
	f.st.State, f.st.LastError = StateOffline, err.Error()
	f.mu.Unlock()
	d := f.backoff(n)
	f.cfg.Log("follow: %v (try %d; again in %v; the node keeps running what it runs)", err, n, d.Round(time.Second))
	return d
}

// refuse records that digest is not to be applied, durably, so that not
// even a reboot makes the node try it again before the tag moves.
func (f *Follower) refuse(digest, reason string) {
	f.cfg.Log("follow: %s@%s refused, not retried until the tag moves: %s", f.cfg.Ref, short(digest), reason)
	f.pending, f.pendingDigest = nil, ""
	f.saved.Failed, f.saved.FailedReason = digest, reason
	f.save()
	f.set(StateFailed, reason)
}

func (f *Follower) applied(digest string, rel *Release) {
	if f.saved.Applied != digest || f.saved.Failed != "" {
		f.cfg.Log("follow: %s: the node runs %s", f.cfg.Ref, releaseName(rel, digest))
		f.saved.Applied, f.saved.Version = digest, rel.Version
		f.saved.Failed, f.saved.FailedReason = "", ""
		f.save()
	}
	f.pending, f.pendingDigest = nil, ""
	f.mu.Lock()
	f.st.Applied, f.st.Version = digest, rel.Version
	f.mu.Unlock()
	f.set(StateIdle, "")
}

func releaseName(rel *Release, digest string) string {
	if rel.Version != "" {
		return fmt.Sprintf("release %s (%s)", rel.Version, short(digest))
	}
	return "release " + short(digest)
}

func short(digest string) string {
	_, h, ok := strings.Cut(digest, ":")
	if !ok {
		h = digest
	}
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}
