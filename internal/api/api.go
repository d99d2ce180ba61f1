// Package api is the node's management API (docs/api.md): the HTTPS server
// PID 1 runs on port 9443, with the status page and /metrics. It knows
// nothing of processes or disks; PID 1 supplies those through Node.
package api

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Node is what the server needs from PID 1.
type Node interface {
	Status(ctx context.Context) (Status, error)
	// Logs emits the last lines of app's output, then with follow every
	// new line until ctx is done.
	Logs(ctx context.Context, app string, lines int, follow bool, emit func(line string) error) error
	Restart(ctx context.Context, app string) (pid int, err error)
	// Power returns at once and acts after the response is sent;
	// action is "reboot" or "poweroff".
	Power(action string) error
	// Deploy receives a bundle of size bytes whose digest is
	// "sha256:<hex>" and switches app to it once it is healthy.
	Deploy(ctx context.Context, app, digest string, size int64, body io.Reader) (DeployResult, error)
	Rollback(ctx context.Context, app string) (DeployResult, error)
}

// Errors a Node returns (wrapped, with the reason) and the status each
// one answers with.
var (
	ErrNotFound   = errors.New("not found")           // 404: no such app
	ErrBusy       = errors.New("busy")                // 409: another deploy or rollback runs
	ErrBadBundle  = errors.New("bad bundle")          // 400: refused before anything switched
	ErrNoRoom     = errors.New("no room")             // 507: /data is full or absent
	ErrNoPrevious = errors.New("no previous version") // 404: nothing to roll back to
)

// UnhealthyError is a new version that did not become healthy; the old one
// serves again. 422, with the new version's last lines.
type UnhealthyError struct {
	Msg  string
	Logs []string
}

func (e *UnhealthyError) Error() string { return e.Msg }

// Status is GET /v1/status.
type Status struct {
	Node NodeStatus  `json:"node"`
	Apps []AppStatus `json:"apps"`
}

// NodeStatus is the node half of Status.
type NodeStatus struct {
	Hostname        string     `json:"hostname"`
	UptimeSeconds   float64    `json:"uptimeSeconds"`
	BootID          string     `json:"bootId"`
	Kernel          string     `json:"kernel"`
	NodeVersion     string     `json:"nodeVersion"`
	ImageVersion    string     `json:"imageVersion"`
	BootSeconds     float64    `json:"bootSeconds"`
	Memory          Memory     `json:"memory"`
	Data            DataStatus `json:"data"`
	Addresses       []string   `json:"addresses"`
	CPUSecondsTotal float64    `json:"cpuSecondsTotal"`
}

// Memory is the node's RAM.
type Memory struct {
	TotalBytes     uint64 `json:"totalBytes"`
	AvailableBytes uint64 `json:"availableBytes"`
}

// DataStatus is the /data file system.
type DataStatus struct {
	TotalBytes uint64 `json:"totalBytes"`
	FreeBytes  uint64 `json:"freeBytes"`
	Persistent bool   `json:"persistent"`
}

// AppStatus is one app. StartedAt is "" in JSON while it never started.
type AppStatus struct {
	Name            string    `json:"name"`
	State           string    `json:"state"`
	PID             int       `json:"pid"`
	Restarts        int       `json:"restarts"`
	LastExit        string    `json:"lastExit"`
	StartedAt       time.Time `json:"startedAt"`
	Port            int       `json:"port"`
	Version         string    `json:"version"`
	PreviousVersion string    `json:"previousVersion"`
}

type appStatusJSON AppStatus // without the methods, to embed

// MarshalJSON writes StartedAt as RFC 3339 in UTC, or "" when zero (Go's
// default would say "0001-01-01T00:00:00Z").
func (a AppStatus) MarshalJSON() ([]byte, error) {
	s := ""
	if !a.StartedAt.IsZero() {
		s = a.StartedAt.UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(struct {
		appStatusJSON
		StartedAt string `json:"startedAt"`
	}{appStatusJSON(a), s})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (a *AppStatus) UnmarshalJSON(b []byte) error {
	var v struct {
		appStatusJSON
		StartedAt string `json:"startedAt"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*a = AppStatus(v.appStatusJSON)
	a.StartedAt = time.Time{}
	if v.StartedAt != "" {
		t, err := time.Parse(time.RFC3339Nano, v.StartedAt)
		if err != nil {
			return fmt.Errorf("startedAt: %w", err)
		}
		a.StartedAt = t
	}
	return nil
}

// DeployResult answers a deploy or a rollback.
type DeployResult struct {
	App             string `json:"app"`
	Version         string `json:"version"`
	PreviousVersion string `json:"previousVersion"`
	State           string `json:"state"`
}

// ParseOwnerHash reads the hex SHA-256 of the owner's token, as in the
// image's /etc/nodeboot/api/owner.sha256.
func ParseOwnerHash(s string) ([32]byte, error) {
	var h [32]byte
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != len(h) {
		return h, errors.New("want 64 hex digits (the SHA-256 of the owner's token): rebuild the image with nodeboot build")
	}
	copy(h[:], b)
	return h, nil
}

// Options tune the server; the zero value is the documented behaviour.
type Options struct {
	// Log receives one line per notable event (refused clients, serve
	// errors); nil discards them.
	Log func(format string, args ...any)
	// MaxBundleBytes bounds a deploy's body (default 1 GiB).
	MaxBundleBytes int64
	// FailureBurst failed authentications from one IP address are
	// answered at once; after that one per FailureEvery (defaults 64 and
	// 1 s). The rest are 429 without a look at the credentials.
	FailureBurst int
	FailureEvery time.Duration
	// Now is the clock of the failure limit (tests).
	Now func() time.Time
}

// Defaults of Options.
const (
	DefaultMaxBundleBytes = 1 << 30
	DefaultFailureBurst   = 64
	DefaultFailureEvery   = time.Second
)

// Server is the management API.
type Server struct {
	node  Node
	owner [32]byte
	opts  Options
	log   func(format string, args ...any)

	mux     *http.ServeMux
	routes  []Route
	limiter *limiter
	page    *page

	// deploying is held by one deploy or rollback at a time, node-wide.
	deploying sync.Mutex

	registry  *prometheus.Registry
	deploys   *prometheus.CounterVec
	rollbacks *prometheus.CounterVec

	mu   sync.Mutex
	http *http.Server
}

// Route is one registered route.
type Route struct {
	Method  string
	Pattern string // the path, with {app} for an app name
	Public  bool   // no credentials needed (only the liveness probe)
	Session bool   // the status page's session cookie is accepted (read-only GETs)
}

// New returns a server for node that admits the owner whose token hashes
// to ownerHash.
func New(node Node, ownerHash [32]byte, opts Options) *Server {
	if opts.MaxBundleBytes <= 0 {
		opts.MaxBundleBytes = DefaultMaxBundleBytes
	}
	if opts.FailureBurst <= 0 {
		opts.FailureBurst = DefaultFailureBurst
	}
	if opts.FailureEvery <= 0 {
		opts.FailureEvery = DefaultFailureEvery
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{node: node, owner: ownerHash, opts: opts, log: opts.Log, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = func(string, ...any) {}
	}
	s.limiter = newLimiter(opts.FailureBurst, opts.FailureEvery, opts.Now)
	s.page = mustPage()
	s.initMetrics()
	s.register()
	return s
}

// Routes lists every route, for tests that walk them all.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// Handler is the API without TLS (tests, or a TLS terminator of one's own).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Timeouts of Serve. Deploy uploads and followed logs lift the read and
// write deadlines and bound each read or write by idleIO instead, so a
// slow link can upload a big bundle and logs can stream for days.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	writeTimeout      = 2 * time.Minute
	idleTimeout       = 2 * time.Minute
	idleIO            = time.Minute
	maxHeaderBytes    = 16 << 10
)

// Serve answers HTTPS (TLS 1.3 only) on l with the node's certificate and
// key until Shutdown; like http.Server it returns http.ErrServerClosed then.
func (s *Server) Serve(l net.Listener, certPEM, keyPEM []byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("the node's TLS key and certificate: %w", err)
	}
	hs := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          log.New(logWriter(s.log), "management API: ", 0),
	}
	s.mu.Lock()
	s.http = hs
	s.mu.Unlock()
	return hs.ServeTLS(l, "", "")
}

// Shutdown stops Serve, waiting for requests in flight until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	hs := s.http
	s.mu.Unlock()
	if hs == nil {
		return nil
	}
	return hs.Shutdown(ctx)
}

// logWriter adapts Options.Log for http.Server's error log (TLS handshake
// errors of scanners and plain-HTTP clients land here).
type logWriter func(format string, args ...any)

func (l logWriter) Write(p []byte) (int, error) {
	l("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
