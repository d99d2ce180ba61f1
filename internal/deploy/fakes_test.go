package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/store"
	"github.com/nodeboot/nodeboot/internal/supervise"
)

// fakeService behaves like a supervise.Service: Restart stops the process
// and starts the command; a command whose dir is in crash exits at once
// (a restart counted, as the supervisor's backoff would).
type fakeService struct {
	mu        sync.Mutex
	cmd       supervise.Command
	pid       int
	nextPID   int
	restarts  int
	lastExit  string
	state     supervise.State
	crash     map[string]string // dir → its last line before it exits
	subs      map[chan string]struct{}
	events    []string // "restart <dir>"
	onRestart func()
}

func newFakeService(dir string) *fakeService {
	s := &fakeService{cmd: supervise.Command{Dir: dir, Args: []string{dir + "/server.js"}}, crash: map[string]string{}, subs: map[chan string]struct{}{}, nextPID: 100}
	s.start()
	return s
}

func (s *fakeService) start() {
	s.nextPID++
	if why, ok := s.crash[s.cmd.Dir]; ok {
		s.emit(why)
		s.pid, s.state = 0, supervise.StateBackoff
		s.restarts++
		s.lastExit = "exit status 3"
		return
	}
	s.emit("starting " + s.cmd.Dir)
	s.pid, s.state = s.nextPID, supervise.StateRunning
}

func (s *fakeService) emit(l string) {
	for c := range s.subs {
		select {
		case c <- l:
		default:
		}
	}
}

func (s *fakeService) Command() supervise.Command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd
}

func (s *fakeService) SetCommand(c supervise.Command) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cmd = c
}

func (s *fakeService) Restart() {
	s.mu.Lock()
	s.events = append(s.events, "restart "+s.cmd.Dir)
	s.start()
	f := s.onRestart
	s.mu.Unlock()
	if f != nil {
		f()
	}
}

func (s *fakeService) Status() supervise.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return supervise.Status{State: s.state, PID: s.pid, Restarts: s.restarts, LastExit: s.lastExit}
}

func (s *fakeService) Subscribe() (<-chan string, func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan string, 256)
	s.subs[c] = struct{}{}
	return c, func() {
		s.mu.Lock()
		delete(s.subs, c)
		s.mu.Unlock()
	}
}

func (s *fakeService) dir() string { return s.Command().Dir }

func (s *fakeService) log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

// fakeStore keeps versions in memory with the store's link semantics.
type fakeStore struct {
	mu         sync.Mutex
	versions   map[string]*store.Version
	cur, prev  string
	receiveErr error
	switchErr  error // Switch fails before recording
	gcErr      error // Switch records, then fails removing the old version
	removed    []string
}

func newFakeStore() *fakeStore { return &fakeStore{versions: map[string]*store.Version{}} }

func (f *fakeStore) Receive(app string, body io.Reader, digest string, _ bundle.Limits) (*store.Version, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.receiveErr != nil {
		return nil, fmt.Errorf("receiving a version of %s: %w", app, f.receiveErr)
	}
	v := &store.Version{App: app, Digest: digest, Dir: "/data/apps/" + app + "/" + strings.TrimPrefix(digest, "sha256:"), Meta: bundle.Meta{App: string(b)}}
	f.versions[digest] = v
	return v, nil
}

func (f *fakeStore) get(d string) *store.Version {
	if d == "" {
		return nil
	}
	return f.versions[d]
}

func (f *fakeStore) Current(string) (*store.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.get(f.cur), nil
}

func (f *fakeStore) Previous(string) (*store.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.prev == f.cur {
		return nil, nil
	}
	return f.get(f.prev), nil
}

func (f *fakeStore) Switch(app string, v *store.Version) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.switchErr != nil {
		return f.switchErr
	}
	if f.cur == v.Digest {
		return nil
	}
	fall := f.prev
	f.prev, f.cur = f.cur, v.Digest
	if fall != "" && fall != f.prev && fall != f.cur {
		if f.gcErr != nil {
			return fmt.Errorf("switched %s, but removing an old version: %w", app, f.gcErr)
		}
		delete(f.versions, fall)
		f.removed = append(f.removed, fall)
	}
	return nil
}

func (f *fakeStore) Rollback(app string) (*store.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.prev == "" || f.prev == f.cur {
		return nil, store.ErrNoPrevious
	}
	if f.switchErr != nil {
		return nil, f.switchErr
	}
	if f.cur == "" {
		f.cur, f.prev = f.prev, ""
	} else {
		f.cur, f.prev = f.prev, f.cur
	}
	return f.versions[f.cur], nil
}

func (f *fakeStore) Reset(string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.switchErr != nil {
		return f.switchErr
	}
	if f.cur != "" {
		f.prev, f.cur = f.cur, ""
	}
	return nil
}

// fakePersist records which code dirs have their persist dirs bound.
type fakePersist struct {
	mu      sync.Mutex
	bound   map[string]int // dir → how many binds (more than 1: stacked)
	bindErr error
}

func newFakePersist() *fakePersist { return &fakePersist{bound: map[string]int{}} }

func (p *fakePersist) Bind(dir string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bindErr != nil {
		return p.bindErr
	}
	if p.bound[dir] == 0 {
		p.bound[dir] = 1
	}
	return nil
}

func (p *fakePersist) Unbind(dir string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.bound, dir)
	return nil
}

func (p *fakePersist) dirs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for d := range p.bound {
		out = append(out, d)
	}
	return out
}

var errUnhealthy = errors.New("connection refused")

// health answers for whatever dir the service runs: unhealthy dirs fail.
type health struct {
	svc       *fakeService
	mu        sync.Mutex
	unhealthy map[string]bool
	hook      func(ctx context.Context) error
}

func (h *health) check(ctx context.Context) error {
	h.mu.Lock()
	hook := h.hook
	bad := h.unhealthy[h.svc.dir()]
	h.mu.Unlock()
	if hook != nil {
		if err := hook(ctx); err != nil {
			return err
		}
	}
	if bad {
		return errUnhealthy
	}
	return nil
}
