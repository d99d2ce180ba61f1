package api

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"
)

// Connection limits (issue 12, item 6). Every open connection is a file
// descriptor of PID 1, and PID 1 needs its own for the apps, their logs
// and the store. So the API holds at most MaxConns connections: beyond
// that, Accept is not called and new connections wait in the kernel's
// accept queue, where they cost PID 1 nothing. And one source holds at
// most MaxConnsPerSource of them, the rest closed as they come, so that a
// flood from one address leaves room for everyone else. A connection that
// never completes its handshake is closed after HeaderTimeout, an idle one
// after IdleTimeout.

// limitListener wraps l with both limits.
func (s *Server) limitListener(l net.Listener) net.Listener {
	return netutil.LimitListener(&sourceListener{Listener: l, s: s, open: map[string]int{}}, s.opts.MaxConns)
}

// sourceListener closes connections from a source that already holds
// MaxConnsPerSource.
type sourceListener struct {
	net.Listener
	s *Server

	mu   sync.Mutex
	open map[string]int
}

func (l *sourceListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := source(c.RemoteAddr())
		if !l.acquire(src) {
			l.s.connsRefused.Inc() // before the close, which the client sees
			c.Close()
			l.s.console.note("refused", "management API: refused a connection from %s: it already holds %d; more from one source are closed at once", src, l.s.opts.MaxConnsPerSource)
			continue
		}
		l.s.connsOpen.Inc()
		return &sourceConn{Conn: c, release: func() { l.release(src); l.s.connsOpen.Dec() }}, nil
	}
}

func (l *sourceListener) acquire(src string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[src] >= l.s.opts.MaxConnsPerSource {
		return false
	}
	l.open[src]++
	return true
}

func (l *sourceListener) release(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[src]--; l.open[src] <= 0 {
		delete(l.open, src)
	}
}

// sourceConn gives its source's slot back on its first Close.
type sourceConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *sourceConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// source is the unit of the per-source limit: an IPv4 address, or an IPv6
// /64, which one host usually has whole (one address each would let it
// take every slot).
func source(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if v4 := ta.IP.To4(); v4 != nil {
		return v4.String()
	}
	return (&net.IPNet{IP: ta.IP.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

// serverLog is http.Server's error log. Failed TLS handshakes (scanners,
// plain HTTP, connections closed or timed out before their hello) are
// counted in nodeboot_api_tls_handshake_failures_total and logged at most
// once per LogEvery, not each: a flood must not flood the console too.
type serverLog struct{ s *Server }

// handshakeError is how net/http begins the line of a failed handshake.
const handshakeError = "http: TLS handshake error from "

func (l serverLog) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	if rest, ok := strings.CutPrefix(line, handshakeError); ok {
		l.s.tlsFailures.Inc()
		l.s.console.note("handshake", "management API: a TLS handshake failed (from %s)", truncate(rest, 200))
		return len(p), nil
	}
	l.s.console.note("server", "management API: %s", truncate(line, 500))
	return len(p), nil
}

// throttle logs at most one line per kind per every, and says with the
// next one how many it left out meanwhile.
type throttle struct {
	log   func(format string, args ...any)
	every time.Duration
	now   func() time.Time

	mu    sync.Mutex
	kinds map[string]*throttled
}

type throttled struct {
	last    time.Time
	dropped int
}

func newThrottle(log func(string, ...any), every time.Duration, now func() time.Time) *throttle {
	return &throttle{log: log, every: every, now: now, kinds: map[string]*throttled{}}
}

func (t *throttle) note(kind, format string, args ...any) {
	now := t.now()
	t.mu.Lock()
	k, ok := t.kinds[kind]
	if !ok {
		k = &throttled{}
		t.kinds[kind] = k
	}
	if ok && now.Sub(k.last) < t.every {
		k.dropped++
		t.mu.Unlock()
		return
	}
	dropped := k.dropped
	k.last, k.dropped = now, 0
	t.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if dropped > 0 {
		msg += fmt.Sprintf(" (and %d more like it since the last such line; /metrics counts them all)", dropped)
	}
	t.log("%s", msg)
}
