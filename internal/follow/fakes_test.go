package follow

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"
)

// clock is a controlled clock: Sleep advances it.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	slept  []time.Duration
	onWait func(n int) // called after each Sleep with the count so far
}

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.slept = append(c.slept, d)
	n := len(c.slept)
	c.mu.Unlock()
	if c.onWait != nil {
		c.onWait(n)
	}
	return ctx.Err()
}

// registry is a fake registry: one tag, releases by digest, and blobs.
type registry struct {
	mu       sync.Mutex
	tag      string // the digest the tag names
	releases map[string]*Release
	rejected map[string]error
	down     error
	resolves int
	fetches  map[string]int
	// cut, when set, makes every blob download fail after this many bytes.
	cut int
}

func newRegistry() *registry {
	return &registry{releases: map[string]*Release{}, rejected: map[string]error{}, fetches: map[string]int{}}
}

func (r *registry) Resolve(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resolves++
	if r.down != nil {
		return "", r.down
	}
	if r.tag == "" {
		return "", errors.New("MANIFEST_UNKNOWN: manifest unknown")
	}
	return r.tag, nil
}

func (r *registry) Fetch(ctx context.Context, digest string) (*Release, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fetches[digest]++
	if r.down != nil {
		return nil, r.down
	}
	if err := r.rejected[digest]; err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRejected, err)
	}
	rel := r.releases[digest]
	if rel == nil {
		return nil, errors.New("MANIFEST_UNKNOWN")
	}
	cp := *rel
	return &cp, nil
}

// push publishes rel under a new digest and points the tag at it.
func (r *registry) push(rel *Release) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := fmt.Sprintf("sha256:%064x", len(r.releases)+len(r.rejected)+1)
	r.releases[d] = rel
	r.tag = d
	return d
}

// pushRejected publishes something that does not verify.
func (r *registry) pushRejected(why string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := fmt.Sprintf("sha256:%064x", len(r.releases)+len(r.rejected)+1)
	r.rejected[d] = errors.New(why)
	r.tag = d
	return d
}

func (r *registry) fetchCount(d string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fetches[d]
}

func (r *registry) setDown(err error) {
	r.mu.Lock()
	r.down = err
	r.mu.Unlock()
}

func (r *registry) setCut(n int) {
	r.mu.Lock()
	r.cut = n
	r.mu.Unlock()
}

// cutReader fails after n bytes, as a connection cut mid-download.
type cutReader struct {
	r io.Reader
	n int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errors.New("read tcp 10.0.2.15:41234->10.0.2.2:5000: connection reset by peer")
	}
	if len(p) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= n
	return n, err
}

func (r *registry) blob(b []byte) func(ctx context.Context) (io.ReadCloser, error) {
	return func(ctx context.Context) (io.ReadCloser, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.down != nil {
			return nil, r.down
		}
		var rd io.Reader = bytes.NewReader(b)
		if r.cut > 0 {
			rd = &cutReader{r: rd, n: r.cut}
		}
		return io.NopCloser(rd), nil
	}
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// app makes an app release whose bundle is body; bundles that start with
// "crash" never become healthy on the fake node.
func (r *registry) app(name, body string) AppRelease {
	return AppRelease{Name: name, Digest: digestOf([]byte(body)), Open: r.blob([]byte(body))}
}

// node is a fake node: apps with versions, a deploy that checks the
// digest as the version store does, and an OS with a trial.
type node struct {
	mu       sync.Mutex
	apps     map[string]string
	deploys  []string // app@digest, each attempt
	os       OSState
	installs []string // OS payloads received
	// osRefuse refuses every OS payload, as the updater refuses one it
	// cannot verify.
	osRefuse error
}

func newNode(apps ...string) *node {
	n := &node{apps: map[string]string{}, os: OSState{Image: "img-1"}}
	for _, a := range apps {
		n.apps[a] = "image"
	}
	return n
}

func (n *node) AppVersion(app string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, ok := n.apps[app]
	return v, ok
}

func (n *node) Deploy(ctx context.Context, app, digest string, body io.Reader) error {
	b, err := io.ReadAll(body)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deploys = append(n.deploys, app+"@"+digest)
	if err != nil {
		return fmt.Errorf("receiving the bundle: %w", err)
	}
	if digestOf(b) != digest {
		return fmt.Errorf("bundle digest mismatch: %s, want %s", digestOf(b), digest)
	}
	if bytes.HasPrefix(b, []byte("crash")) {
		return errors.New("version " + short(digest) + " did not become healthy: app exited with status 1; its last line: Error: boom")
	}
	n.apps[app] = digest
	return nil
}

func (n *node) OS() OSState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.os
}

func (n *node) UpdateOS(ctx context.Context, body io.Reader) error {
	b, err := io.ReadAll(body)
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		return fmt.Errorf("receiving the payload: %w", err)
	}
	if n.osRefuse != nil {
		return n.osRefuse
	}
	n.installs = append(n.installs, string(b))
	return nil
}

func (n *node) deployCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.deploys)
}

func (n *node) version(app string) string {
	v, _ := n.AppVersion(app)
	return v
}

// memState is a StateFile in memory that survives a "reboot" (a new
// Follower over the same memState).
type memState struct {
	mu sync.Mutex
	b  []byte
}

func (m *memState) Load() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.b == nil {
		return nil, fs.ErrNotExist
	}
	return append([]byte(nil), m.b...), nil
}

func (m *memState) Save(b []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.b = append([]byte(nil), b...)
	return nil
}
