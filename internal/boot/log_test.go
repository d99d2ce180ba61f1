package boot

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// stuckConsole blocks every Write until released, like a serial console
// whose other end stopped reading.
type stuckConsole struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (c *stuckConsole) Write(p []byte) (int, error) {
	<-c.release
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *stuckConsole) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// A console that never returns from Write must not block Printf or the
// apps' writer: PID 1's log calls sit on the paths that restart apps and
// answer the API.
func TestStuckConsoleDoesNotBlock(t *testing.T) {
	c := &stuckConsole{release: make(chan struct{})}
	l := NewLogger(c)
	line := strings.Repeat("x", 1000)
	// Far more than the queue holds: each call returns although nothing
	// reaches the console.
	for i := 0; i < 2000; i++ {
		l.Printf("step %d %s", i, line)
		l.Writer().Write([]byte("app: " + line + "\n"))
	}
}

func TestDroppedLinesAreCountedAndReported(t *testing.T) {
	c := &stuckConsole{release: make(chan struct{})}
	l := NewLogger(c)
	line := strings.Repeat("y", 1000)
	const n = 2000
	for i := 0; i < n; i++ {
		l.Printf("%s", line)
	}
	d := l.Dropped()
	if d == 0 || d >= n {
		t.Fatalf("dropped %d of %d lines with a stuck console", d, n)
	}
	close(c.release)
	if !l.Flush(time.Minute) {
		t.Fatal("the console did not catch up once released")
	}
	out := c.String()
	// The first line may have been taken by the writer before the queue
	// filled, so the count is in the console or one less.
	if !strings.Contains(out, "console: ") || !strings.Contains(out, " lines dropped") {
		t.Errorf("the drop count is not on the console:\n%s", out[max(0, len(out)-300):])
	}
	if got := strings.Count(out, line); uint64(got)+d != n {
		t.Errorf("%d lines written + %d dropped != %d", got, d, n)
	}
	l.Printf("after")
	l.Flush(time.Minute)
	if l.Dropped() != d {
		t.Errorf("lines dropped once the console kept up")
	}
}

func TestLogOrderKept(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf)
	l.now = func() time.Duration { return 0 }
	l.Printf("one")
	l.Writer().Write([]byte("app: two\n"))
	l.Printf("three")
	l.Flush(time.Minute)
	want := "[    0.000000] nodeboot: one\napp: two\n[    0.000000] nodeboot: three\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
}

func TestTeeGetsEachMessage(t *testing.T) {
	var buf strings.Builder
	l := NewLogger(&buf)
	var got []string
	l.SetTee(func(msg string) { got = append(got, msg) })
	l.Printf("one %d", 1)
	l.Printf("two\n")
	l.Writer().Write([]byte("app: not PID 1's\n"))
	if strings.Join(got, "|") != "one 1|two" {
		t.Errorf("tee got %q", got)
	}
}
