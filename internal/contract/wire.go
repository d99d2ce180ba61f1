package contract

import (
	"encoding/json"
	"fmt"
	"time"
)

// The JSON bodies of docs/api.md: what the node sends and the CLI reads.

// Status is GET /v1/status.
type Status struct {
	Node NodeStatus  `json:"node"`
	Apps []AppStatus `json:"apps"`
	// OS is the root slots and the last OS update (update.go).
	OS *OSStatus `json:"os,omitempty"`
	// Follow is the followed tag (follow.go); nil when the node follows none.
	Follow *FollowStatus `json:"follow,omitempty"`
	// Clock is the wall clock's state (clock.go); nil from nodes that
	// predate it.
	Clock *ClockStatus `json:"clock,omitempty"`
	// Logs is the remote log shipper (logs.go); nil when none is set.
	Logs *LogsStatus `json:"logs,omitempty"`
}

// App returns the app named name, or nil.
func (s *Status) App(name string) *AppStatus {
	for i := range s.Apps {
		if s.Apps[i].Name == name {
			return &s.Apps[i]
		}
	}
	return nil
}

// AppNames lists the apps in the node's order.
func (s *Status) AppNames() []string {
	names := make([]string, 0, len(s.Apps))
	for _, a := range s.Apps {
		names = append(names, a.Name)
	}
	return names
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
	// Degraded says why the node runs degraded (runtime.json or /data it
	// could not use); empty on a healthy node.
	Degraded string `json:"degraded,omitempty"`
	// ConsoleDroppedLines counts lines the console lost since boot because
	// output came faster than it could write (the apps' log files keep
	// theirs).
	ConsoleDroppedLines uint64 `json:"consoleDroppedLines"`
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
	Version         string    `json:"version"` // "image" or "sha256:<hex>"
	PreviousVersion string    `json:"previousVersion"`
	// What the app told its node through require('nodeboot') (docs/js.md).
	// Ready: it called ready() (and Health "ready": deploys wait for it).
	Health           string    `json:"health,omitempty"`
	Ready            bool      `json:"ready,omitempty"`
	WatchdogMs       int64     `json:"watchdogMs,omitempty"`
	WatchdogRestarts int       `json:"watchdogRestarts,omitempty"`
	Locks            []AppLock `json:"locks,omitempty"`
	LastLockOverride string    `json:"lastLockOverride,omitempty"`
}

// AppLock is a lock() an app holds; Overridden once it outlived the app's
// maxLockSeconds and a deploy, update or reboot went ahead anyway.
type AppLock struct {
	Reason     string    `json:"reason"`
	Since      time.Time `json:"since"`
	Overridden bool      `json:"overridden,omitempty"`
}

// MaxSecretBytes bounds one secret's value (PUT /v1/apps/{app}/secrets/{name}).
const MaxSecretBytes = 64 << 10

// SecretResult answers setting or removing a secret: never its value.
type SecretResult struct {
	App  string `json:"app"`
	Name string `json:"name"`
}

// SecretList answers GET /v1/apps/{app}/secrets: the names only.
type SecretList struct {
	App   string   `json:"app"`
	Names []string `json:"names"`
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
	// Warning: what failed after the switch was recorded, without undoing
	// it (the old version's persist dirs could not be unmounted).
	Warning string `json:"warning,omitempty"`
}

// RestartResult answers POST /v1/apps/{app}/restart.
type RestartResult struct {
	App string `json:"app"`
	PID int    `json:"pid"`
}

// ActionResult answers POST /v1/reboot and /v1/poweroff.
type ActionResult struct {
	Action string `json:"action"`
}

// RevokeResult answers DELETE /v1/sessions.
type RevokeResult struct {
	Revoked int `json:"revoked"`
}

// ErrorBody is every 4xx/5xx body; Logs only on a 422 deploy or rollback.
type ErrorBody struct {
	Error string   `json:"error"`
	Logs  []string `json:"logs,omitempty"`
}
