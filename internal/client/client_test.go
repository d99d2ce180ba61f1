package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/nodeboot/nodeboot/internal/creds"
)

// fakeNode serves the routes of docs/api.md the client calls, with the
// project's own certificate, so the client's pinning is exercised for real.
type fakeNode struct {
	token string

	mu       sync.Mutex
	busy     bool     // deploys answer 409
	unhealth []string // deploys answer 422 with these lines
	deployed []byte   // the last accepted bundle
	actions  []string
	follow   chan string // lines for ?follow=1
}

func (n *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+n.token {
		fail(w, http.StatusUnauthorized, "no or a wrong bearer token")
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v1/status":
		io.WriteString(w, statusJSON)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/apps/hello/logs":
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "lines=%s\n", r.URL.Query().Get("lines"))
		if r.URL.Query().Get("follow") == "1" {
			w.(http.Flusher).Flush()
			ch := n.follow
			n.mu.Unlock()
			for {
				select {
				case l := <-ch:
					io.WriteString(w, l+"\n")
					w.(http.Flusher).Flush()
				case <-r.Context().Done():
					n.mu.Lock()
					return
				}
			}
		}
	case r.Method == http.MethodPost && r.URL.Path == "/v1/apps/hello/restart":
		io.WriteString(w, `{"app":"hello","pid":313}`)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/apps/hello/rollback":
		fail(w, http.StatusNotFound, "hello has no previous version to roll back to")
	case r.Method == http.MethodPost && (r.URL.Path == "/v1/reboot" || r.URL.Path == "/v1/poweroff"):
		a := strings.TrimPrefix(r.URL.Path, "/v1/")
		n.actions = append(n.actions, a)
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"action":%q}`, a)
	case r.Method == http.MethodPut && r.URL.Path == "/v1/apps/hello":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return
		}
		sum := sha256.Sum256(body)
		switch {
		case r.Header.Get("Nodeboot-Digest") != "sha256:"+hex.EncodeToString(sum[:]):
			fail(w, http.StatusBadRequest, "the digest does not match the body")
		case n.busy:
			fail(w, http.StatusConflict, "another deploy is in progress")
		case n.unhealth != nil:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			json.NewEncoder(w).Encode(map[string]any{"error": "the new version of hello exited with status 1", "logs": n.unhealth})
		default:
			n.deployed = body
			fmt.Fprintf(w, `{"app":"hello","version":"sha256:%x","previousVersion":"image","state":"running"}`, sum)
		}
	case r.URL.Path == "/v1/apps/nope" || strings.HasPrefix(r.URL.Path, "/v1/apps/nope/"):
		fail(w, http.StatusNotFound, "no app nope on this node")
	default:
		http.NotFound(w, r)
	}
}

func fail(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

const statusJSON = `{
  "node": {
    "hostname": "hello", "uptimeSeconds": 12.3, "bootId": "b", "kernel": "7.1.2",
    "nodeVersion": "v20.20.2", "imageVersion": "sha256:00", "bootSeconds": 7.9,
    "memory": {"totalBytes": 536870912, "availableBytes": 268435456},
    "data": {"totalBytes": 1073741824, "freeBytes": 536870912, "persistent": true},
    "addresses": ["10.0.2.15/24"], "cpuSecondsTotal": 3.2, "someFutureField": 1
  },
  "apps": [{"name": "hello", "state": "running", "pid": 312, "restarts": 0,
    "lastExit": "", "startedAt": "", "port": 8080, "version": "image", "previousVersion": ""}]
}`

// setup returns a project's credentials and a node serving with them.
func setup(t *testing.T) (*creds.Creds, *fakeNode, *httptest.Server) {
	t.Helper()
	cr, _, err := creds.Ensure(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{token: cr.Token, follow: make(chan string)}
	return cr, n, serve(t, n, cr)
}

// serve starts a TLS 1.3 server with cr's certificate (nil: httptest's own).
func serve(t *testing.T, h http.Handler, cr *creds.Creds) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	if cr != nil {
		cert, err := tls.X509KeyPair(cr.NodeCertPEM, cr.NodeKeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		srv.TLS.Certificates = []tls.Certificate{cert}
	}
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func addr(srv *httptest.Server) string { return srv.Listener.Addr().String() }

func TestStatusAndSimpleRoutes(t *testing.T) {
	cr, n, srv := setup(t)
	c := New(addr(srv), cr.ClientTLS(), cr.Token)
	ctx := context.Background()

	s, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Node.Hostname != "hello" || s.Node.NodeVersion != "v20.20.2" || s.Node.Memory.TotalBytes != 512<<20 || !s.Node.Data.Persistent {
		t.Errorf("node status decoded wrong: %+v", s.Node)
	}
	if a := s.App("hello"); a == nil || a.PID != 312 || a.Port != 8080 || a.Version != "image" {
		t.Errorf("app status decoded wrong: %+v", s.Apps)
	}
	if got := s.AppNames(); len(got) != 1 || got[0] != "hello" {
		t.Errorf("AppNames = %v", got)
	}

	r, err := c.Restart(ctx, "hello")
	if err != nil || r.PID != 313 {
		t.Errorf("Restart = %+v, %v", r, err)
	}
	for _, f := range []func(context.Context) (*ActionResult, error){c.Reboot, c.Poweroff} {
		if _, err := f(ctx); err != nil {
			t.Error(err)
		}
	}
	if strings.Join(n.actions, ",") != "reboot,poweroff" {
		t.Errorf("node saw actions %v", n.actions)
	}

	var logs bytes.Buffer
	if err := c.Logs(ctx, "hello", 7, false, &logs); err != nil || logs.String() != "lines=7\n" {
		t.Errorf("Logs = %q, %v", logs.String(), err)
	}
}

func TestErrors(t *testing.T) {
	cr, _, srv := setup(t)
	ctx := context.Background()

	t.Run("404 carries the node's text", func(t *testing.T) {
		_, err := New(addr(srv), cr.ClientTLS(), cr.Token).Rollback(ctx, "hello")
		if StatusOf(err) != http.StatusNotFound || !strings.Contains(err.Error(), "no previous version") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("401 says which token", func(t *testing.T) {
		_, err := New(addr(srv), cr.ClientTLS(), strings.Repeat("0", 64)).Status(ctx)
		if StatusOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "owner.token") || !strings.Contains(err.Error(), "wrong bearer token") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("pin mismatch", func(t *testing.T) {
		other := serve(t, http.NotFoundHandler(), nil) // httptest's certificate
		_, err := New(addr(other), cr.ClientTLS(), cr.Token).Status(ctx)
		if !errors.Is(err, creds.ErrWrongNode) || !strings.Contains(err.Error(), "certificate does not match") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("another project's node", func(t *testing.T) {
		cr2, _, err := creds.Ensure(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(addr(srv), cr2.ClientTLS(), cr2.Token).Status(ctx)
		if !errors.Is(err, creds.ErrWrongNode) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := l.Addr().String()
		l.Close()
		_, err = New(a, cr.ClientTLS(), cr.Token).Status(ctx)
		if err == nil || !strings.Contains(err.Error(), "cannot reach the node at "+a) || !strings.Contains(err.Error(), "is it running") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("not TLS", func(t *testing.T) {
		plain := httptest.NewServer(http.NotFoundHandler())
		defer plain.Close()
		_, err := New(plain.Listener.Addr().String(), cr.ClientTLS(), cr.Token).Status(ctx)
		if err == nil || !strings.Contains(err.Error(), "does not speak TLS") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestDeploy(t *testing.T) {
	cr, n, srv := setup(t)
	c := New(addr(srv), cr.ClientTLS(), cr.Token)
	ctx := context.Background()
	body := bytes.Repeat([]byte("bundle bytes "), 10000)
	sum := sha256.Sum256(body)
	digest := "sha256:" + hex.EncodeToString(sum[:])

	var progress countWriter
	r, err := c.Deploy(ctx, "hello", bytes.NewReader(body), int64(len(body)), digest, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if r.Version != digest || r.PreviousVersion != "image" || r.State != "running" {
		t.Errorf("result = %+v", r)
	}
	if !bytes.Equal(n.deployed, body) || progress.n != int64(len(body)) {
		t.Errorf("node got %d bytes, progress saw %d, want %d", len(n.deployed), progress.n, len(body))
	}

	_, err = c.Deploy(ctx, "hello", bytes.NewReader(body), int64(len(body)), "sha256:00", nil)
	if StatusOf(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "digest") {
		t.Errorf("bad digest: err = %v", err)
	}

	n.busy = true
	_, err = c.Deploy(ctx, "hello", bytes.NewReader(body), int64(len(body)), digest, nil)
	if StatusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), "in progress") || !strings.Contains(err.Error(), "try again") {
		t.Errorf("busy: err = %v", err)
	}

	n.busy, n.unhealth = false, []string{"Error: Cannot find module 'express'", "exit status 1"}
	_, err = c.Deploy(ctx, "hello", bytes.NewReader(body), int64(len(body)), digest, nil)
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusUnprocessableEntity || len(e.Logs) != 2 || e.Logs[0] != n.unhealth[0] {
		t.Errorf("unhealthy: err = %#v", err)
	}
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// TestFollow checks that following streams lines as they come and that
// cancelling ends it without an error.
func TestFollow(t *testing.T) {
	cr, n, srv := setup(t)
	c := New(addr(srv), cr.ClientTLS(), cr.Token)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- c.Logs(ctx, "hello", 0, true, pw); pw.Close() }()
	lines := bufio.NewScanner(pr)
	want := []string{"lines=", "one", "two"}
	for i, w := range want {
		if i > 0 {
			n.follow <- w
		}
		if !lines.Scan() || lines.Text() != w {
			t.Fatalf("line %d = %q, want %q", i, lines.Text(), w)
		}
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if err := <-done; err != nil {
		t.Errorf("Logs after cancel = %v, want nil", err)
	}
}

func TestParseError(t *testing.T) {
	cases := []struct {
		body     string
		msg      string
		logLines int
	}{
		{`{"error":"bad bundle: absolute path /etc"}`, "bad bundle: absolute path /etc", 0},
		{`{"error":"unhealthy","logs":["a","b"]}`, "unhealthy", 2},
		{"404 page not found\nmore", "404 page not found", 0},
		{"", "", 0},
		{`{"logs":["x"]}`, `{"logs":["x"]}`, 0},
	}
	for _, c := range cases {
		e := parseError(400, []byte(c.body))
		if e.Message != c.msg || len(e.Logs) != c.logLines {
			t.Errorf("parseError(%q) = %+v", c.body, e)
		}
	}
}

// FuzzParseError and FuzzDecodeStatus feed the node's answers, untrusted
// bytes, to the parsers: they must not panic, and an error stays printable.
func FuzzParseError(f *testing.F) {
	f.Add([]byte(`{"error":"x","logs":["a"]}`))
	f.Add([]byte("plain\ntext"))
	f.Add([]byte{0xff, 0xfe, '\n'})
	f.Fuzz(func(t *testing.T, b []byte) {
		e := parseError(422, b)
		if e.Status != 422 || e.Error() == "" {
			t.Fatalf("parseError = %+v", e)
		}
	})
}

func FuzzDecodeStatus(f *testing.F) {
	f.Add([]byte(statusJSON))
	f.Add([]byte(`{"apps":[{"name":1}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Status
		if decodeJSON(bytes.NewReader(b), &s) == nil {
			s.AppNames()
			s.App("hello")
		}
	})
}

// TestUpdateConflictHint: a 409 to an OS update carries the node's own
// reason and what to do, not the deploy's hint (there is no deploy).
func TestUpdateConflictHint(t *testing.T) {
	busy := "another OS update is being received: wait until it is done (`nodeboot status` shows its progress), then send this one again"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail(w, http.StatusConflict, busy)
	}))
	defer srv.Close()
	c := &Client{address: srv.Listener.Addr().String(), base: srv.URL, http: srv.Client()}
	_, err := c.Update(context.Background(), strings.NewReader("x"), 1, 0, false, nil)
	if StatusOf(err) != http.StatusConflict || !strings.Contains(err.Error(), busy) {
		t.Fatalf("update: err = %v", err)
	}
	if strings.Contains(err.Error(), "deploy") {
		t.Errorf("an update's 409 talks about deploys: %v", err)
	}
	_, err = c.UpdateOffset(context.Background(), []byte("x"))
	if strings.Contains(err.Error(), "deploy") {
		t.Errorf("an update offset's 409 talks about deploys: %v", err)
	}
}
