package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fuzzNode is a Node that never fails on its own and never blocks, so
// that any 5xx or hang under FuzzHandler is the server's; it counts every
// call, so that a call without credentials shows.
type fuzzNode struct {
	mu    sync.Mutex
	calls []string
}

func (f *fuzzNode) called(what string) {
	f.mu.Lock()
	f.calls = append(f.calls, what)
	f.mu.Unlock()
}

func (f *fuzzNode) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fuzzNode) Status(ctx context.Context) (Status, error) {
	f.called("Status")
	return newFake().status, nil
}

func (f *fuzzNode) Logs(ctx context.Context, app string, lines int, follow bool, emit func(string) error) error {
	f.called("Logs")
	if app != "hello" {
		return fmt.Errorf("%w: no app %q", ErrNotFound, app)
	}
	return emit("a line\nwith a newline")
}

func (f *fuzzNode) Restart(ctx context.Context, app string) (int, error) {
	f.called("Restart")
	if app != "hello" {
		return 0, fmt.Errorf("%w: no app %q", ErrNotFound, app)
	}
	return 1, nil
}

func (f *fuzzNode) Power(action string) error { f.called("Power"); return nil }

func (f *fuzzNode) Deploy(ctx context.Context, app, digest string, size int64, body io.Reader) (DeployResult, error) {
	f.called("Deploy")
	h := sha256.New()
	if _, err := io.Copy(h, body); err != nil {
		return DeployResult{}, fmt.Errorf("receiving the bundle: %w", err)
	}
	if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != digest {
		return DeployResult{}, fmt.Errorf("%w: the body's digest is %s", ErrBadBundle, got)
	}
	if app != "hello" {
		return DeployResult{}, fmt.Errorf("%w: no app %q", ErrNotFound, app)
	}
	return DeployResult{App: app, Version: digest, State: "running"}, nil
}

func (f *fuzzNode) Rollback(ctx context.Context, app string) (DeployResult, error) {
	f.called("Rollback")
	return DeployResult{}, fmt.Errorf("%w: none", ErrNoPrevious)
}

// The credentials FuzzHandler's auth argument picks: none (whatever the
// headers carry), the owner's bearer token, or a live session cookie.
const (
	fuzzNoAuth = iota
	fuzzBearer
	fuzzSession
)

// FuzzHandler sends arbitrary requests (method, target, header lines, body)
// through the real handler, parsed by net/http's own request reader as
// the server would. The handler must not panic, must answer no bad input
// with a 5xx (the node here never fails), and must never reach the node
// without the owner's credentials, nor change anything with a session.
func FuzzHandler(f *testing.F) {
	const token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	node := &fuzzNode{}
	// A failure allowance no fuzz run uses up: 429 is tested elsewhere,
	// and here it would only hide the handlers behind the limiter.
	srv := New(node, sha256.Sum256([]byte(token)), Options{FailureBurst: 1 << 30, MaxBundleBytes: 1 << 16})

	digest := fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("bundle")))
	f.Add("GET", "/v1/status", "", []byte(nil), uint8(fuzzBearer))
	f.Add("GET", "/v1/status", "", []byte(nil), uint8(fuzzNoAuth))
	f.Add("POST", "/v1/reboot", "", []byte(nil), uint8(fuzzSession))
	f.Add("GET", "/v1/apps/hello/logs?lines=5&follow=1", "", []byte(nil), uint8(fuzzSession))
	f.Add("PUT", "/v1/apps/hello", "Nodeboot-Digest: "+digest+"\nContent-Length: 6", []byte("bundle"), uint8(fuzzBearer))
	f.Add("PUT", "/v1/apps/hello", "Nodeboot-Digest: "+digest+"\nContent-Length: 6", []byte("bundle"), uint8(fuzzSession))
	f.Add("POST", "/v1/session", "Content-Type: application/x-www-form-urlencoded\nContent-Length: 10", []byte("token=abcd"), uint8(fuzzNoAuth))
	f.Add("POST", "/v1/logout", "Cookie: nodeboot_session=x", []byte(nil), uint8(fuzzNoAuth))
	f.Add("DELETE", "/v1/sessions", "", []byte(nil), uint8(fuzzSession))
	f.Add("GET", "/metrics", "Authorization: Bearer nope", []byte(nil), uint8(fuzzNoAuth))
	f.Add("POST", "/v1/apps/%2e%2e/restart", "", []byte(nil), uint8(fuzzBearer))
	f.Add("GET", "//v1/../v1/status", "", []byte(nil), uint8(fuzzNoAuth))

	f.Fuzz(func(t *testing.T, method, target, header string, body []byte, auth uint8) {
		// A fresh session each time: an input may log out or revoke all.
		session, _ := srv.sessions.create()
		var raw bytes.Buffer
		fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: node\r\n", method, target)
		for _, l := range strings.Split(header, "\n") {
			if l != "" {
				raw.WriteString(l + "\r\n")
			}
		}
		switch auth % 3 {
		case fuzzBearer:
			raw.WriteString("Authorization: Bearer " + token + "\r\n")
		case fuzzSession:
			raw.WriteString("Cookie: " + SessionCookie + "=" + session + "\r\n")
		}
		raw.WriteString("\r\n")
		raw.Write(body)
		req, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil {
			return // the server's reader refuses it before any handler
		}
		req.RemoteAddr = "192.0.2.1:4242"
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		calls := node.take()

		if rec.Code >= 500 {
			t.Fatalf("%s %q: %d %s", method, target, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && !strings.HasPrefix(rec.Body.String(), `{"error":`) && !strings.Contains(rec.Header().Get("Content-Type"), "text/html") {
			t.Errorf("%s %q: %d without a JSON error: %q", method, target, rec.Code, rec.Body)
		}
		// Issue 12's standard: nothing reaches the node without the owner.
		// A bearer header the input made up cannot be the owner's: the
		// token is 256 bits and appears in no seed.
		switch auth % 3 {
		case fuzzNoAuth:
			if len(calls) > 0 {
				t.Fatalf("%s %q without credentials reached the node: %v", method, target, calls)
			}
			if rec.Code/100 == 2 && !(req.URL.Path == "/v1/healthz" && (req.Method == "GET" || req.Method == "HEAD")) {
				t.Fatalf("%s %q without credentials: %d", method, target, rec.Code)
			}
		case fuzzSession:
			for _, c := range calls {
				if c != "Status" && c != "Logs" {
					t.Fatalf("%s %q with only a session called %s: a session is read-only", method, target, c)
				}
			}
		}
	})
}
