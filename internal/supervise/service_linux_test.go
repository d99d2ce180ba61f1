package supervise

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/spec"
)

// The tests share one reaper, as PID 1 does: there can only be one per
// process. It is a subreaper so that orphans of the test's children come
// back to the test process and can be checked for.
var reaperLog syncBuffer

func TestMain(m *testing.M) {
	r, err := NewReaper(ReaperOptions{
		Subreaper: true,
		Log: func(format string, args ...any) {
			fmt.Fprintf(&reaperLog, format+"\n", args...)
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	r.Close()
	os.Exit(code)
}

// syncBuffer is a console the test can read while services write to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond. The deadline only keeps a broken test from hanging; it
// is not a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func openFDs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		target, _ := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		fds = append(fds, e.Name()+"->"+target)
	}
	return fds
}

func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// shService returns options running script with /bin/sh.
func shService(t *testing.T, name, script string, console *syncBuffer) Options {
	opts := Options{
		Name:    name,
		Path:    "/bin/sh",
		Args:    []string{"-c", script},
		Dir:     t.TempDir(),
		Backoff: Backoff{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, ResetAfter: time.Hour},
	}
	if console != nil { // not a typed nil in the interface
		opts.Console = console
	}
	return opts
}

// runService runs s in the background; the returned func stops it and waits.
func runService(t *testing.T, s *Service) (stop func()) {
	done := make(chan struct{})
	go func() { s.Run(context.Background()); close(done) }()
	stop = func() {
		if err := s.Stop(5 * time.Second); err != nil {
			t.Errorf("Stop: %v", err)
		}
		<-done
	}
	t.Cleanup(func() { s.Stop(0); <-done })
	return stop
}

func TestRestartWithGrowingDelays(t *testing.T) {
	var console syncBuffer
	// The runtime's poller opens its fds on first use of a pipe; start it
	// before taking the baseline.
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
	fdsBefore := openFDs(t)
	s := New(shService(t, "crash", "echo boom; exit 1", &console))
	stop := runService(t, s)
	waitFor(t, "5 restarts", func() bool { return s.Status().Restarts >= 5 })
	stop()
	// Pipes and pidfds of every run are released.
	if fdsAfter := openFDs(t); len(fdsAfter) > len(fdsBefore) {
		t.Errorf("open fds grew from %q to %q over the restarts", fdsBefore, fdsAfter)
	}

	out := console.String()
	if !strings.Contains(out, "crash: boom\n") {
		t.Errorf("console lacks the app's output:\n%s", out)
	}
	if !strings.Contains(out, "crash[init]: exited with status 1 after ") {
		t.Errorf("console lacks the exit reason:\n%s", out)
	}
	// The delays grow and the messages come in order.
	last := -1
	for i, d := range []string{"10ms", "20ms", "40ms", "80ms", "80ms"} {
		msg := fmt.Sprintf("crash[init]: restarting in %s (restart #%d)\n", d, i+1)
		at := strings.Index(out, msg)
		if at < 0 || at < last {
			t.Fatalf("console lacks %q after offset %d:\n%s", msg, last, out)
		}
		last = at
	}
	st := s.Status()
	// The stop may catch the process running (TERM) or in backoff.
	if st.State != StateStopped || st.PID != 0 || st.LastExit == "" {
		t.Errorf("status after stop = %+v", st)
	}
}

func TestOutputLines(t *testing.T) {
	var console syncBuffer
	script := `echo one; echo two >&2; head -c 70000 /dev/zero | tr '\0' x; echo
head -c 65536 /dev/zero | tr '\0' y; echo; printf partial; echo done >&2; exec sleep 1000`
	opts := shService(t, "out", script, &console)
	s := New(opts)
	stop := runService(t, s)
	// "partial" has no newline, so it only arrives at EOF, after the stop.
	waitFor(t, "output", func() bool { return hasLine(s.Lines(0), "out[err]: done") })
	stop()

	lines := s.Lines(0)
	for _, want := range []string{"out: one", "out[err]: two", "out: partial"} {
		if !hasLine(lines, want) {
			t.Errorf("ring lacks %q: %.80q", want, lines)
		}
	}
	// The 70000-byte line is cut at 64 KiB.
	long := "out: " + strings.Repeat("x", maxLine)
	rest := "out: " + strings.Repeat("x", 70000-maxLine)
	if !hasLine(lines, long) || !hasLine(lines, rest) {
		t.Errorf("long line not cut at %d bytes; line lengths:", maxLine)
		for _, l := range lines {
			t.Errorf("  %d %.40q", len(l), l)
		}
	}
	// A line of exactly 64 KiB is one line, without an empty one after it.
	if !hasLine(lines, "out: "+strings.Repeat("y", maxLine)) || hasLine(lines, "out: ") {
		t.Errorf("64 KiB line mishandled; %d lines", len(lines))
	}
	out := console.String()
	for _, want := range []string{"out: one\n", "out[err]: two\n", "out: partial\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if got := s.Lines(1); len(got) != 1 || got[0] != lines[len(lines)-1] {
		t.Errorf("Lines(1) = %q, want the last of %q", got, lines)
	}
}

func TestRingLinesLimit(t *testing.T) {
	opts := shService(t, "ring", "for i in 1 2 3 4 5 6; do echo $i; done; exec sleep 1000", nil)
	opts.RingLines = 4
	s := New(opts)
	stop := runService(t, s)
	waitFor(t, "line 6", func() bool { return hasLine(s.Lines(0), "ring: 6") })
	lines := s.Lines(0)
	stop()
	// The start event and the first lines have been pushed out.
	if want := []string{"ring: 3", "ring: 4", "ring: 5", "ring: 6"}; strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("Lines = %q, want %q", lines, want)
	}
}

// procGroup returns the process group of pid, or false if the process is gone
// (or only a zombie is left, which no longer runs anything).
func procGroup(pid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state ppid pgrp ...
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 3 || f[0] == "Z" {
		return 0, false
	}
	pgrp, _ := strconv.Atoi(f[2])
	return pgrp, true
}

func TestStopTermThenKill(t *testing.T) {
	var console syncBuffer
	// The leader handles TERM (and says so) but keeps running; the
	// grandchild in the same process group ignores TERM altogether.
	script := `trap 'echo got TERM' TERM
sh -c 'trap "" TERM; while :; do sleep 1; done' &
echo "grandchild $!"
while :; do sleep 0.1; done`
	s := New(shService(t, "stubborn", script, &console))
	runService(t, s)

	var grandchild int
	waitFor(t, "grandchild pid", func() bool {
		for _, l := range s.Lines(0) {
			if n, err := fmt.Sscanf(l, "stubborn: grandchild %d", &grandchild); n == 1 && err == nil {
				return true
			}
		}
		return false
	})
	leader := s.Status().PID
	if pg, ok := procGroup(grandchild); !ok || pg != leader {
		t.Fatalf("grandchild %d: process group %d (alive %v), want %d", grandchild, pg, ok, leader)
	}

	if err := s.Stop(2 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	st := s.Status()
	if st.State != StateStopped || st.LastExit != "killed by signal KILL" {
		t.Errorf("status after stop = %+v, want stopped, killed by signal KILL", st)
	}
	lines := s.Lines(0)
	if !hasLine(lines, "stubborn: got TERM") {
		t.Errorf("leader did not get TERM before KILL: %q", lines)
	}
	out := console.String()
	iTerm := strings.Index(out, "stubborn[init]: stopping pid")
	iKill := strings.Index(out, "still running 2s after TERM; sending KILL")
	if iTerm < 0 || iKill < iTerm {
		t.Errorf("console does not show TERM then KILL:\n%s", out)
	}
	for _, pid := range []int{leader, grandchild} {
		waitFor(t, fmt.Sprintf("pid %d to be gone", pid), func() bool {
			pg, ok := procGroup(pid)
			return !ok || pg != leader // gone, or the number was reused
		})
	}
}

func TestKilledBySignal(t *testing.T) {
	var console syncBuffer
	s := New(shService(t, "sig", "kill -s SEGV $$", &console))
	stop := runService(t, s)
	waitFor(t, "exit reason", func() bool {
		return strings.Contains(console.String(), "sig[init]: killed by signal SEGV")
	})
	stop()
	if st := s.Status(); !strings.HasPrefix(st.LastExit, "killed by signal SEGV") {
		t.Errorf("LastExit = %q", st.LastExit)
	}
}

func TestStartFailure(t *testing.T) {
	var logged syncBuffer
	opts := shService(t, "missing", "", nil)
	opts.Path = "/nonexistent/node"
	opts.Log = func(format string, args ...any) { fmt.Fprintf(&logged, format+"\n", args...) }
	s := New(opts)
	stop := runService(t, s)
	waitFor(t, "2 restarts", func() bool { return s.Status().Restarts >= 2 })
	stop()
	out := logged.String()
	if !strings.Contains(out, "missing: failed to start: starting /nonexistent/node: ") ||
		!strings.Contains(out, "missing: restarting in 20ms (restart #2)") {
		t.Errorf("log:\n%s", out)
	}
}

// zombieChildren lists the zombies whose parent is the test process.
func zombieChildren(t *testing.T) []int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	me := strconv.Itoa(os.Getpid())
	var z []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // exited meanwhile
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) >= 2 && f[0] == "Z" && f[1] == me {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			z = append(z, pid)
		}
	}
	return z
}

func TestOrphanReaping(t *testing.T) {
	r, err := defaultReaper()
	if err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The child double-forks: the grandchild outlives it, is re-parented to
	// the test process (the subreaper) and must be reaped there.
	script := fmt.Sprintf(`sh -c 'sleep 0.3; exit 7' & echo $! > %s`, pidFile)
	_, exited, err := r.Spawn(func() (int, error) {
		p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", script}, &os.ProcAttr{})
		if err != nil {
			return 0, err
		}
		defer p.Release()
		return p.Pid, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := <-exited; st.String() != "exited with status 0" {
		t.Fatalf("child: %s", st)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("reaped orphan pid %d (exited with status 7)", orphan)
	waitFor(t, want, func() bool { return strings.Contains(reaperLog.String(), want) })
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", orphan)); err == nil {
		t.Errorf("orphan %d still in /proc after being reaped", orphan)
	}
	if z := zombieChildren(t); len(z) > 0 {
		t.Errorf("zombies left: %v", z)
	}
}

// A child that exits at once must not have its status consumed before its
// PID is registered.
func TestFastExitStatusNotLost(t *testing.T) {
	r, err := defaultReaper()
	if err != nil {
		t.Fatal(err)
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, exited, err := r.Spawn(func() (int, error) {
				p, err := os.StartProcess(truePath, []string{"true"}, &os.ProcAttr{})
				if err != nil {
					return 0, err
				}
				defer p.Release()
				return p.Pid, nil
			})
			if err != nil {
				t.Errorf("spawn %d: %v", i, err)
				return
			}
			select {
			case st := <-exited:
				if st.String() != "exited with status 0" {
					t.Errorf("spawn %d: %s", i, st)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("spawn %d: exit status lost", i)
			}
		}()
	}
	wg.Wait()
}

func TestRunAsOtherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to switch users")
	}
	opts := shService(t, "nobody", "id -u; id -G; exec sleep 1000", nil)
	opts.Dir = "/"
	opts.UID, opts.GID = 65534, 65534
	s := New(opts)
	stop := runService(t, s)
	waitFor(t, "id output", func() bool { return len(s.Lines(0)) >= 3 })
	stop()
	lines := s.Lines(0)
	if !hasLine(lines, "nobody: 65534") {
		t.Errorf("id -u did not print 65534: %q", lines)
	}
	// Only the primary group: root's supplementary groups are dropped.
	if len(lines) < 3 || lines[2] != "nobody: 65534" {
		t.Errorf("id -G not just 65534: %q", lines)
	}
}

func TestStopAllAndContextCancel(t *testing.T) {
	var console syncBuffer
	a := New(shService(t, "a", "exec sleep 1000", &console))
	b := New(shService(t, "b", "exec sleep 1000", &console))
	runService(t, a)
	runService(t, b)
	waitFor(t, "both running", func() bool {
		return a.Status().State == StateRunning && b.Status().State == StateRunning
	})
	StopAll([]*Service{a, b}, 5*time.Second)
	for _, s := range []*Service{a, b} {
		if st := s.Status(); st.State != StateStopped || st.LastExit != "killed by signal TERM" {
			t.Errorf("%s: %+v", st.Name, st)
		}
	}

	opts := shService(t, "ctx", "exec sleep 1000", &console)
	opts.StopGrace = 5 * time.Second
	c := New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	waitFor(t, "ctx running", func() bool { return c.Status().State == StateRunning })
	cancel()
	<-done
	if st := c.Status(); st.State != StateStopped || st.LastExit != "killed by signal TERM" {
		t.Errorf("ctx: %+v", st)
	}
	if err := c.Stop(time.Second); err != nil {
		t.Errorf("Stop after Run returned: %v", err)
	}
}

// A descendant that left the process group (new session) keeps the output
// pipe open after the leader exited; the service must not wait for it.
func TestEscapedDescendantDoesNotBlock(t *testing.T) {
	setsid, err := exec.LookPath("setsid")
	if err != nil {
		t.Skip("no setsid(1)")
	}
	// The leader waits until the escape has happened (the pid file), so
	// that the group kill after its exit cannot catch setsid in time.
	script := setsid + ` sh -c 'echo $$ > esc.pid.tmp; mv esc.pid.tmp esc.pid; exec sleep 1000' &
while [ ! -s esc.pid ]; do sleep 0.01; done; exit 3`
	opts := shService(t, "esc", script, nil)
	opts.Backoff = Backoff{Initial: time.Hour}
	s := New(opts)
	stop := runService(t, s)
	waitFor(t, "backoff", func() bool { return s.Status().State == StateBackoff })
	stop()

	if b, err := os.ReadFile(filepath.Join(opts.Dir, "esc.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL) // the reaper collects it
		}
	}
	lines := s.Lines(0)
	if !hasLine(lines, "esc[init]: output still open 2s after exit; closing it") {
		t.Errorf("no note about the open output: %q", lines)
	}
	if st := s.Status(); st.LastExit != "exited with status 3" || st.Restarts != 1 {
		t.Errorf("status = %+v", st)
	}
}

func TestAppOptions(t *testing.T) {
	opts, err := AppOptions("/usr/bin/node", spec.RuntimeApp{
		Name:  "hello",
		Dir:   "/apps/hello",
		Entry: "src/index.js",
		Args:  []string{"--port", "3000"},
		Env:   map[string]string{"PORT": "3000", "HOME": "/data/hello"},
		UID:   1000,
		GID:   1001,
	})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s %q %s %q %d %d", opts.Path, opts.Args, opts.Dir, opts.Env, opts.UID, opts.GID)
	want := `/usr/bin/node ["/apps/hello/src/index.js" "--port" "3000"] /apps/hello ["HOME=/data/hello" "PORT=3000"] 1000 1001`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if _, err := AppOptions("/usr/bin/node", spec.RuntimeApp{Name: "x", UID: -1}); err == nil {
		t.Error("negative uid accepted")
	}
}

// fakeStarter shows the OS boundary can be replaced: its processes exit at
// once with the given codes.
type fakeStarter struct {
	mu    sync.Mutex
	codes []int
}

type fakeProcess struct {
	pid            int
	stdout, stderr io.ReadCloser
	exited         chan ExitStatus
}

func (p *fakeProcess) PID() int                    { return p.pid }
func (p *fakeProcess) Stdout() io.ReadCloser       { return p.stdout }
func (p *fakeProcess) Stderr() io.ReadCloser       { return p.stderr }
func (p *fakeProcess) Exited() <-chan ExitStatus   { return p.exited }
func (p *fakeProcess) Signal(syscall.Signal) error { return ErrNoProcess }

func (f *fakeStarter) Start(spec StartSpec) (Process, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.codes) == 0 {
		return nil, errors.New("no more")
	}
	code := f.codes[0]
	f.codes = f.codes[1:]
	p := &fakeProcess{
		pid:    100 + code,
		stdout: io.NopCloser(strings.NewReader("hello from " + spec.Path + "\n")),
		stderr: io.NopCloser(strings.NewReader("")),
		exited: make(chan ExitStatus, 1),
	}
	p.exited <- ExitStatus{Code: code}
	return p, nil
}

func TestFakeStarter(t *testing.T) {
	var logged syncBuffer
	s := New(Options{
		Name:    "fake",
		Path:    "/fake/node",
		Starter: &fakeStarter{codes: []int{0, 2}},
		Log:     func(format string, args ...any) { fmt.Fprintf(&logged, format+"\n", args...) },
		Backoff: Backoff{Initial: time.Millisecond, Max: time.Millisecond},
	})
	stop := runService(t, s)
	waitFor(t, "start failure", func() bool { return strings.Contains(s.Status().LastExit, "no more") })
	stop()
	out := logged.String()
	for _, want := range []string{
		"fake: started (pid 100)", "fake: exited with status 0 after",
		"fake: started (pid 102)", "fake: exited with status 2 after",
		"fake: failed to start: no more",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if !hasLine(s.Lines(0), "fake: hello from /fake/node") {
		t.Errorf("lines: %q", s.Lines(0))
	}
}

// TestKilledByIllegalInstruction runs a real program that executes an
// invalid opcode (gcc's __builtin_trap is ud2 on x86) and checks that the
// exit reason says what SIGILL means and names the file, read from the
// kernel's log as PID 1 reads it on a node.
func TestKilledByIllegalInstruction(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "ill.c")
	if err := os.WriteFile(src, []byte("int main(void) { __builtin_trap(); }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "faulty-addon")
	if out, err := exec.Command("gcc", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc (make deps installs it): %v\n%s", err, out)
	}
	var console syncBuffer
	s := New(shService(t, "ill", "exec "+bin, &console))
	stop := runService(t, s)
	waitFor(t, "exit reason", func() bool {
		return strings.Contains(console.String(), "ill[init]: killed by signal ILL")
	})
	stop()
	want := ": its code used an instruction this CPU does not have (in faulty-addon); "
	if st := s.Status(); !strings.HasPrefix(st.LastExit, "killed by signal ILL") || !strings.Contains(st.LastExit, want) {
		t.Errorf("LastExit = %q, want killed by signal ILL and %q", st.LastExit, want)
	}
}

// BeforeStop runs before TERM, with why the process stops; a process that
// exits while it runs (it drained and left) is not signalled at all.
func TestBeforeStop(t *testing.T) {
	var console syncBuffer
	var mu sync.Mutex
	var calls []string
	o := shService(t, "drain", `trap 'echo got TERM; exit 0' TERM; echo up; while :; do sleep 0.1; done`, &console)
	release := make(chan struct{})
	o.BeforeStop = func(reason string) {
		mu.Lock()
		calls = append(calls, reason)
		mu.Unlock()
		<-release
	}
	s := New(o)
	runService(t, s)
	waitFor(t, "start", func() bool { return hasLine(s.Lines(0), "drain: up") })
	pid := s.Status().PID
	s.Restart()
	waitFor(t, "BeforeStop", func() bool { mu.Lock(); defer mu.Unlock(); return len(calls) == 1 })
	if hasLine(s.Lines(0), "drain: got TERM") {
		t.Fatal("TERM sent before BeforeStop returned")
	}
	close(release)
	waitFor(t, "the restart", func() bool { p := s.Status().PID; return p != 0 && p != pid })
	if !hasLine(s.Lines(0), "drain: got TERM") {
		t.Error("no TERM after BeforeStop")
	}
	s.Stop(5 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || calls[0] != "restart" || calls[1] != "stop" {
		t.Errorf("reasons %q, want restart, stop", calls)
	}
}
