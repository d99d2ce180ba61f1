package appapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/nodeboot/nodeboot/internal/crash"
)

// App is one app the server answers, identified by its uid.
type App struct {
	Name string
	UID  uint32
	// MaxLock is how long a lock() may hold off a deploy, update or
	// reboot of the app (nodeboot.json maxLockSeconds); 0: DefaultMaxLock.
	MaxLock time.Duration
}

// DefaultMaxLock is MaxLock when the config sets none.
const DefaultMaxLock = 60 * time.Second

// ServiceInfo is one app as services() shows it to the others.
type ServiceInfo struct {
	Name  string `json:"name"`
	Port  int    `json:"port,omitempty"`
	URL   string `json:"url,omitempty"`
	State string `json:"state"`
	Ready bool   `json:"ready"`
}

// Node is what the server asks PID 1 for.
type Node interface {
	// Info is info()'s answer for app, any JSON value.
	Info(app string) any
	// Services lists the node's apps.
	Services() []ServiceInfo
	// Secret returns app's secret name; an unknown one wraps ErrNotFound.
	Secret(app, name string) (string, error)
	// Restart restarts app (its watchdog ran out); it does not wait.
	Restart(app, reason string)
}

// Lock is a held lock(), as status shows it.
type Lock struct {
	App        string    `json:"app"`
	Reason     string    `json:"reason"`
	Since      time.Time `json:"since"`
	Overridden bool      `json:"overridden,omitempty"`
}

// AppStatus is what the server knows of one app, for status.
type AppStatus struct {
	Ready            bool   `json:"ready"`
	WatchdogMs       int64  `json:"watchdogMs,omitempty"`
	WatchdogRestarts int    `json:"watchdogRestarts,omitempty"`
	Locks            []Lock `json:"locks,omitempty"`
	// LastOverride says when and what a lock was overridden for.
	LastOverride string `json:"lastOverride,omitempty"`
}

// Server serves every app's socket.
type Server struct {
	node Node
	log  func(string, ...any)
	now  func() time.Time
	// peer reads the connecting process's uid; tests may replace it.
	peer func(net.Conn) (uint32, error)

	mu      sync.Mutex
	apps    map[string]*appState
	byUID   map[uint32][]string
	changed chan struct{} // closed and replaced when a lock changes
	// nodeCause is why every app is about to stop (a reboot, a
	// power-off, an OS update's reboot); "" while the node runs on.
	nodeCause string
}

type appState struct {
	cfg          App
	conns        map[*conn]struct{}
	restarts     int
	lastOverride string
	watchdogHit  bool     // the next stop is the watchdog's: no onShutdown
	causes       []string // why the app is about to stop, newest last (Stopping)
}

// conn is one app connection. Fields below mu are guarded by Server.mu.
type conn struct {
	c     net.Conn
	app   *appState
	since time.Time // when it connected
	out   chan []byte
	done  chan struct{} // closed when the connection ends

	ready      bool
	interval   time.Duration
	lastAlive  time.Time
	shutdownMs int64         // >0: an onShutdown handler is registered
	shutdownOK chan struct{} // closed by shutdownDone, while a stop waits
	lock       *Lock
	events     bool
}

// Options configure a Server.
type Options struct {
	Log func(format string, args ...any)
	Now func() time.Time // default time.Now
}

// New returns a server for apps.
func New(node Node, apps []App, o Options) *Server {
	s := &Server{node: node, log: o.Log, now: o.Now, peer: peerUID,
		apps: map[string]*appState{}, byUID: map[uint32][]string{}, changed: make(chan struct{})}
	if s.log == nil {
		s.log = func(string, ...any) {}
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, a := range apps {
		if a.MaxLock <= 0 {
			a.MaxLock = DefaultMaxLock
		}
		s.apps[a.Name] = &appState{cfg: a, conns: map[*conn]struct{}{}}
		s.byUID[a.UID] = append(s.byUID[a.UID], a.Name)
	}
	return s
}

// Serve accepts connections on app's socket until l is closed. Each
// connection is served as the app its peer's uid belongs to; a process
// whose uid is no app's, or another app's, is answered with an error and
// disconnected.
func (s *Server) Serve(l net.Listener, app string) error {
	for {
		c, err := l.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		crash.Go("appapi "+app, func() { s.handle(c, app) })
	}
}

// refuse answers a connection it will not serve, briefly, and closes it.
func refuse(c net.Conn, code, msg string) {
	b, _ := json.Marshal(Response{Error: &Error{Code: code, Message: msg}})
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write(append(b, '\n'))
	c.Close()
}

func (s *Server) handle(nc net.Conn, socketApp string) {
	uid, err := s.peer(nc)
	if err != nil {
		refuse(nc, CodeInternal, fmt.Sprintf("reading the caller's credentials: %v", err))
		return
	}
	s.mu.Lock()
	names := s.byUID[uid]
	var st *appState
	var why string
	switch {
	case len(names) == 0:
		why = fmt.Sprintf("uid %d is not an app of this node: only the app %s may use this socket", uid, socketApp)
	case len(names) > 1:
		why = fmt.Sprintf("uid %d belongs to several apps (%v): the node's configuration is damaged; rebuild the image", uid, names)
	case names[0] != socketApp:
		why = fmt.Sprintf("uid %d is the app %s, and this is the socket of %s: use your own ($%s)", uid, names[0], socketApp, SocketEnv)
	default:
		st = s.apps[socketApp]
		if len(st.conns) >= MaxConns {
			s.mu.Unlock()
			refuse(nc, CodeTooMany, fmt.Sprintf("app %s already has %d connections open: reuse one (require('nodeboot') keeps one per process)", socketApp, MaxConns))
			return
		}
	}
	if st == nil {
		s.mu.Unlock()
		s.log("app api: refused a connection to %s's socket: %s", socketApp, why)
		refuse(nc, CodeNotAnApp, why)
		return
	}
	c := &conn{c: nc, app: st, since: s.now(), out: make(chan []byte, 64), done: make(chan struct{})}
	st.conns[c] = struct{}{}
	s.mu.Unlock()

	wrote := make(chan struct{})
	crash.Go("appapi "+socketApp+" writer", func() { defer close(wrote); c.writer() })
	s.read(c)

	// The connection is gone, and with it what it held. Pushes happen
	// under s.mu to connections in st.conns only, so once it is out of
	// there nothing else sends to c.out.
	s.mu.Lock()
	delete(st.conns, c)
	if c.lock != nil {
		c.lock = nil
		s.notifyLocked()
	}
	if c.shutdownOK != nil {
		close(c.shutdownOK)
		c.shutdownOK = nil
	}
	s.mu.Unlock()
	close(c.out) // the writer sends what is queued (a last error), then ends
	t := time.NewTimer(2 * time.Second)
	select {
	case <-wrote:
	case <-t.C:
	}
	t.Stop()
	nc.Close()
	close(c.done)
	<-wrote
}

// writer sends c's queued messages; a reader that stops reading for
// writeTimeout loses its connection rather than holding PID 1.
func (c *conn) writer() {
	const writeTimeout = 5 * time.Second
	for b := range c.out {
		c.c.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := c.c.Write(b); err != nil {
			c.c.Close()
			for range c.out {
			}
			return
		}
	}
}

// send queues an answer; it waits while the queue is full, unless the
// connection ends.
func (c *conn) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(Response{Error: &Error{CodeInternal, err.Error()}})
	}
	select {
	case c.out <- append(b, '\n'):
	case <-c.done:
	}
}

// push queues a message PID 1 sends on its own; it never waits: a
// connection whose queue is full misses it.
func (c *conn) push(p Push) bool {
	b, err := json.Marshal(p)
	if err != nil {
		return false
	}
	select {
	case c.out <- append(b, '\n'):
		return true
	default:
		return false
	}
}

// read answers c's requests until it closes or sends a request too large
// to resynchronise after.
func (s *Server) read(c *conn) {
	br := bufio.NewReaderSize(c.c, 4096)
	for {
		line, err := readLine(br)
		if err != nil {
			if errors.Is(err, errTooLong) {
				c.send(Response{Error: &Error{CodeTooLarge, fmt.Sprintf("request longer than %d bytes: closing the connection", MaxRequest-1)}})
			}
			return
		}
		if len(line) == 0 {
			continue
		}
		req, perr := ParseRequest(line)
		if perr != nil {
			c.send(Response{ID: req.ID, Error: perr})
			continue
		}
		res, herr := s.do(c, req)
		if herr != nil {
			c.send(Response{ID: req.ID, Error: herr})
			continue
		}
		if res == nil {
			res = struct{}{}
		}
		c.send(Response{ID: req.ID, Result: res})
	}
}

var errTooLong = errors.New("request too long")

// readLine returns the next line without its newline, refusing lines of
// MaxRequest bytes or more without buffering them.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		// At most MaxRequest bytes with the newline: a line that has
		// not ended by then is refused without waiting for its end.
		if n := len(line) + len(frag); n > MaxRequest || (n == MaxRequest && err != nil) {
			return nil, errTooLong
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		default:
			return nil, err
		}
	}
}

// do runs one request for c's app.
func (s *Server) do(c *conn, r Request) (any, *Error) {
	app := c.app.cfg.Name
	switch r.Op {
	case OpInfo:
		return s.node.Info(app), nil
	case OpReady:
		s.mu.Lock()
		first := !s.readyLocked(c.app)
		c.ready = true
		s.mu.Unlock()
		if first {
			s.log("app %s: ready", app)
		}
		return nil, nil
	case OpWatchdog:
		s.mu.Lock()
		c.interval = time.Duration(r.IntervalMs) * time.Millisecond
		c.lastAlive = s.now()
		s.mu.Unlock()
		if r.IntervalMs > 0 {
			s.log("app %s: watchdog every %s (restarted when silent for two)", app, c.interval)
		}
		return nil, nil
	case OpKeepAlive:
		s.mu.Lock()
		c.lastAlive = s.now()
		armed := c.interval > 0
		s.mu.Unlock()
		if !armed {
			return nil, &Error{CodeBadRequest, "keepalive without a watchdog: call watchdog(intervalMs) first"}
		}
		return nil, nil
	case OpOnShutdown:
		ms := r.TimeoutMs
		if ms == 0 {
			ms = DefaultShutdownMs
		}
		s.mu.Lock()
		c.shutdownMs = ms
		s.mu.Unlock()
		return map[string]int64{"timeoutMs": ms}, nil
	case OpShutdownDone:
		s.mu.Lock()
		if c.shutdownOK != nil {
			close(c.shutdownOK)
			c.shutdownOK = nil
		}
		s.mu.Unlock()
		return nil, nil
	case OpLock:
		s.mu.Lock()
		defer s.mu.Unlock()
		if c.lock != nil {
			return nil, &Error{CodeBadRequest, fmt.Sprintf("this connection already holds a lock (%q since %s): release() it first", c.lock.Reason, c.lock.Since.UTC().Format(time.RFC3339))}
		}
		c.lock = &Lock{App: app, Reason: r.Reason, Since: s.now()}
		s.notifyLocked()
		return map[string]int64{"maxSeconds": int64(c.app.cfg.MaxLock / time.Second)}, nil
	case OpRelease:
		s.mu.Lock()
		defer s.mu.Unlock()
		if c.lock == nil {
			return nil, &Error{CodeBadRequest, "release() without a lock held"}
		}
		c.lock = nil
		s.notifyLocked()
		return nil, nil
	case OpServices:
		return s.node.Services(), nil
	case OpService:
		for _, sv := range s.node.Services() {
			if sv.Name == r.Name {
				return sv, nil
			}
		}
		return nil, &Error{CodeNotFound, fmt.Sprintf("no app %q on this node", r.Name)}
	case OpSecret:
		v, err := s.node.Secret(app, r.Name)
		if errors.Is(err, ErrNotFound) {
			return nil, &Error{CodeNotFound, fmt.Sprintf("app %s has no secret %q: set it with `nodeboot secret set NODE %s %s`", app, r.Name, app, r.Name)}
		}
		if err != nil {
			return nil, &Error{CodeInternal, fmt.Sprintf("reading secret %q: %v", r.Name, err)}
		}
		return map[string]string{"value": v}, nil
	case OpEvents:
		s.mu.Lock()
		c.events = true
		s.mu.Unlock()
		return nil, nil
	}
	return nil, &Error{CodeBadRequest, fmt.Sprintf("unknown op %q", r.Op)}
}

func (s *Server) readyLocked(a *appState) bool { return s.readySinceLocked(a, time.Time{}) }

func (s *Server) readySinceLocked(a *appState, t time.Time) bool {
	for c := range a.conns {
		if c.ready && !c.since.Before(t) {
			return true
		}
	}
	return false
}

// Ready is the health check of an app whose nodeboot.json says "health":
// "ready": nil once a connection of its running process has called
// ready() (readiness ends with the connection, so a new process starts
// unready).
func (s *Server) Ready(app string) error { return s.ReadySince(app, time.Time{}) }

// ReadySince is Ready counting only connections made at or after t, the
// start of the app's current process: a connection of the process a
// deploy just stopped, whose end the server may not have read yet, does
// not make the new one ready.
func (s *Server) ReadySince(app string, t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[app]
	if !ok {
		return fmt.Errorf("no app %q", app)
	}
	if !s.readySinceLocked(a, t) {
		return fmt.Errorf("app %s has not called ready() yet", app)
	}
	return nil
}

// Status returns what the server knows of app.
func (s *Server) Status(app string) AppStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[app]
	if !ok {
		return AppStatus{}
	}
	st := AppStatus{Ready: s.readyLocked(a), WatchdogRestarts: a.restarts, LastOverride: a.lastOverride}
	for c := range a.conns {
		if c.interval > 0 && (st.WatchdogMs == 0 || c.interval.Milliseconds() < st.WatchdogMs) {
			st.WatchdogMs = c.interval.Milliseconds()
		}
		if c.lock != nil {
			st.Locks = append(st.Locks, *c.lock)
		}
	}
	sort.Slice(st.Locks, func(i, j int) bool { return st.Locks[i].Since.Before(st.Locks[j].Since) })
	return st
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// WaitLocks waits until none of apps holds a lock, overriding each lock
// once it has been held for its app's MaxLock: what (a deploy, an update,
// a reboot) then proceeds, the lock's holder gets a lock-overridden event
// and status says so. It returns the overridden locks.
func (s *Server) WaitLocks(ctx context.Context, apps []string, what string) ([]Lock, error) {
	var overridden []Lock
	logged := false
	for {
		s.mu.Lock()
		now := s.now()
		var wait time.Duration = -1
		var held []string
		for _, name := range apps {
			a, ok := s.apps[name]
			if !ok {
				continue
			}
			for c := range a.conns {
				l := c.lock
				if l == nil || l.Overridden {
					continue
				}
				left := a.cfg.MaxLock - now.Sub(l.Since)
				if left <= 0 {
					l.Overridden = true
					a.lastOverride = fmt.Sprintf("%s: lock %q held since %s overridden after %s by %s", now.UTC().Format(time.RFC3339), l.Reason, l.Since.UTC().Format(time.RFC3339), a.cfg.MaxLock, what)
					overridden = append(overridden, *l)
					s.log("app %s: lock %q overridden after maxLockSeconds (%s): %s proceeds", name, l.Reason, a.cfg.MaxLock, what)
					c.push(Push{Event: &Event{Type: EventLockOverridden, Time: now.UTC().Format(time.RFC3339), App: name,
						Message: fmt.Sprintf("lock %q held longer than %s: %s proceeds", l.Reason, a.cfg.MaxLock, what)}})
					continue
				}
				held = append(held, fmt.Sprintf("%s (%q)", name, l.Reason))
				if wait < 0 || left < wait {
					wait = left
				}
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if len(held) == 0 {
			return overridden, nil
		}
		if !logged {
			s.log("%s waits for the lock of %v", what, held)
			logged = true
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return overridden, fmt.Errorf("%s waited for the lock of %v: %w", what, held, ctx.Err())
		}
		t.Stop()
	}
}

// Stopping records that app is about to be stopped for cause (one of the
// Cause constants), so that its onShutdown handlers get it; app "" is
// every app (a reboot, a power-off, an OS update's reboot), and the first
// node-wide cause stays: the power-off path that an update's reboot goes
// through must not turn "update" into "reboot". The returned func forgets
// an app's cause: a deploy that fails before it stops anything must not
// leave "deploy" to the next restart. (A node-wide cause is never
// forgotten: the node is going down.)
func (s *Server) Stopping(app, cause string) (forget func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if app == "" {
		if s.nodeCause == "" {
			s.nodeCause = cause
		}
		return func() {}
	}
	a, ok := s.apps[app]
	if !ok {
		return func() {}
	}
	a.causes = append(a.causes, cause)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i := len(a.causes) - 1; i >= 0; i-- {
			if a.causes[i] == cause {
				a.causes = append(a.causes[:i], a.causes[i+1:]...)
				break
			}
		}
	}
}

// causeLocked is why app a stops now: the node's going down first, then
// what PID 1 recorded with Stopping, else the supervisor's own reason
// ("restart" for a restart; "stop" only comes with the node's end).
func (s *Server) causeLocked(a *appState, supervisor string) string {
	switch {
	case s.nodeCause != "":
		return s.nodeCause
	case len(a.causes) > 0:
		return a.causes[len(a.causes)-1]
	case supervisor == "restart":
		return CauseRestart
	}
	return CausePowerOff
}

// BeforeStop runs app's onShutdown handlers: each connection that
// registered one is told why (the cause recorded with Stopping, else what
// the supervisor's reason, "stop" or "restart", implies), and the stop
// waits until each says it is done, closes, or its timeout passes. A stop
// the watchdog asked for skips them: the app is hung.
func (s *Server) BeforeStop(app, reason string) {
	s.mu.Lock()
	a, ok := s.apps[app]
	if !ok {
		s.mu.Unlock()
		return
	}
	if a.watchdogHit {
		a.watchdogHit = false
		s.mu.Unlock()
		return
	}
	reason = s.causeLocked(a, reason)
	type wait struct {
		ok      chan struct{}
		done    chan struct{}
		timeout time.Duration
	}
	var waits []wait
	for c := range a.conns {
		if c.shutdownMs <= 0 {
			continue
		}
		ch := make(chan struct{})
		c.shutdownOK = ch
		if c.push(Push{Shutdown: &Shutdown{Reason: reason, TimeoutMs: c.shutdownMs}}) {
			waits = append(waits, wait{ch, c.done, time.Duration(c.shutdownMs) * time.Millisecond})
		} else {
			c.shutdownOK = nil
		}
	}
	s.mu.Unlock()
	if len(waits) == 0 {
		return
	}
	s.log("app %s: onShutdown (%s): waiting for %d handler(s)", app, reason, len(waits))
	for _, w := range waits {
		t := time.NewTimer(w.timeout)
		select {
		case <-w.ok:
		case <-w.done:
		case <-t.C:
			s.log("app %s: onShutdown handler still running after %s: stopping it anyway", app, w.timeout)
		}
		t.Stop()
	}
}

// CheckWatchdogs restarts each app one of whose connections armed a
// watchdog and has been silent for two intervals. PID 1 calls it
// periodically (RunWatchdogs); tests call it with their own clock.
func (s *Server) CheckWatchdogs() {
	s.mu.Lock()
	now := s.now()
	var fire []string
	for name, a := range s.apps {
		for c := range a.conns {
			if c.interval > 0 && now.Sub(c.lastAlive) > 2*c.interval {
				fire = append(fire, fmt.Sprintf("%s\x00no keep-alive for %s (watchdog every %s)", name, now.Sub(c.lastAlive).Round(time.Millisecond), c.interval))
				a.restarts++
				a.watchdogHit = true
				// The next process arms its own.
				for c := range a.conns {
					c.interval = 0
				}
				break
			}
		}
	}
	s.mu.Unlock()
	for _, f := range fire {
		for i := 0; i < len(f); i++ {
			if f[i] == 0 {
				app, why := f[:i], f[i+1:]
				s.log("app %s: watchdog: %s: restarting it", app, why)
				s.node.Restart(app, "watchdog: "+why)
				break
			}
		}
	}
}

// RunWatchdogs calls CheckWatchdogs every interval until ctx ends.
func (s *Server) RunWatchdogs(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.CheckWatchdogs()
		}
	}
}

// Publish sends ev to every connection that asked for events(); one that
// does not keep up misses it.
func (s *Server) Publish(ev Event) {
	if ev.Time == "" {
		ev.Time = s.now().UTC().Format(time.RFC3339)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.apps {
		for c := range a.conns {
			if c.events {
				c.push(Push{Event: &ev})
			}
		}
	}
}
