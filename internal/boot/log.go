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

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/crash"
)

// Logger writes boot steps to the console, each stamped with the time since
// the kernel started (CLOCK_BOOTTIME, the kernel's own log clock), so the
// init's lines line up with the kernel's and the benchmark can read the boot
// phases off the console.
//
// Writing never blocks the caller: lines go into a bounded queue that one
// goroutine writes out. A serial console at 115200 baud takes ~11 KB/s, and
// a chatty app once made every log call of PID 1 wait 606 ms for the
// console lock (and an unrelated app's restart take 14.4 s). When the
// queue is full, new lines are dropped and counted, and the count is
// written once the console catches up ("console: N lines dropped").
type Logger struct {
	now func() time.Duration

	mu      sync.Mutex
	w       io.Writer
	queue   [][]byte
	queued  int // bytes in queue
	limit   int // most bytes queued
	dropped uint64
	unsaid  uint64 // dropped lines not yet reported on the console
	writing bool   // the writer goroutine holds a batch
	wake    chan struct{}
	tee     func(msg string)
}

// ConsoleQueueBytes bounds what waits for the console: about 20 s of a
// 115200-baud serial line, four of the longest lines an app can write
// (supervise cuts them at 64 KiB), and a small part of PID 1's memory.
const ConsoleQueueBytes = 256 << 10

// NewLogger logs to w.
func NewLogger(w io.Writer) *Logger {
	l := &Logger{w: w, now: Uptime, limit: ConsoleQueueBytes, wake: make(chan struct{}, 1)}
	crash.Go("console", l.writeLoop)
	return l
}

// SetOutput redirects the log, e.g. once /dev/console is open.
func (l *Logger) SetOutput(w io.Writer) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

// SetTee hands every later Printf line (the message alone, without time
// or prefix) to f as well: the remote log shipper (internal/logship). f
// is called outside the logger's lock and must not block.
func (l *Logger) SetTee(f func(msg string)) {
	l.mu.Lock()
	l.tee = f
	l.mu.Unlock()
}

// Printf logs one line.
func (l *Logger) Printf(format string, args ...any) {
	up := l.now()
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	l.mu.Lock()
	tee := l.tee
	l.mu.Unlock()
	if tee != nil {
		tee(msg)
	}
	l.enqueue([]byte(fmt.Sprintf("[%5d.%06d] %s%s\n", up/time.Second, (up%time.Second)/time.Microsecond, contract.ConsolePrefix, msg)))
}

// Writer returns the console writer for output that has its own prefix
// (the apps' lines): each Write is queued as one piece, in order with the
// log lines, and never blocks.
func (l *Logger) Writer() io.Writer { return queueWriter{l} }

type queueWriter struct{ l *Logger }

func (w queueWriter) Write(p []byte) (int, error) {
	w.l.enqueue(append([]byte(nil), p...))
	return len(p), nil
}

// Dropped is how many lines the console has lost since boot.
func (l *Logger) Dropped() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

func (l *Logger) enqueue(b []byte) {
	l.mu.Lock()
	if l.queued+len(b) > l.limit && len(l.queue) > 0 {
		l.dropped++
		l.unsaid++
		l.mu.Unlock()
		return
	}
	l.queue = append(l.queue, b)
	l.queued += len(b)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes the queue out, a batch at a time, without holding the
// lock while the console is slow.
func (l *Logger) writeLoop() {
	for range l.wake {
		for {
			l.mu.Lock()
			batch := l.queue
			l.queue, l.queued = nil, 0
			if len(batch) == 0 && l.unsaid == 0 {
				l.writing = false
				l.mu.Unlock()
				break
			}
			if l.unsaid > 0 {
				up := l.now()
				batch = append(batch, []byte(fmt.Sprintf("[%5d.%06d] %sconsole: %d lines dropped (output faster than the console)\n", up/time.Second, (up%time.Second)/time.Microsecond, contract.ConsolePrefix, l.unsaid)))
				l.unsaid = 0
			}
			l.writing = true
			w := l.w
			l.mu.Unlock()
			for _, b := range batch {
				// Errors are dropped: a console that went away must not
				// stop PID 1.
				_, _ = w.Write(b)
			}
		}
	}
}

// Flush waits until everything queued so far is written, at most timeout
// (a console can block forever): used before a reboot, so the reason is
// on screen.
func (l *Logger) Flush(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		l.mu.Lock()
		idle := len(l.queue) == 0 && !l.writing && l.unsaid == 0
		l.mu.Unlock()
		if idle {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Stderr is the fallback console before /dev/console is open.
var Stderr io.Writer = os.Stderr
