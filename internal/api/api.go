// Package api is the node's management API (docs/api.md): the HTTPS server
// PID 1 runs on contract.APIPort, with the status page and /metrics. It knows
// nothing of processes or disks; PID 1 supplies those through Node.
package api

import (
	"context"
	"crypto/tls"
	"encoding/hex"
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

	"github.com/nodeboot/nodeboot/internal/contract"
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

// The wire types live in internal/contract, shared with the CLI's client;
// these names keep the API's own vocabulary.
type (
	Status       = contract.Status
	NodeStatus   = contract.NodeStatus
	Memory       = contract.Memory
	DataStatus   = contract.DataStatus
	AppStatus    = contract.AppStatus
	DeployResult = contract.DeployResult
)

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
	// answered 401 at once; after that one per FailureEvery (defaults 64
	// and 1 s), and the rest 429. The owner's credentials are never
	// limited.
	FailureBurst int
	FailureEvery time.Duration
	// Now is the clock of the failure limit, the sessions and the
	// console's rate limit (tests).
	Now func() time.Time
	// SessionLifetime is how long a status page login lasts (default
	// 12 h).
	SessionLifetime time.Duration
	// MaxConns bounds the connections open at once (default 128): more
	// wait in the kernel's accept queue, which costs PID 1 no file
	// descriptor. MaxConnsPerSource bounds those from one IPv4 address
	// or IPv6 /64 (default 32): more are closed at once, so that one
	// client cannot take every slot.
	MaxConns          int
	MaxConnsPerSource int
	// HeaderTimeout bounds the TLS handshake and then a request's headers
	// (default 10 s); IdleTimeout a kept-alive connection, HTTP/1.1 or
	// HTTP/2, between requests (default 30 s).
	HeaderTimeout time.Duration
	IdleTimeout   time.Duration
	// LogEvery spaces the console lines about failed handshakes and
	// refused connections: at most one of each kind per LogEvery
	// (default 1 min), saying how many were not logged; the metrics
	// count every one.
	LogEvery time.Duration
}

// Defaults of Options.
const (
	DefaultMaxBundleBytes    = 1 << 30
	DefaultFailureBurst      = 64
	DefaultFailureEvery      = time.Second
	DefaultMaxConns          = 128
	DefaultMaxConnsPerSource = 32
	DefaultHeaderTimeout     = 10 * time.Second
	DefaultIdleTimeout       = 30 * time.Second
	DefaultLogEvery          = time.Minute
)

// Server is the management API.
type Server struct {
	node  Node
	owner [32]byte
	opts  Options
	log   func(format string, args ...any)

	mux      *http.ServeMux
	routes   []Route
	limiter  *limiter
	sessions *sessions
	page     *page
	console  *throttle

	// deploying is held by one deploy or rollback at a time, node-wide.
	deploying sync.Mutex

	registry     *prometheus.Registry
	deploys      *prometheus.CounterVec
	rollbacks    *prometheus.CounterVec
	tlsFailures  prometheus.Counter
	connsRefused prometheus.Counter
	connsOpen    prometheus.Gauge

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
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if opts.MaxBundleBytes <= 0 {
		opts.MaxBundleBytes = DefaultMaxBundleBytes
	}
	if opts.FailureBurst <= 0 {
		opts.FailureBurst = DefaultFailureBurst
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.MaxConnsPerSource <= 0 {
		opts.MaxConnsPerSource = DefaultMaxConnsPerSource
	}
	def(&opts.FailureEvery, DefaultFailureEvery)
	def(&opts.SessionLifetime, DefaultSessionLifetime)
	def(&opts.HeaderTimeout, DefaultHeaderTimeout)
	def(&opts.IdleTimeout, DefaultIdleTimeout)
	def(&opts.LogEvery, DefaultLogEvery)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{node: node, owner: ownerHash, opts: opts, log: opts.Log, mux: http.NewServeMux()}
	if s.log == nil {
		s.log = func(string, ...any) {}
	}
	s.limiter = newLimiter(opts.FailureBurst, opts.FailureEvery, opts.Now)
	s.sessions = newSessions(opts.SessionLifetime, opts.Now)
	s.console = newThrottle(s.log, opts.LogEvery, opts.Now)
	s.page = mustPage()
	s.initMetrics()
	s.register()
	return s
}

// Routes lists every route, for tests that walk them all.
func (s *Server) Routes() []Route { return append([]Route(nil), s.routes...) }

// Handler is the API without TLS (tests, or a TLS terminator of one's own).
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Timeouts of Serve besides Options'. Deploy uploads and followed logs
// lift the read and write deadlines and bound each read or write by
// idleIO instead, so a slow link can upload a big bundle and logs can
// stream for days.
const (
	readTimeout    = time.Minute
	writeTimeout   = 2 * time.Minute
	idleIO         = time.Minute
	maxHeaderBytes = 16 << 10
	// maxStreams bounds the requests of one HTTP/2 connection at once (Go's
	// default is 250): the page needs two, the CLI one.
	maxStreams = 16
)

// Serve answers HTTPS (TLS 1.3 only) on l with the node's certificate and
// key until Shutdown; like http.Server it returns http.ErrServerClosed then.
// Connections are limited as Options say before TLS sees them (issue 12,
// item 6: 4,300 connections in one second took all of PID 1's files).
func (s *Server) Serve(l net.Listener, certPEM, keyPEM []byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("the node's TLS key and certificate: %w", err)
	}
	hs := &http.Server{
		Handler:   s.Handler(),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}},
		// net/http bounds the TLS handshake by the shortest of these
		// three, so HeaderTimeout bounds the handshake too.
		ReadHeaderTimeout: s.opts.HeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		// HTTP/2 takes its idle timeout from here as well.
		IdleTimeout:    s.opts.IdleTimeout,
		MaxHeaderBytes: maxHeaderBytes,
		HTTP2:          &http.HTTP2Config{MaxConcurrentStreams: maxStreams},
		ErrorLog:       log.New(serverLog{s}, "", 0),
	}
	s.mu.Lock()
	s.http = hs
	s.mu.Unlock()
	return hs.ServeTLS(s.limitListener(l), "", "")
}

// Shutdown stops Serve, waiting for requests in flight until ctx is done;
// then it closes their connections (a deploy's upload fails and its spool
// file on /data is removed), so nothing of the API outlives a power-off.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	hs := s.http
	s.mu.Unlock()
	if hs == nil {
		return nil
	}
	err := hs.Shutdown(ctx)
	if err != nil {
		hs.Close()
	}
	return err
}
