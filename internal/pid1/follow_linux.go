package pid1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/nodeboot/nodeboot/internal/api"
	"github.com/nodeboot/nodeboot/internal/appapi"
	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/follow"
	"github.com/nodeboot/nodeboot/internal/follow/ocisource"
	"github.com/nodeboot/nodeboot/internal/oci"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/update"
)

// Following a tag (nodeboot.json "follow"; internal/follow, docs/follow.md):
// PID 1 only hands the follower the node as follow.Node (the deploy
// transactions and the OS updater every API request uses too) and reports
// its status.

// followState is the file that keeps the follower's seed and the digest it
// refused, on /data so that both survive reboots and OS updates.
const followState = "/data/follow/state.json"

// followCache keeps a release's downloaded blobs (on /data: an OS update's
// are tens of MiB, and a cut download resumes after a reboot too).
const followCache = "/data/follow/cache"

// follower is this boot's follower; nil when the node follows nothing.
// cfg is what it follows, for the pull credentials' check.
var follower struct {
	sync.Mutex
	f   *follow.Follower
	cfg spec.FollowConfig
	// stop ends Run, done is closed when it returned; stopped: the node
	// goes down and no follower starts (stopFollowing).
	stop    context.CancelFunc
	done    chan struct{}
	stopped bool
}

// stopFollowing ends the follower at shutdown and waits for it until ctx
// is done: a download in progress writes to /data.
func stopFollowing(ctx context.Context) {
	follower.Lock()
	follower.stopped = true
	stop, done := follower.stop, follower.done
	follower.Unlock()
	if stop == nil {
		return
	}
	stop()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func currentFollower() *follow.Follower {
	follower.Lock()
	defer follower.Unlock()
	return follower.f
}

// followNode is the node as the follower changes it.
type followNode struct {
	n  *node
	rt *spec.Runtime
}

func (fn followNode) AppVersion(app string) (string, bool) {
	a, err := fn.n.app(app)
	if err != nil {
		return "", false
	}
	v, _ := a.tx.Versions()
	return v, true
}

// Deploy runs the same transaction as PUT /v1/apps/{app}, so a follower's
// deploy and the owner's are serialised by the same gate.
func (fn followNode) Deploy(ctx context.Context, app, digest string, body io.Reader) error {
	a, err := fn.n.app(app)
	if err != nil {
		return err
	}
	// The app's lock() holds it off as it does the owner's deploys.
	if err := fn.n.appAPI.waitLocks(ctx, []string{app}, "deploy of "+app+" from the followed tag"); err != nil {
		return err
	}
	fn.n.log.Printf("app %s: deploying version %s from the followed tag", app, short(digest))
	forget := fn.n.appAPI.stopping(app, appapi.CauseDeploy)
	res, err := a.tx.Deploy(ctx, digest, body, bundle.Limits{})
	forget()
	if err != nil {
		return err
	}
	fn.n.log.Printf("app %s: version %s runs (was %s)", app, short(res.Version), short(res.Previous))
	publishEvent(appapi.EventDeploy, app, fmt.Sprintf("app %s now runs version %s (from the followed tag)", app, short(res.Version)))
	return nil
}

func (fn followNode) OS() follow.OSState {
	st := follow.OSState{Image: fn.rt.ImageVersion}
	u := currentUpdater()
	if u == nil {
		return st
	}
	s, err := u.Status()
	if err != nil {
		return st
	}
	for _, sl := range s.Slots {
		if !sl.Booted {
			continue
		}
		if sl.Image != nil && sl.Image.ID != "" {
			st.Image = sl.Image.ID
		}
		st.Trial = sl.State == "trial"
	}
	if l := s.Last; l != nil && !l.OK {
		st.FailedImage, st.FailedReason = l.Image.ID, l.Reason
	}
	return st
}

// UpdateOS installs the payload as PUT /v1/update does, then reboots into
// its trial; the trial gate commits it or falls back.
func (fn followNode) UpdateOS(ctx context.Context, body io.Reader) error {
	u := currentUpdater()
	if u == nil {
		return fmt.Errorf("%w: this node has no OS updater", update.ErrNoSlots)
	}
	armed, err := u.Install(ctx, body, update.InstallOptions{})
	if err != nil {
		return err
	}
	fn.n.log.Printf("OS update %s from the followed tag written to slot %s: rebooting into its trial", armed.Image, armed.Slot)
	return u.RebootIntoTrial()
}

// startFollow starts the follower of rt.Follow over src. It runs for the
// whole boot; a registry that cannot be reached costs it nothing but
// retries (internal/follow).
func startFollow(n *node, rt *spec.Runtime, src follow.Source) {
	interval, err := spec.ParseFollowInterval(rt.Follow.Interval)
	if err != nil {
		// DecodeRuntime checked it; this is only a second guard.
		n.log.Printf("follow off: %v", err)
		return
	}
	f := follow.New(follow.Config{
		Ref:      rt.Follow.Ref,
		Interval: interval,
		Source:   src,
		Node:     followNode{n: n, rt: rt},
		State:    follow.File(followState),
		Log:      n.log.Printf,
	})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	follower.Lock()
	if follower.stopped {
		follower.Unlock()
		stop()
		return
	}
	follower.f, follower.cfg = f, *rt.Follow
	follower.stop, follower.done = stop, done
	follower.Unlock()
	n.log.Printf("following %s every %v (seed %.4f)", rt.Follow.Ref, interval, f.Status().Seed)
	goSafe("follow", func() { defer close(done); f.Run(ctx) })
}

// followStatus is the "follow" object of the status answer.
func followStatus() *contract.FollowStatus {
	f := currentFollower()
	if f == nil {
		return nil
	}
	s := f.Status()
	return &contract.FollowStatus{
		Ref: s.Ref, State: s.State, LastCheck: s.LastCheck, Target: s.Target, Applied: s.Applied,
		Version: s.Version, LastError: s.LastError, Failures: s.Failures, NextCheck: s.NextCheck,
		WaveOpens: s.WaveOpens, Seed: s.Seed, PullCredentials: ocisource.HasAuth(contract.FollowAuthFile),
	}
}

// startFollowing reads the image's keys and starts the follower of
// rt.Follow. The pull credentials are read from /data at each request
// (ocisource.FileAuth), so `nodeboot registry login` takes effect without
// a restart (and wakes the follower). It is called after startClock (run,
// in pid1_linux.go), so the registry's TLS certificates are checked against
// a clock already restored from /data or the image's floor, never 1970; it
// does not wait for NTP, which may never answer (issue 16).
func startFollowing(n *node, rt *spec.Runtime) {
	src, err := ocisource.New(ocisource.Config{
		Ref: rt.Follow.Ref, Insecure: rt.Follow.Insecure,
		Keys: trustedKeys(n.log), Auth: ocisource.FileAuth(contract.FollowAuthFile), CacheDir: followCache,
	})
	if err != nil {
		n.log.Printf("follow off: %v", err)
		return
	}
	startFollow(n, rt, src)
}

// The API's PUT and DELETE /v1/follow/auth answer 501 for a node that is
// not one; this one must be.
var _ api.FollowAuthNode = (*node)(nil)

// pullCheckTimeout bounds the registry round trip of a login: the owner
// waits for it.
const pullCheckTimeout = 30 * time.Second

// SetPullCredentials implements api.FollowAuthNode: it resolves the
// followed tag with c first, and stores c only if the registry did not
// refuse them, so a typo never replaces working credentials. A registry
// that cannot be reached does not hold the owner up: c is stored, and the
// answer says they are unchecked.
func (n *node) SetPullCredentials(ctx context.Context, c contract.RegistryCredentials) (*contract.FollowAuthResult, error) {
	cfg, ok := followedConfig()
	if !ok {
		return nil, fmt.Errorf("%w: pull credentials are for the registry of nodeboot.json's \"follow\"; this node's image has none", api.ErrNotFollowing)
	}
	ref, err := oci.ParseRef(cfg.Ref, cfg.Insecure)
	if err != nil {
		return nil, err
	}
	reg := ref.Name.Context().RegistryStr()
	res := &contract.FollowAuthResult{Registry: reg}
	cctx, cancel := context.WithTimeout(ctx, pullCheckTimeout)
	defer cancel()
	_, err = oci.Open(ref, oci.Options{Insecure: cfg.Insecure, Auth: authn.FromConfig(ocisource.AuthConfig(c)), UserAgent: "nodeboot-node"}).Resolve(cctx)
	switch {
	case err == nil || errors.Is(err, oci.ErrNotFound):
		// Not found past the login: the credentials are good, the tag
		// is just not pushed yet.
		res.Checked = true
	case errors.Is(err, oci.ErrAuth):
		return nil, fmt.Errorf("%w: %s answered %v; nothing was stored, the node keeps the credentials it had: check the user name and token (a pull-only token of that registry)", api.ErrCredentialsRefused, reg, err)
	default:
		res.Note = fmt.Sprintf("stored without a check: %v", err)
	}
	if err := ocisource.WriteAuth(contract.FollowAuthFile, c); err != nil {
		return nil, fmt.Errorf("storing the pull credentials on /data: %w", err)
	}
	// Never the credentials themselves, not even the user name.
	n.log.Printf("follow: pull credentials for %s set (checked with the registry: %v)", reg, res.Checked)
	if f := currentFollower(); f != nil {
		// Check now: after the registry's refusals the next check may
		// be a whole interval away.
		f.Wake()
	}
	return res, nil
}

// RemovePullCredentials implements api.FollowAuthNode.
func (n *node) RemovePullCredentials(ctx context.Context) (*contract.FollowAuthResult, error) {
	cfg, ok := followedConfig()
	if !ok {
		return nil, fmt.Errorf("%w: it keeps no pull credentials", api.ErrNotFollowing)
	}
	ref, err := oci.ParseRef(cfg.Ref, cfg.Insecure)
	if err != nil {
		return nil, err
	}
	if err := os.Remove(contract.FollowAuthFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing the pull credentials: %w", err)
	}
	reg := ref.Name.Context().RegistryStr()
	n.log.Printf("follow: pull credentials for %s removed", reg)
	return &contract.FollowAuthResult{Registry: reg}, nil
}

func followedConfig() (spec.FollowConfig, bool) {
	follower.Lock()
	defer follower.Unlock()
	return follower.cfg, follower.f != nil
}
