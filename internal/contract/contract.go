// Package contract holds what the builder (the CLI, the e2e tests) and a
// running node must agree on: the management API's port, paths, headers
// and JSON bodies (docs/api.md), where the image keeps the API's
// credentials, and the console lines PID 1 prints that others wait for.
// Each is written here once, so the two sides cannot drift apart.
package contract

import (
	"fmt"
	"net/url"
	"strings"
)

// APIPort is the management API's TCP port on every node.
const APIPort = 9443

// Paths of the management API (docs/api.md, "Routes"). AppPattern's
// {app} is the app's name; AppPath fills it in.
const (
	PathHealthz  = "/v1/healthz"
	PathStatus   = "/v1/status"
	PathReboot   = "/v1/reboot"
	PathPoweroff = "/v1/poweroff"
	PathSession  = "/v1/session"
	PathLogout   = "/v1/logout"
	PathSessions = "/v1/sessions"
	PathMetrics  = "/metrics"
	PathPage     = "/"

	AppPattern     = "/v1/apps/{app}"
	SuffixLogs     = "/logs"
	SuffixRestart  = "/restart"
	SuffixRollback = "/rollback"
)

// AppPath is AppPattern for app, escaped for a URL.
func AppPath(app string) string {
	return strings.Replace(AppPattern, "{app}", url.PathEscape(app), 1)
}

// DigestHeader carries a deploy bundle's digest, "sha256:<64 hex>".
const DigestHeader = "Nodeboot-Digest"

// Where an image keeps the API's credentials (written by the build, read
// by PID 1). The directory is root-only.
const (
	APIDir         = "/etc/nodeboot/api"
	ImageKey       = APIDir + "/node.key"
	ImageCert      = APIDir + "/node.crt"
	ImageOwnerHash = APIDir + "/owner.sha256"
)

// Console markers: PID 1 logs each line with ConsolePrefix in front (after
// the kernel-style time stamp); `nodeboot run`, the e2e tests and the
// benchmark wait for them on the serial console.
const (
	ConsolePrefix = "nodeboot: "
	// InitStarted begins PID 1's first line ("init started (pid 1)").
	InitStarted = "init started"
	// NetworkConfigured begins the line logged once the network is up.
	NetworkConfigured = "network configured"
	// Degraded begins the line PID 1 repeats while the node runs degraded
	// (a configuration or /data it could not use), followed by the reason.
	Degraded = "DEGRADED: "
)

// AppListening is the line PID 1 logs when app first accepts on port.
func AppListening(app string, port int) string {
	return fmt.Sprintf("app %s listening on port %d", app, port)
}
