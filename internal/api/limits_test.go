package api

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/http2"
)

// The flood runs in a child process (this test binary again), so that
// /proc/self/fd counts only the server's side of the connections.
const floodEnv = "NODEBOOT_API_FLOOD"

// flood is a child process holding many connections to the server.
type flood struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	lines  *bufio.Scanner
	dialed int
}

// startFlood opens perSource connections from each of sources loopback
// addresses (127.0.0.2, 127.0.0.3, ...) to addr. With hello, each sends
// the start of a TLS record and stops there (a half-done handshake);
// without, it sends nothing. It returns once every dial is done.
func startFlood(t *testing.T, addr string, sources, perSource int, hello bool) *flood {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFloodHelper$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|%d|%t", floodEnv, addr, sources, perSource, hello))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &flood{cmd: cmd, stdin: stdin, lines: bufio.NewScanner(out)}
	t.Cleanup(f.stop)
	for f.lines.Scan() {
		if n, ok := strings.CutPrefix(f.lines.Text(), "dialed "); ok {
			f.dialed, _ = strconv.Atoi(n)
			if f.dialed == 0 {
				t.Fatal("the flood could not dial at all")
			}
			return f
		}
	}
	t.Fatalf("the flood process ended before dialing: %v", f.lines.Err())
	return nil
}

// closed waits for the flood's next report of how many of its
// connections the server has closed.
func (f *flood) closed(t *testing.T) int {
	t.Helper()
	for f.lines.Scan() {
		if n, ok := strings.CutPrefix(f.lines.Text(), "closed "); ok {
			k, _ := strconv.Atoi(n)
			return k
		}
	}
	t.Fatalf("the flood process ended: %v", f.lines.Err())
	return 0
}

func (f *flood) stop() {
	f.stdin.Close()
	f.cmd.Wait()
}

// TestFloodHelper is the flood's child process; it does nothing in a
// normal run.
func TestFloodHelper(t *testing.T) {
	v := os.Getenv(floodEnv)
	if v == "" {
		t.Skip("the flood's child process only")
	}
	p := strings.Split(v, "|")
	sources, _ := strconv.Atoi(p[1])
	perSource, _ := strconv.Atoi(p[2])
	hello := p[3] == "true"
	var conns []net.Conn
	for s := 0; s < sources; s++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+s))}, Timeout: time.Minute}
		for i := 0; i < perSource; i++ {
			c, err := d.Dial("tcp", p[0])
			if err != nil {
				fmt.Fprintf(os.Stderr, "flood: %v\n", err)
				continue
			}
			if hello {
				// A handshake record of 512 bytes, of which 3 come.
				c.Write([]byte{22, 3, 1, 2, 0, 1, 0, 1})
			}
			conns = append(conns, c)
		}
	}
	fmt.Printf("dialed %d\n", len(conns))
	var mu sync.Mutex
	closed := 0
	for _, c := range conns {
		go func() {
			io.Copy(io.Discard, c)
			mu.Lock()
			closed++
			fmt.Printf("closed %d\n", closed)
			mu.Unlock()
		}()
	}
	io.Copy(io.Discard, os.Stdin) // until the parent is done
	os.Exit(0)
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

// fdSlack covers the descriptors of the test itself that come and go
// (the legitimate client's connection and its server side, the pipes to
// the flood, a directory being read).
const fdSlack = 12

// TestConnectionFloodFromOneSource: issue 12, item 6. A thousand raw TCP
// connections from one address that never say anything: the server keeps
// MaxConnsPerSource of them and closes the rest at once, so its file
// descriptors stay within that budget, and the owner, from another
// address, is answered while the flood holds.
func TestConnectionFloodFromOneSource(t *testing.T) {
	h := start(t, Options{})
	// Warm up: the client's connection and the server's goroutines exist
	// before the baseline is taken.
	if a := h.do(t, "GET", "/v1/status", h.bearer(), nil); a.code != 200 {
		t.Fatalf("before the flood: %d", a.code)
	}
	base := openFDs(t)
	budget := base + DefaultMaxConnsPerSource + fdSlack

	f := startFlood(t, h.addr, 1, 1000, false)
	want := f.dialed - DefaultMaxConnsPerSource
	for closed := 0; closed < want; {
		if n := openFDs(t); n > budget {
			t.Fatalf("%d open files during a flood from one source (%d before it): over the budget of %d", n, base, budget)
		}
		closed = f.closed(t)
	}
	if n := openFDs(t); n > budget {
		t.Fatalf("%d open files with the flood held (%d before it): over the budget of %d", n, base, budget)
	}
	// The flood still holds its share; the owner gets in on a new
	// connection.
	h.client.Transport.(*http.Transport).CloseIdleConnections()
	if a := h.do(t, "GET", "/v1/status", h.bearer(), nil); a.code != 200 {
		t.Errorf("the owner during the flood: %d %s", a.code, a.body)
	}
	if got := count(h.srv.connsRefused); int(got) != want {
		t.Errorf("nodeboot_api_connections_refused_total = %v, want %d", got, want)
	}
}

// TestHalfHandshakeFlood: connections from many sources that start a TLS
// handshake and stall fill MaxConns; the server holds no more than that,
// closes each after HeaderTimeout, counts the failures in a metric and
// logs one console line for them, and the owner is answered once slots
// free (the wait is the timeout, so the owner waits; no speed is checked).
func TestHalfHandshakeFlood(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	}
	frozen := time.Unix(1e9, 0) // the console's rate limit never lets a second line through
	const maxConns, perSource = 16, 4
	h := start(t, Options{
		Log: logf, Now: func() time.Time { return frozen },
		MaxConns: maxConns, MaxConnsPerSource: perSource,
		HeaderTimeout: 200 * time.Millisecond,
	})
	if a := h.do(t, "GET", "/v1/healthz", "", nil); a.code != 200 {
		t.Fatalf("before the flood: %d", a.code)
	}
	base := openFDs(t)
	budget := base + maxConns + fdSlack

	f := startFlood(t, h.addr, 8, 12, true) // 96 connections, 6 times MaxConns
	// The owner asks while the flood fills every slot: the request waits
	// in the accept queue for a slot, and is answered.
	h.client.Transport.(*http.Transport).CloseIdleConnections()
	owner := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", h.base+"/v1/status", nil)
		req.Header.Set("Authorization", h.bearer())
		resp, err := h.client.Do(req)
		if err != nil {
			owner <- err.Error()
			return
		}
		resp.Body.Close()
		owner <- resp.Status
	}()
	for closed := 0; closed < f.dialed; {
		if n := openFDs(t); n > budget {
			t.Fatalf("%d open files during the flood (%d before it): over the budget of %d", n, base, budget)
		}
		closed = f.closed(t)
	}
	if got := <-owner; got != "200 OK" {
		t.Errorf("the owner during the flood: %s", got)
	}

	failed := int(count(h.srv.tlsFailures))
	refused := int(count(h.srv.connsRefused))
	if failed == 0 || failed+refused != f.dialed {
		t.Errorf("%d handshake failures and %d refused connections counted, want %d in all", failed, refused, f.dialed)
	}
	mu.Lock()
	defer mu.Unlock()
	handshakeLines := 0
	for _, l := range lines {
		if strings.Contains(l, "TLS handshake failed") {
			handshakeLines++
		}
	}
	if handshakeLines != 1 || len(lines) > 3 {
		t.Errorf("%d console lines about handshakes (want 1), %d in all:\n%s", handshakeLines, len(lines), strings.Join(lines, "\n"))
	}
}

// TestIdleConnectionsClosed: a kept-alive connection, HTTP/1.1 or HTTP/2,
// is closed by the server after IdleTimeout.
func TestIdleConnectionsClosed(t *testing.T) {
	h := start(t, Options{IdleTimeout: 100 * time.Millisecond})
	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			conf := h.owner.ClientTLS()
			conf.NextProtos = []string{proto}
			c, err := tls.Dial("tcp", h.addr, conf)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.ConnectionState().NegotiatedProtocol; got != proto {
				t.Fatalf("negotiated %q, want %q", got, proto)
			}
			if proto == "h2" {
				// The preface and an empty SETTINGS frame; then nothing.
				io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
				c.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
				// The server's SETTINGS bound the streams of a connection.
				fr, err := http2.NewFramer(nil, c).ReadFrame()
				if err != nil {
					t.Fatalf("the server's first frame: %v", err)
				}
				sf, ok := fr.(*http2.SettingsFrame)
				if !ok {
					t.Fatalf("the server's first frame is %v, not SETTINGS", fr.Header())
				}
				if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != maxStreams {
					t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d (set %v), want %d", v, ok, maxStreams)
				}
			} else {
				io.WriteString(c, "GET /v1/healthz HTTP/1.1\r\nHost: node\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("healthz: %v %v", resp, err)
				}
				// Keep-alive: the body is read, the connection stays.
				io.Copy(io.Discard, resp.Body)
			}
			// Only a safety net against a hang; the server's timeout is far
			// shorter.
			c.SetReadDeadline(time.Now().Add(time.Minute))
			_, err = io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the server kept an idle %s connection open", proto)
			}
		})
	}
}

// TestConsoleThrottle: one line per kind per interval, and the next says
// how many were left out.
func TestConsoleThrottle(t *testing.T) {
	var lines []string
	now := time.Unix(1e9, 0)
	th := newThrottle(func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }, time.Minute, func() time.Time { return now })
	for i := 0; i < 100; i++ {
		th.note("a", "a %d", i)
		th.note("b", "b %d", i)
	}
	now = now.Add(time.Minute)
	th.note("a", "a again")
	want := []string{"a 0", "b 0", "a again (and 99 more like it since the last such line; /metrics counts them all)"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestSource(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want string
	}{
		{"10.0.2.2:5555", "10.0.2.2"},
		{"[::ffff:10.0.2.2]:5555", "10.0.2.2"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
	} {
		a, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := source(a); got != tc.want {
			t.Errorf("source(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}

// count is a counter's value.
func count(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}
