package spec

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strings"

	"github.com/nodeboot/nodeboot/internal/sandbox"
)

// RuntimePath is where the build writes the resolved node configuration inside
// the image and where PID 1 reads it. It is generated data, not user input: the
// user-facing config (nodeboot.json) is validated at build time, and the init
// only ever sees this resolved form.
const RuntimePath = "/etc/nodeboot/runtime.json"

// Runtime is everything PID 1 needs to know about the node it is running:
// resolved from package.json + nodeboot.json + flags at build time.
type Runtime struct {
	Hostname string  `json:"hostname"`
	Network  Network `json:"network"`
	NodePath string  `json:"nodePath"` // absolute path of node in the image
	// NodeVersion is node's version ("v20.20.2"): the management API reports
	// it and refuses deploys whose engines.node it does not satisfy.
	NodeVersion string       `json:"nodeVersion,omitempty"`
	Apps        []RuntimeApp `json:"apps"`
	// DataPartition is the GPT name of the persistent data partition (disk
	// images); empty means /data is a tmpfs (initramfs images).
	DataPartition string `json:"dataPartition,omitempty"`
	// ImageVersion identifies the build (a digest of its inputs) so the node can
	// report what it runs.
	ImageVersion string `json:"imageVersion,omitempty"`
	// HealthySeconds is how long every app must stay healthy before an OS
	// update's trial boot is committed (nodeboot.json update.healthySeconds;
	// 0: the default, 30).
	HealthySeconds int `json:"healthySeconds,omitempty"`
	// Follow is the tag the node follows (nodeboot.json "follow"); nil:
	// none.
	Follow *FollowConfig `json:"follow,omitempty"`
	// ClockFloor is the earliest time the node's clock may show (Unix
	// seconds): the build's SOURCE_DATE_EPOCH, so that a node without a
	// real-time clock never believes it is before its image was built
	// (internal/clock; 0: the floor compiled into PID 1).
	ClockFloor int64 `json:"clockFloor,omitempty"`
	// Logs is where the node ships its log lines (nodeboot.json
	// "logs.remote"); nil: nowhere.
	Logs *RuntimeLogs `json:"logs,omitempty"`
}

// RuntimeApp is one supervised service.
type RuntimeApp struct {
	Name  string `json:"name"`
	Dir   string `json:"dir"`   // absolute code dir in the image, e.g. /apps/hello; cwd of the process
	Entry string `json:"entry"` // entry file relative to Dir
	// The process is: node NodeArgs... Entry Args...
	NodeArgs []string `json:"nodeArgs,omitempty"`
	Args     []string `json:"args,omitempty"`
	// Env is the complete environment of the process (PORT, NODE_ENV, HOME,
	// NODEBOOT_DATA_DIR, and the user's), already merged; PATH is added by init.
	Env  map[string]string `json:"env"`
	Port int               `json:"port"`
	UID  int               `json:"uid"`
	GID  int               `json:"gid"`
	// DataDir is the app's writable state dir ($NODEBOOT_DATA_DIR).
	DataDir string `json:"dataDir"`
	// Persist are dirs relative to Dir that PID 1 bind-mounts from
	// DataDir/persist/<dir>.
	Persist []string `json:"persist,omitempty"`
	// HealthPath, when set, is the HTTP path a new version must answer 2xx
	// on before a deploy switches to it; otherwise its port must accept.
	HealthPath string `json:"healthPath,omitempty"`
	// Health "ready": the app's ready() call, not its port, is its
	// health (internal/appapi).
	Health string `json:"health,omitempty"`
	// MaxLockSeconds bounds the app's lock(); 0: the default.
	MaxLockSeconds int `json:"maxLockSeconds,omitempty"`
	// Limits are the app's cgroup limits; Sandbox its sandbox settings
	// (the zero value is the full sandbox). See internal/sandbox.
	Limits  sandbox.Limits  `json:"limits,omitzero"`
	Sandbox sandbox.Options `json:"sandbox,omitzero"`
	// Shell: the app sees the image's busybox (internal/shell); others
	// have its directory covered.
	Shell bool `json:"shell,omitempty"`
}

// Network is the node's network configuration.
type Network struct {
	// Mode is "dhcp" (default) or "static".
	Mode    string   `json:"mode,omitempty"`
	Address string   `json:"address,omitempty"` // CIDR, static only
	Gateway string   `json:"gateway,omitempty"` // static only
	DNS     []string `json:"dns,omitempty"`     // static: the resolvers; dhcp: extra/override
	// NTP servers (host, IP or host:port), asked after those DHCP
	// announces; empty means the defaults of internal/netconf.
	NTP []string `json:"ntp,omitempty"`
	// NTPOff is set by "ntp": [] in nodeboot.json: no NTP at all (the
	// clock is still restored from /data at boot, internal/clock).
	NTPOff bool `json:"ntpOff,omitempty"`
}

// ReadRuntime reads the runtime configuration PID 1 boots with. Every
// error names the file and says what to do.
func ReadRuntime(path string) (*Runtime, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading runtime config: %w; rebuild the image (nodeboot build)", err)
	}
	defer f.Close()
	rt, err := DecodeRuntime(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w; the image is damaged or was built by another nodeboot: rebuild it (nodeboot build)", path, err)
	}
	return rt, nil
}

// DecodeRuntime decodes runtime.json strictly: a field the init does not know
// means the image was built by a newer nodeboot, which it must say rather than
// silently ignore. The file is generated, but PID 1 runs as root and makes
// paths, users and mounts from it, so a damaged one is refused whole rather
// than half-used: names that are not app names (they become paths under
// /data and cgroup names), relative or unclean paths, persist dirs leaving
// the app, ports and ids out of range, data after the object.
func DecodeRuntime(r io.Reader) (*Runtime, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var rt Runtime
	if err := dec.Decode(&rt); err != nil {
		return nil, fmt.Errorf("decoding runtime config: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("decoding runtime config: data after the object")
	}
	if f := rt.Follow; f != nil {
		if _, err := ParseFollowRef(f.Ref); err != nil {
			return nil, fmt.Errorf("runtime config: follow.ref: %w", err)
		}
		if _, err := ParseFollowInterval(f.Interval); err != nil {
			return nil, fmt.Errorf("runtime config: follow.interval: %w", err)
		}
	}
	if l := rt.Logs; l != nil {
		if err := l.Check(); err != nil {
			return nil, fmt.Errorf("runtime config: logs: %w", err)
		}
	}
	seen := map[string]bool{}
	for i, a := range rt.Apps {
		if a.Name == "" || a.Dir == "" || a.Entry == "" {
			return nil, fmt.Errorf("runtime config: app %d lacks name, dir or entry", i)
		}
		if err := checkRuntimeApp(a); err != nil {
			return nil, fmt.Errorf("runtime config: app %d: %w", i, err)
		}
		if seen[a.Name] {
			return nil, fmt.Errorf("runtime config: app %q twice", a.Name)
		}
		seen[a.Name] = true
	}
	return &rt, nil
}

func checkRuntimeApp(a RuntimeApp) error {
	if err := checkAppName(a.Name); err != nil {
		return err
	}
	if !cleanAbs(a.Dir) {
		return fmt.Errorf("dir %q is not an absolute, clean path", a.Dir)
	}
	if a.DataDir != "" && !cleanAbs(a.DataDir) {
		return fmt.Errorf("dataDir %q is not an absolute, clean path", a.DataDir)
	}
	if a.Port < 0 || a.Port > 65535 {
		return fmt.Errorf("port %d out of range", a.Port)
	}
	if a.UID < 0 || a.GID < 0 || int64(a.UID) > math.MaxUint32 || int64(a.GID) > math.MaxUint32 {
		return fmt.Errorf("uid/gid %d/%d out of range", a.UID, a.GID)
	}
	if a.Health != "" && a.Health != HealthReady {
		return fmt.Errorf("health %q is not %q", a.Health, HealthReady)
	}
	if a.MaxLockSeconds < 0 || a.MaxLockSeconds > MaxLockSeconds {
		return fmt.Errorf("maxLockSeconds %d out of range", a.MaxLockSeconds)
	}
	for _, p := range a.Persist {
		if c, err := PersistPath(p); err != nil || c != p {
			return fmt.Errorf("persist %q is not a clean directory inside the app", p)
		}
	}
	return nil
}

func cleanAbs(p string) bool {
	return path.IsAbs(p) && path.Clean(p) == p && !strings.ContainsRune(p, 0)
}
