// Package boot holds what PID 1 does to bring the system up and take it
// down: the mounts, the console, the clock log, the power-off sequence.
package boot

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Logger writes boot steps to the console, each stamped with the time since
// the kernel started (CLOCK_BOOTTIME, the kernel's own log clock), so the
// init's lines line up with the kernel's and the benchmark can read the boot
// phases off the console.
type Logger struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Duration
}

// NewLogger logs to w.
func NewLogger(w io.Writer) *Logger {
	return &Logger{w: w, now: Uptime}
}

// SetOutput redirects the log, e.g. once /dev/console is open.
func (l *Logger) SetOutput(w io.Writer) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

// Printf logs one line.
func (l *Logger) Printf(format string, args ...any) {
	up := l.now()
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "[%5d.%06d] nodeboot: %s\n", up/time.Second, (up%time.Second)/time.Microsecond, msg)
}

// Writer returns the console writer for output that has its own prefix
// (the apps' lines), serialised with the log lines.
func (l *Logger) Writer() io.Writer { return lockedWriter{l} }

type lockedWriter struct{ l *Logger }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	return w.l.w.Write(p)
}

// Stderr is the fallback console before /dev/console is open.
var Stderr io.Writer = os.Stderr
