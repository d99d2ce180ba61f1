package api

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nodeboot/nodeboot/internal/contract"
)

// fakeNode stands in for PID 1: the real one is tested end to end in e2e.
type fakeNode struct {
	mu       sync.Mutex
	status   Status
	lines    map[string][]string
	subs     map[chan string]string // follower → app
	followed chan struct{}          // a follower subscribed
	ended    chan struct{}          // a follow ended (its ctx done)

	power     []string
	restarts  []string
	deploys   []deployCall
	deployErr error
	gate      chan struct{} // when set, Deploy waits for it to close
	entered   chan struct{} // Deploy started
	rollErr   error
	secrets   fakeSecrets
	pull      fakePull
	logsCert  fakeLogsCert
}

type deployCall struct {
	app, digest string
	size        int64
	body        []byte
}

func newFake() *fakeNode {
	return &fakeNode{
		status: Status{
			Node: NodeStatus{
				Hostname: "hello", UptimeSeconds: 12.3, BootID: "b0", Kernel: "7.1.2",
				NodeVersion: "v20.20.2", ImageVersion: "sha256:abc", BootSeconds: 7.9,
				Memory:              Memory{TotalBytes: 512 << 20, AvailableBytes: 300 << 20},
				Data:                DataStatus{TotalBytes: 1 << 30, FreeBytes: 1 << 29, Persistent: true},
				Addresses:           []string{"10.0.2.15/24"},
				CPUSecondsTotal:     3.2,
				Degraded:            "/data: read-only file system",
				ConsoleDroppedLines: 7,
			},
			Apps: []AppStatus{
				{Name: "hello", State: "running", PID: 312, Restarts: 1, StartedAt: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), Port: 8080, Version: "image",
					Health: "ready", Ready: true, WatchdogMs: 5000, WatchdogRestarts: 2,
					Locks: []contract.AppLock{{Reason: "migrating", Since: time.Date(2026, 12, 1, 10, 1, 0, 0, time.UTC)}, {Reason: "stuck", Since: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), Overridden: true}}},
				{Name: "worker", State: "backoff", Restarts: 4, LastExit: "exit status 1", Version: "image"},
			},
			Follow: &contract.FollowStatus{
				Ref: "127.0.0.1:5000/shop:stable", State: "registry unreachable",
				LastCheck: time.Date(2026, 12, 1, 10, 5, 0, 0, time.UTC),
				Target:    "sha256:" + strings.Repeat("b", 64), Applied: "sha256:" + strings.Repeat("a", 64), Version: "v2",
				LastError: "resolving 127.0.0.1:5000/shop:stable: connection refused", Failures: 3,
			},
			Clock: &contract.ClockStatus{
				Now: time.Date(2026, 12, 1, 10, 6, 0, 0, time.UTC), Synced: true, Source: "10.0.2.2", OffsetSeconds: -0.25,
				LastSync: time.Date(2026, 12, 1, 10, 5, 30, 0, time.UTC), Saved: time.Date(2026, 12, 1, 10, 5, 30, 0, time.UTC),
			},
			Logs: &contract.LogsStatus{
				Endpoint: "syslog+tls://logs.example.com:6514", BufferedBytes: 4096, BufferedLines: 40, CapBytes: 16 << 20,
				Delivered: 1200, Dropped: 5, LastError: "connecting to syslog+tls://logs.example.com:6514: connection refused",
				LastErrorAt: time.Date(2026, 12, 1, 10, 6, 0, 0, time.UTC),
			},
		},
		lines: map[string][]string{
			"hello":  {"hello starting", "listening on 8080", "GET /"},
			"worker": {"worker: missing DATABASE_URL"},
		},
		subs:     map[chan string]string{},
		followed: make(chan struct{}, 16),
		ended:    make(chan struct{}, 16),
	}
}

func (f *fakeNode) has(app string) bool {
	for _, a := range f.status.Apps {
		if a.Name == app {
			return true
		}
	}
	return false
}

func (f *fakeNode) Status(ctx context.Context) (Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, nil
}

func (f *fakeNode) Logs(ctx context.Context, app string, lines int, follow bool, emit func(string) error) error {
	f.mu.Lock()
	if !f.has(app) {
		f.mu.Unlock()
		return fmt.Errorf("%w: no app %q", ErrNotFound, app)
	}
	backlog := f.lines[app]
	if len(backlog) > lines {
		backlog = backlog[len(backlog)-lines:]
	}
	backlog = append([]string(nil), backlog...)
	var c chan string
	if follow {
		c = make(chan string, 64)
		f.subs[c] = app
	}
	f.mu.Unlock()
	if follow {
		defer func() {
			f.mu.Lock()
			delete(f.subs, c)
			f.mu.Unlock()
			f.ended <- struct{}{}
		}()
	}
	for _, l := range backlog {
		if err := emit(l); err != nil {
			return err
		}
	}
	if !follow {
		return nil
	}
	f.followed <- struct{}{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case l := <-c:
			if err := emit(l); err != nil {
				return err
			}
		}
	}
}

// print is a new output line of app, for its followers.
func (f *fakeNode) print(app, line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines[app] = append(f.lines[app], line)
	for c, a := range f.subs {
		if a == app {
			select {
			case c <- line:
			default:
			}
		}
	}
}

func (f *fakeNode) Restart(ctx context.Context, app string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.has(app) {
		return 0, fmt.Errorf("%w: no app %q", ErrNotFound, app)
	}
	f.restarts = append(f.restarts, app)
	return 4242, nil
}

func (f *fakeNode) Power(action string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.power = append(f.power, action)
	return nil
}

func (f *fakeNode) Deploy(ctx context.Context, app, digest string, size int64, body io.Reader) (DeployResult, error) {
	f.mu.Lock()
	gate, entered, derr := f.gate, f.entered, f.deployErr
	f.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if gate != nil {
		<-gate
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return DeployResult{}, fmt.Errorf("receiving the bundle: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.has(app) {
		return DeployResult{}, fmt.Errorf("%w: no app %q", ErrNotFound, app)
	}
	f.deploys = append(f.deploys, deployCall{app, digest, size, b})
	if derr != nil {
		return DeployResult{}, derr
	}
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(b)); got != digest {
		return DeployResult{}, fmt.Errorf("%w: the body's digest is %s, not %s", ErrBadBundle, got, digest)
	}
	return DeployResult{App: app, Version: digest, PreviousVersion: "image", State: "running"}, nil
}

func (f *fakeNode) Rollback(ctx context.Context, app string) (DeployResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.has(app) {
		return DeployResult{}, fmt.Errorf("%w: no app %q", ErrNotFound, app)
	}
	if f.rollErr != nil {
		return DeployResult{}, f.rollErr
	}
	return DeployResult{App: app, Version: "image", PreviousVersion: "sha256:abc", State: "running"}, nil
}
