package appapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeNode answers the server's questions from maps.
type fakeNode struct {
	mu       sync.Mutex
	secrets  map[string]string // app/name → value
	restarts []string
}

func (f *fakeNode) Info(app string) any { return map[string]string{"app": app} }
func (f *fakeNode) Services() []ServiceInfo {
	return []ServiceInfo{{Name: "web", Port: 8080, URL: "http://127.0.0.1:8080", State: "running"}, {Name: "worker", State: "running"}}
}
func (f *fakeNode) Secret(app, name string) (string, error) {
	v, ok := f.secrets[app+"/"+name]
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	return v, nil
}
func (f *fakeNode) Restart(app, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarts = append(f.restarts, app+": "+reason)
}

// client is one connection to a test server.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
	id uint64
}

// msg is any line the server sends.
type msg struct {
	ID       uint64          `json:"id"`
	Result   json.RawMessage `json:"result"`
	Error    *Error          `json:"error"`
	Event    *Event          `json:"event"`
	Shutdown *Shutdown       `json:"shutdown"`
}

func (c *client) read() msg {
	c.t.Helper()
	line, err := c.br.ReadBytes('\n')
	if err != nil {
		c.t.Fatalf("reading an answer: %v", err)
	}
	var m msg
	if err := json.Unmarshal(line, &m); err != nil {
		c.t.Fatalf("answer %q: %v", line, err)
	}
	return m
}

// call sends op with fields and returns its answer.
func (c *client) call(op string, fields string) msg {
	c.t.Helper()
	c.id++
	if fields != "" {
		fields = "," + fields
	}
	fmt.Fprintf(c.c, "{\"id\":%d,\"op\":%q%s}\n", c.id, op, fields)
	m := c.read()
	if m.ID != c.id {
		c.t.Fatalf("%s: answer for id %d, want %d", op, m.ID, c.id)
	}
	return m
}

// testServer serves the apps web (this test's uid) and other (another uid)
// on sockets in a temp dir.
func testServer(t *testing.T, maxLock time.Duration) (*Server, *fakeNode, string) {
	t.Helper()
	node := &fakeNode{secrets: map[string]string{"web/db": "s3cret", "other/db": "theirs"}}
	uid := uint32(os.Getuid())
	srv := New(node, []App{{Name: "web", UID: uid, MaxLock: maxLock}, {Name: "other", UID: uid + 4242}}, Options{Log: t.Logf})
	dir := t.TempDir()
	path := filepath.Join(dir, "web.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go srv.Serve(l, "web")
	return srv, node, path
}

func dial(t *testing.T, path string) *client {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct{ in, code, msg string }{
		{`{"id":1,"op":"info"}`, "", ""},
		{`{"id":1,"op":"secret","name":"db-pass.v2"}`, "", ""},
		{`{"id":1,"op":"secret"}`, CodeBadRequest, "not a valid name"},
		{`{"id":1,"op":"secret","name":"../x"}`, CodeBadRequest, "not a valid name"},
		{`{"id":1,"op":"format-disk"}`, CodeBadRequest, `unknown op "format-disk"`},
		{`{"id":1}`, CodeBadRequest, `no "op"`},
		{`{"id":1,"op":"info","app":"other"}`, CodeBadRequest, `unknown field "app"`},
		{`{"id":1,"op":"info"} {"id":2,"op":"info"}`, CodeBadRequest, "one request per line"},
		{`[1,2]`, CodeBadRequest, "not a JSON object"},
		{"\xff", CodeBadRequest, "not UTF-8"},
		{`{"id":1,"op":"watchdog","intervalMs":10}`, CodeBadRequest, "out of range"},
		{`{"id":1,"op":"watchdog","intervalMs":0}`, "", ""},
		{`{"id":1,"op":"onShutdown","timeoutMs":600000}`, CodeBadRequest, "out of range"},
		{`{"id":1,"op":"lock","reason":"` + strings.Repeat("x", 201) + `"}`, CodeBadRequest, "at most 200"},
		{strings.Repeat(" ", MaxRequest), CodeTooLarge, "at most"},
	} {
		_, err := ParseRequest([]byte(tc.in))
		if tc.code == "" {
			if err != nil {
				t.Errorf("%.40s: %v", tc.in, err)
			}
			continue
		}
		if err == nil || err.Code != tc.code || !strings.Contains(err.Message, tc.msg) {
			t.Errorf("%.40s: got %+v, want %s containing %q", tc.in, err, tc.code, tc.msg)
		}
	}
}

func TestRequests(t *testing.T) {
	srv, _, path := testServer(t, 0)
	c := dial(t, path)
	if m := c.call("info", ""); string(m.Result) != `{"app":"web"}` {
		t.Errorf("info: %s %+v", m.Result, m.Error)
	}
	// The secret is the caller's own, whatever it asks.
	if m := c.call("secret", `"name":"db"`); string(m.Result) != `{"value":"s3cret"}` {
		t.Errorf("secret: %s %+v", m.Result, m.Error)
	}
	m := c.call("secret", `"name":"nope"`)
	if m.Error == nil || m.Error.Code != CodeNotFound || !strings.Contains(m.Error.Message, "nodeboot secret set NODE web nope") {
		t.Errorf("unknown secret: %+v", m.Error)
	}
	if m := c.call("service", `"name":"worker"`); !strings.Contains(string(m.Result), `"name":"worker"`) {
		t.Errorf("service: %s %+v", m.Result, m.Error)
	}
	if m := c.call("service", `"name":"ghost"`); m.Error == nil || m.Error.Code != CodeNotFound {
		t.Errorf("unknown service: %+v", m.Error)
	}
	if m := c.call("services", ""); !strings.Contains(string(m.Result), `"url":"http://127.0.0.1:8080"`) {
		t.Errorf("services: %s", m.Result)
	}
	// A malformed request is answered and the connection goes on.
	fmt.Fprintf(c.c, "not json\n")
	if m := c.read(); m.Error == nil || m.Error.Code != CodeBadRequest {
		t.Errorf("malformed: %+v", m)
	}
	if m := c.call("keepalive", ""); m.Error == nil || !strings.Contains(m.Error.Message, "watchdog(intervalMs) first") {
		t.Errorf("keepalive without watchdog: %+v", m.Error)
	}
	if m := c.call("info", ""); m.Error != nil {
		t.Errorf("after errors: %+v", m.Error)
	}
	if err := srv.Ready("web"); err == nil {
		t.Error("ready before ready()")
	}
}

func TestReadyEndsWithConnection(t *testing.T) {
	srv, _, path := testServer(t, 0)
	c := dial(t, path)
	c.call("ready", "")
	if err := srv.Ready("web"); err != nil {
		t.Fatal(err)
	}
	if !srv.Status("web").Ready {
		t.Error("status: not ready")
	}
	// A process started after that connection was made is not ready.
	if err := srv.ReadySince("web", time.Now().Add(time.Hour)); err == nil {
		t.Error("an older connection's ready() counted for a later process")
	}
	c.c.Close()
	waitFor(t, "readiness to end with the connection", func() bool { return srv.Ready("web") != nil })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestTooLargeRequest(t *testing.T) {
	srv, _, path := testServer(t, 0)
	c := dial(t, path)
	c.c.Write([]byte(strings.Repeat("x", MaxRequest+10)))
	m := c.read()
	if m.Error == nil || m.Error.Code != CodeTooLarge {
		t.Fatalf("got %+v", m)
	}
	if _, err := c.br.ReadByte(); err == nil {
		t.Error("connection still open after a request too large")
	}
	// The server still serves others.
	c2 := dial(t, path)
	if m := c2.call("info", ""); m.Error != nil {
		t.Error(m.Error)
	}
	_ = srv
}

func TestTooManyConnections(t *testing.T) {
	_, _, path := testServer(t, 0)
	var cs []*client
	for i := 0; i < MaxConns; i++ {
		c := dial(t, path)
		c.call("info", "")
		cs = append(cs, c)
	}
	c := dial(t, path)
	m := c.read()
	if m.Error == nil || m.Error.Code != CodeTooMany {
		t.Fatalf("connection %d: %+v", MaxConns+1, m)
	}
	cs[0].c.Close()
	waitFor(t, "a slot", func() bool {
		c := dial(t, path)
		c.id++
		fmt.Fprintf(c.c, "{\"id\":1,\"op\":\"info\"}\n")
		return c.read().Error == nil
	})
}

func TestWatchdog(t *testing.T) {
	node := &fakeNode{}
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	srv := New(node, []App{{Name: "web", UID: uint32(os.Getuid())}}, Options{Log: t.Logf, Now: clock})
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go srv.Serve(l, "web")
	c := dial(t, path)
	c.call("watchdog", `"intervalMs":1000`)
	advance(1500 * time.Millisecond)
	srv.CheckWatchdogs()
	c.call("keepalive", "")
	advance(1900 * time.Millisecond)
	srv.CheckWatchdogs()
	if len(node.restarts) != 0 {
		t.Fatalf("restarted within two intervals: %v", node.restarts)
	}
	advance(200 * time.Millisecond)
	srv.CheckWatchdogs()
	if len(node.restarts) != 1 || !strings.Contains(node.restarts[0], "watchdog") {
		t.Fatalf("restarts: %v", node.restarts)
	}
	if st := srv.Status("web"); st.WatchdogRestarts != 1 || st.WatchdogMs != 0 {
		t.Errorf("status: %+v", st)
	}
	// Disarmed until the next process arms it again.
	advance(time.Hour)
	srv.CheckWatchdogs()
	if len(node.restarts) != 1 {
		t.Errorf("restarts: %v", node.restarts)
	}
}

func TestShutdown(t *testing.T) {
	srv, _, path := testServer(t, 0)
	c := dial(t, path)
	if m := c.call("onShutdown", `"timeoutMs":30000`); string(m.Result) != `{"timeoutMs":30000}` {
		t.Fatalf("onShutdown: %s %+v", m.Result, m.Error)
	}
	done := make(chan struct{})
	go func() { srv.BeforeStop("web", "restart"); close(done) }()
	m := c.read()
	if m.Shutdown == nil || m.Shutdown.Reason != CauseRestart || m.Shutdown.TimeoutMs != 30000 {
		t.Fatalf("push: %+v", m)
	}
	select {
	case <-done:
		t.Fatal("BeforeStop returned before the handler was done")
	default:
	}
	c.call("shutdownDone", "")
	<-done
	// A handler that never answers holds the stop for its timeout only.
	c2 := dial(t, path)
	c.c.Close()
	c2.call("onShutdown", `"timeoutMs":1`)
	srv.BeforeStop("web", "restart")
}

func TestLocks(t *testing.T) {
	srv, _, path := testServer(t, time.Hour)
	c := dial(t, path)
	if m := c.call("lock", `"reason":"migrating"`); string(m.Result) != `{"maxSeconds":3600}` {
		t.Fatalf("lock: %s %+v", m.Result, m.Error)
	}
	if m := c.call("lock", `"reason":"again"`); m.Error == nil {
		t.Error("second lock on one connection")
	}
	if st := srv.Status("web"); len(st.Locks) != 1 || st.Locks[0].Reason != "migrating" {
		t.Errorf("status: %+v", st)
	}
	// Other apps' deploys do not wait.
	if _, err := srv.WaitLocks(context.Background(), []string{"other"}, "deploy of other"); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() {
		_, err := srv.WaitLocks(context.Background(), []string{"web"}, "deploy of web")
		waited <- err
	}()
	select {
	case err := <-waited:
		t.Fatalf("deploy did not wait for the lock: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	c.call("release", "")
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if m := c.call("release", ""); m.Error == nil {
		t.Error("release without lock")
	}
	// A closed connection releases its lock too.
	c.call("lock", `"reason":"x"`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := srv.WaitLocks(ctx, []string{"web"}, "reboot"); err == nil {
		t.Error("cancelled wait returned nil")
	}
	c.c.Close()
	if _, err := srv.WaitLocks(context.Background(), []string{"web"}, "reboot"); err != nil {
		t.Fatal(err)
	}
}

func TestLockOverridden(t *testing.T) {
	srv, _, path := testServer(t, time.Millisecond)
	c := dial(t, path)
	c.call("events", "")
	c.call("lock", `"reason":"stuck"`)
	over, err := srv.WaitLocks(context.Background(), []string{"web"}, "deploy of web")
	if err != nil || len(over) != 1 || over[0].Reason != "stuck" {
		t.Fatalf("%v %+v", err, over)
	}
	m := c.read()
	if m.Event == nil || m.Event.Type != "lock-overridden" {
		t.Fatalf("event: %+v", m)
	}
	st := srv.Status("web")
	if len(st.Locks) != 1 || !st.Locks[0].Overridden || !strings.Contains(st.LastOverride, "overridden") {
		t.Errorf("status: %+v", st)
	}
}

func TestEvents(t *testing.T) {
	srv, _, path := testServer(t, 0)
	c := dial(t, path)
	quiet := dial(t, path)
	c.call("events", "")
	quiet.call("info", "")
	srv.Publish(Event{Type: "deploy", App: "web", Message: "version abc"})
	m := c.read()
	if m.Event == nil || m.Event.Type != "deploy" || m.Event.Time == "" {
		t.Fatalf("event: %+v", m)
	}
	// The other connection got nothing: its next line is its answer.
	if m := quiet.call("info", ""); m.Event != nil {
		t.Errorf("unsubscribed got %+v", m.Event)
	}
}

// TestShutdownCauses: a handler learns why its app stops — what PID 1
// recorded with Stopping, a node-wide cause over an app's, the first
// node-wide cause kept, and the supervisor's own reason otherwise.
func TestShutdownCauses(t *testing.T) {
	srv, _, path := testServer(t, 0)
	c := dial(t, path)
	c.call("onShutdown", `"timeoutMs":30000`)
	stop := func(supervisor string) string {
		t.Helper()
		done := make(chan struct{})
		go func() { srv.BeforeStop("web", supervisor); close(done) }()
		m := c.read()
		if m.Shutdown == nil {
			t.Fatalf("push: %+v", m)
		}
		c.call("shutdownDone", "")
		<-done
		return m.Shutdown.Reason
	}
	if got := stop("restart"); got != CauseRestart {
		t.Errorf("a plain restart: %q", got)
	}
	if got := stop("stop"); got != CausePowerOff {
		t.Errorf("a plain stop: %q", got)
	}
	forget := srv.Stopping("web", CauseDeploy)
	srv.Stopping("other", CauseRestart)
	if got := stop("restart"); got != CauseDeploy {
		t.Errorf("during a deploy: %q", got)
	}
	forget()
	// A deploy that ended leaves nothing behind.
	if got := stop("restart"); got != CauseRestart {
		t.Errorf("after the deploy: %q", got)
	}
	srv.Stopping("web", CauseDeploy)
	srv.Stopping("", CauseUpdate)
	srv.Stopping("", CauseReboot)
	if got := stop("stop"); got != CauseUpdate {
		t.Errorf("an update's reboot during a deploy: %q", got)
	}
}
