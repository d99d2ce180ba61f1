// Package appapi is the per-app unix socket behind require('nodeboot'):
// PID 1 serves it, one socket per app, mounted into the app's sandbox at
// SocketPath. Who calls is read from the socket's peer credentials
// (SO_PEERCRED: each app runs as its own uid), never from the request.
//
// The protocol is newline-delimited JSON (docs/js.md): each request is one
// JSON object on one line, at most MaxRequest bytes,
//
//	{"id": 1, "op": "secret", "name": "db-password"}
//
// and each answer carries the request's id and either "result" or "error":
//
//	{"id": 1, "result": {"value": "..."}}
//	{"id": 1, "error": {"code": "not_found", "message": "..."}}
//
// Messages PID 1 sends on its own have no id: {"event": {...}} for an
// events() subscription, {"shutdown": {...}} before the app is stopped.
// State a connection sets up (readiness, a watchdog, a lock, a shutdown
// handler) lives as long as the connection: the process that made it is
// gone when its connections close.
package appapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"unicode/utf8"
)

// Where the socket is, inside the app's view of the file system.
const (
	// SocketDir holds one directory per app, AppDir(app), which PID 1
	// creates owned by the app; the sandbox shows an app only its own.
	SocketDir = "/run/nodeboot/app"
	// SocketName is the socket's name inside AppDir(app).
	SocketName = "api.sock"
	// SocketEnv names the environment variable that gives the app its
	// socket's path.
	SocketEnv = "NODEBOOT_SOCKET"
)

// AppDir is app's socket directory.
func AppDir(app string) string { return SocketDir + "/" + app }

// SocketPath is app's socket.
func SocketPath(app string) string { return AppDir(app) + "/" + SocketName }

// Bounds on what one app can make PID 1 hold.
const (
	// MaxRequest bounds one request line, newline included.
	MaxRequest = 16 << 10
	// MaxConns bounds an app's open connections: each is a descriptor
	// and a goroutine of PID 1's.
	MaxConns = 32
	// MaxReason bounds a lock's reason.
	MaxReason = 200
	// MinWatchdog and MaxWatchdog bound watchdog intervals.
	MinWatchdogMs = 500
	MaxWatchdogMs = 3600_000
	// MaxShutdownMs bounds how long an onShutdown handler may delay a stop.
	MaxShutdownMs = 60_000
	// DefaultShutdownMs is the handler's time when it names none.
	DefaultShutdownMs = 10_000
)

// The operations a request may name.
const (
	OpInfo         = "info"
	OpReady        = "ready"
	OpWatchdog     = "watchdog"  // intervalMs (0 disarms)
	OpKeepAlive    = "keepalive" // resets the watchdog
	OpOnShutdown   = "onShutdown"
	OpShutdownDone = "shutdownDone"
	OpLock         = "lock" // reason
	OpRelease      = "release"
	OpServices     = "services"
	OpService      = "service" // name
	OpSecret       = "secret"  // name
	OpEvents       = "events"
)

var ops = map[string]bool{
	OpInfo: true, OpReady: true, OpWatchdog: true, OpKeepAlive: true, OpOnShutdown: true,
	OpShutdownDone: true, OpLock: true, OpRelease: true, OpServices: true, OpService: true,
	OpSecret: true, OpEvents: true,
}

// Request is one parsed request.
type Request struct {
	ID         uint64 `json:"id"`
	Op         string `json:"op"`
	Name       string `json:"name,omitempty"`
	Reason     string `json:"reason,omitempty"`
	IntervalMs int64  `json:"intervalMs,omitempty"`
	TimeoutMs  int64  `json:"timeoutMs,omitempty"`
}

// Error codes an answer may carry (Error.Code).
const (
	CodeBadRequest = "bad_request"
	CodeTooLarge   = "too_large"
	CodeNotAnApp   = "not_an_app"
	CodeNotFound   = "not_found"
	CodeTooMany    = "too_many"
	CodeInternal   = "internal"
)

// Error is an answer's error.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// ErrNotFound is wrapped by the Node's lookups of unknown names.
var ErrNotFound = errors.New("not found")

// Response is one answer.
type Response struct {
	ID     uint64 `json:"id"`
	Result any    `json:"result,omitempty"`
	Error  *Error `json:"error,omitempty"`
}

// Push is a message PID 1 sends without a request.
type Push struct {
	Event    *Event    `json:"event,omitempty"`
	Shutdown *Shutdown `json:"shutdown,omitempty"`
}

// Event is one node event (events()).
type Event struct {
	Type    string `json:"type"` // one of the Event constants
	Time    string `json:"time"` // RFC 3339
	App     string `json:"app,omitempty"`
	Message string `json:"message"`
}

// Event types (Event.Type).
const (
	EventDeploy         = "deploy"  // a deploy or rollback of an app went through
	EventUpdate         = "update"  // an OS update was staged, committed, or failed
	EventNetwork        = "network" // the node's network came up
	EventClock          = "clock"   // the clock was set from the network
	EventMemory         = "memory"  // an app's cgroup, or the node, ran short of memory
	EventLockOverridden = "lock-overridden"
)

// Shutdown tells an onShutdown handler that its app is about to get SIGTERM.
type Shutdown struct {
	Reason    string `json:"reason"` // one of the Cause constants
	TimeoutMs int64  `json:"timeoutMs"`
}

// Why an app is stopped (Shutdown.Reason).
const (
	CauseDeploy   = "deploy"    // a deploy or rollback replaces the process
	CauseUpdate   = "update"    // the node reboots for an OS update (its trial, or back from a failed one)
	CauseRestart  = "restart"   // a restart through the management API
	CauseReboot   = "reboot"    // the node reboots
	CausePowerOff = "power-off" // the node powers off
)

// NamePattern is what secret and service names look like.
var NamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ParseRequest parses one request line (without its newline). It is strict:
// unknown fields, a second value, an unknown op, or a field the op needs
// missing or out of range are errors that say what is wrong.
func ParseRequest(line []byte) (Request, *Error) {
	var r Request
	if len(line) >= MaxRequest {
		return r, &Error{CodeTooLarge, fmt.Sprintf("request of %d bytes: at most %d", len(line), MaxRequest-1)}
	}
	if !utf8.Valid(line) {
		return r, &Error{CodeBadRequest, "request is not UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, &Error{CodeBadRequest, fmt.Sprintf("request is not a JSON object of this protocol: %v", err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return r, &Error{CodeBadRequest, "data after the request's JSON object: one request per line"}
	}
	if r.Op == "" {
		return r, &Error{CodeBadRequest, `request has no "op"`}
	}
	if !ops[r.Op] {
		return r, &Error{CodeBadRequest, fmt.Sprintf("unknown op %q", truncate(r.Op, 40))}
	}
	switch r.Op {
	case OpSecret, OpService:
		if !NamePattern.MatchString(r.Name) {
			return r, &Error{CodeBadRequest, fmt.Sprintf("%s: name %q is not a valid name (letters, digits, '.', '_', '-', at most 64)", r.Op, truncate(r.Name, 70))}
		}
	case OpWatchdog:
		if r.IntervalMs != 0 && (r.IntervalMs < MinWatchdogMs || r.IntervalMs > MaxWatchdogMs) {
			return r, &Error{CodeBadRequest, fmt.Sprintf("watchdog: intervalMs %d out of range: %d to %d, or 0 to turn it off", r.IntervalMs, MinWatchdogMs, MaxWatchdogMs)}
		}
	case OpOnShutdown:
		if r.TimeoutMs < 0 || r.TimeoutMs > MaxShutdownMs {
			return r, &Error{CodeBadRequest, fmt.Sprintf("onShutdown: timeoutMs %d out of range: 0 (the default, %d) to %d", r.TimeoutMs, DefaultShutdownMs, MaxShutdownMs)}
		}
	case OpLock:
		if len(r.Reason) > MaxReason {
			return r, &Error{CodeBadRequest, fmt.Sprintf("lock: reason of %d bytes, at most %d", len(r.Reason), MaxReason)}
		}
	}
	return r, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
