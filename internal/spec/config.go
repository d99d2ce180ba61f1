package spec

// nodeboot.json is checked by the hand-written validator in this file rather
// than by running docs/nodeboot.schema.json through a JSON Schema library, for
// three reasons:
//
//   - messages: a schema library reports "additional properties 'mod' not
//     allowed" at "/network"; users should read
//     `network.mod: unknown key (did you mean "mode"?)`, and "expected string,
//     got number" at apps[1].env.PORT. Rewriting a library's error tree into
//     that form is more code than the checks themselves.
//   - reach: half of the rules are not expressible in a schema anyway (unique
//     names and ports, CIDR and IP syntax, repeated keys), so Go code is
//     needed either way, and one place is better than two.
//   - the schema lives in docs/ for editors, outside this package, where
//     go:embed cannot reach it; the binary needs no schema engine at run time.
//
// The schema stays the documentation editors complete from, and
// schema_test.go validates a table of good and bad configs with both and
// fails when they disagree, so neither can drift.

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/sandbox"
)

// ConfigFile is the name of the optional config file in an app directory.
const ConfigFile = "nodeboot.json"

// Config is nodeboot.json, validated. Zero values mean "not set".
type Config struct {
	// Hostname of the node; default: the sanitized package name.
	Hostname string `json:"hostname,omitempty"`
	// Node is the Node.js version spec, as for --node.
	Node string `json:"node,omitempty"`
	// Env is given to every app, under each app's own env.
	Env map[string]string `json:"env,omitempty"`
	// Network is the node's network; Mode "" means DHCP.
	Network Network `json:"network,omitzero"`
	// Cmdline is appended to the kernel command line.
	Cmdline string `json:"cmdline,omitempty"`
	// Apps lists the services of the node; empty means the app directory
	// itself is the one app.
	Apps []AppConfig `json:"apps,omitempty"`
	// Update tunes OS updates' trial boots (update_config.go).
	Update UpdateConfig `json:"update,omitzero"`
	// Follow makes the node follow a tag in an OCI registry
	// (follow_config.go); nil: it does not.
	Follow *FollowConfig `json:"follow,omitempty"`
	// Logs sends the node's log lines to a remote endpoint
	// (logs_config.go); nil: not set.
	Logs *LogsConfig `json:"logs,omitempty"`
}

// AppConfig is one entry of "apps".
type AppConfig struct {
	// Name of the app; default: its sanitized package name.
	Name string `json:"name,omitempty"`
	// Path of the app directory, relative to the directory of nodeboot.json.
	Path string            `json:"path"`
	Env  map[string]string `json:"env,omitempty"`
	// Args replace the arguments taken from scripts.start when not nil.
	Args []string `json:"args,omitempty"`
	// Port is the app's PORT; 0 means the next free one from 8080.
	Port int `json:"port,omitempty"`
	// Persist lists directories of the (read-only) code dir, relative to
	// it, that are bind-mounted from the app's persistent state, so apps
	// that write next to their code run unchanged.
	Persist []string `json:"persist,omitempty"`
	// HealthPath is an HTTP path a newly deployed version must answer 2xx
	// on before the node switches to it; without it the port must accept.
	HealthPath string `json:"healthPath,omitempty"`
	// Health "ready" makes deploys and OS updates wait for the app's
	// require('nodeboot').ready() instead of its port (docs/js.md); an
	// app without a port, or with "network": "none", needs it.
	Health string `json:"health,omitempty"`
	// MaxLockSeconds bounds how long the app's lock() holds off a
	// deploy, update or reboot; 0: the default, 60.
	MaxLockSeconds int `json:"maxLockSeconds,omitempty"`
	// Limits are the app's cgroup limits (sandbox_config.go).
	Limits sandbox.Limits `json:"limits,omitzero"`
	// Sandbox adjusts or turns off the app's sandbox.
	Sandbox SandboxConfig `json:"sandbox,omitzero"`
	// AllowRemoteInspector lets node's inspector (--inspect and the like,
	// in scripts.start or NODE_OPTIONS) listen on a non-loopback address:
	// whoever reaches it runs code in the app (CheckInspector).
	AllowRemoteInspector bool `json:"allowRemoteInspector,omitempty"`
	// Shell gives the app /bin/sh and the common utilities (busybox) in
	// its own view of the files, so exec, execSync and spawn with
	// shell: true work as on Debian (internal/shell). Off by default.
	Shell bool `json:"shell,omitempty"`
}

// HealthReady is "health": "ready".
const HealthReady = "ready"

// MaxLockSeconds bounds "maxLockSeconds": a day.
const MaxLockSeconds = 86400

// The keys each object of nodeboot.json accepts. The schema test checks that
// docs/nodeboot.schema.json declares exactly these.
var (
	configKeys  = []string{"$schema", "hostname", "node", "env", "network", "cmdline", "apps", "update", "follow", "logs", "$comment"}
	networkKeys = []string{"mode", "address", "gateway", "dns", "ntp"}
	appKeys     = []string{"name", "path", "env", "args", "port", "persist", "healthPath", "health", "maxLockSeconds", "limits", "sandbox", "allowRemoteInspector", "shell"}
)

// reservedEnv are variables nodeboot sets itself; letting the config set them
// too would either be overridden silently or break the node (a PORT that
// differs from the port nodeboot health-checks and reports).
var reservedEnv = map[string]string{
	"PORT":              `nodeboot sets PORT from the app's "port"; set "port" on the app in "apps" instead`,
	"HOME":              "nodeboot sets HOME to the app's writable data directory",
	"NODEBOOT_DATA_DIR": "nodeboot sets NODEBOOT_DATA_DIR to the app's data directory",
}

// misplacedKeys are keys people put at the wrong level; the hint says where
// they go, which beats "unknown key".
var misplacedKeys = map[string]string{
	"ntp":     `unknown key here: it goes inside "network", e.g. "network": {"ntp": ["pool.ntp.org"]}`,
	"dns":     `unknown key here: it goes inside "network"`,
	"address": `unknown key here: it goes inside "network", with "mode": "static"`,
	"gateway": `unknown key here: it goes inside "network", with "mode": "static"`,
	"mode":    `unknown key here: it goes inside "network"`,
	"port":    `unknown key here: ports are per app; use "apps": [{"path": ".", "port": 3000}]`,
	"args":    `unknown key here: args are per app; use "apps": [{"path": ".", "args": [...]}]`,
	"name":    `unknown key here: names are per app; use "hostname" for the node, or "apps": [{"path": ".", "name": "..."}]`,
	"path":    `unknown key here: paths are per app; use "apps": [{"path": "..."}]`,
}

// ErrInvalidConfig matches (errors.Is) every *ConfigError.
var ErrInvalidConfig = errors.New("invalid nodeboot.json")

// ConfigError is one problem in a config file, located by its JSON path.
type ConfigError struct {
	File      string // the file as it was named to us
	Path      string // e.g. apps[1].env.PORT; "" for the file as a whole
	Line, Col int    // for JSON syntax errors, where there is no path
	Msg       string
	Err       error // the underlying cause, if any
}

func (e *ConfigError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
	}
	if e.Path == "" {
		return e.File + ": " + e.Msg
	}
	return e.File + ": " + e.Path + ": " + e.Msg
}

func (e *ConfigError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalidConfig) true, so callers can tell a bad
// config (exit code for user error) from an I/O failure.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalidConfig }

// maxConfigErrors caps how many problems one run reports; past that the file
// is probably not a nodeboot.json at all.
const maxConfigErrors = 20

// ReadConfig reads and validates a nodeboot.json.
func ReadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	// Read one byte past the limit to tell "at the limit" from "over it".
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config %s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return nil, &ConfigError{File: path, Msg: fmt.Sprintf("larger than %d bytes; this is not a nodeboot.json", maxConfigSize)}
	}
	return ParseConfig(data, path)
}

// ParseConfig validates the bytes of a nodeboot.json; file names it in
// errors. All problems found are reported, each as a *ConfigError, joined
// with errors.Join in document order.
func ParseConfig(data []byte, file string) (*Config, error) {
	tree, err := parseJSONTree(data)
	if err != nil {
		ce := &ConfigError{File: file, Msg: err.Error(), Err: err}
		var se *syntaxError
		if errors.As(err, &se) {
			ce.Line, ce.Col, ce.Msg = se.Line, se.Col, se.Msg
		}
		return nil, ce
	}
	c := &configChecker{file: file}
	cfg := c.config(tree)
	if len(c.errs) > 0 {
		errs := c.errs
		if len(errs) > maxConfigErrors {
			more := len(errs) - maxConfigErrors
			errs = append(errs[:maxConfigErrors:maxConfigErrors], &ConfigError{File: file, Msg: fmt.Sprintf("... and %d more problems", more)})
		}
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

type configChecker struct {
	file string
	errs []error
}

func (c *configChecker) fail(p jsonPath, format string, args ...any) {
	c.errs = append(c.errs, &ConfigError{File: c.file, Path: string(p), Msg: fmt.Sprintf(format, args...)})
}

func (c *configChecker) wrongType(p jsonPath, want string, v *jval) {
	c.fail(p, "expected %s, got %s", want, v.describe())
}

// object checks that v is an object and returns its members, all of them:
// the caller's loop passes each to known() before looking at it, so that
// every problem is reported in document order.
func (c *configChecker) object(v *jval, p jsonPath) ([]jmember, bool) {
	if v.kind != kindObject {
		c.wrongType(p, "object", v)
		return nil, false
	}
	return v.members, true
}

// known reports whether member m of the object at p is to be looked at: a
// key of the list, and its first occurrence. Otherwise it says what is wrong,
// with a hint or a "did you mean" when there is one.
func (c *configChecker) known(m jmember, p jsonPath, keys []string, hints map[string]string) bool {
	kp := p.key(m.key)
	switch {
	case m.dup:
		c.fail(kp, "key appears more than once; JSON keeps only one of them")
	case contains(keys, m.key):
		return true
	case hints[m.key] != "":
		c.fail(kp, "%s", hints[m.key])
	default:
		if s := suggest(m.key, keys); s != "" {
			c.fail(kp, "unknown key (did you mean %q?)", s)
		} else {
			c.fail(kp, "unknown key; known keys are %s", strings.Join(keys, ", "))
		}
	}
	return false
}

func (c *configChecker) str(v *jval, p jsonPath) (string, bool) {
	if v.kind != kindString {
		c.wrongType(p, "string", v)
		return "", false
	}
	return v.str, true
}

// noNUL rejects strings that cannot reach a process: environment entries,
// argv and the kernel command line are NUL-terminated.
func (c *configChecker) noNUL(s string, p jsonPath) bool {
	if strings.ContainsRune(s, 0) {
		c.fail(p, "contains a NUL character")
		return false
	}
	return true
}

func (c *configChecker) config(v *jval) *Config {
	cfg := &Config{}
	members, ok := c.object(v, "")
	if !ok {
		return cfg
	}
	for _, m := range members {
		if !c.known(m, "", configKeys, misplacedKeys) {
			continue
		}
		p := jsonPath("").key(m.key)
		switch m.key {
		case "$schema":
			c.str(m.val, p) // editors use it; nodeboot does not
		case "$comment":
			// JSON has no comments: `nodeboot init` explains the file
			// here. A string or a list of strings, ignored.
			if m.val.kind == kindArray {
				c.stringList(m.val, p, nil)
			} else {
				c.str(m.val, p)
			}
		case "hostname":
			if s, ok := c.str(m.val, p); ok {
				if err := checkHostname(s); err != nil {
					c.fail(p, "%v", err)
				}
				cfg.Hostname = s
			}
		case "node":
			if s, ok := c.str(m.val, p); ok {
				if strings.TrimSpace(s) == "" {
					c.fail(p, `must not be empty; leave "node" out for the default version`)
				}
				cfg.Node = s
			}
		case "env":
			cfg.Env = c.env(m.val, p)
		case "network":
			cfg.Network = c.network(m.val, p)
		case "cmdline":
			if s, ok := c.str(m.val, p); ok && c.noNUL(s, p) {
				cfg.Cmdline = s
			}
		case "apps":
			cfg.Apps = c.apps(m.val, p)
		case "update":
			cfg.Update = c.updateConfig(m.val, p)
		case "follow":
			cfg.Follow = c.followConfig(m.val, p)
		case "logs":
			cfg.Logs = c.logsConfig(m.val, p)
		}
	}
	return cfg
}

// env checks a map of environment variables. It is an object whose keys are
// data, not schema, so object() (which knows a fixed set of keys) is not used.
func (c *configChecker) env(v *jval, p jsonPath) map[string]string {
	if v.kind != kindObject {
		c.wrongType(p, "object", v)
		return nil
	}
	env := map[string]string{}
	for _, m := range v.members {
		kp := p.key(m.key)
		if m.dup {
			c.fail(kp, "variable appears more than once; JSON keeps only one of them")
			continue
		}
		switch {
		case m.key == "":
			c.fail(kp, "empty variable name")
		case strings.ContainsAny(m.key, "=\x00"):
			c.fail(kp, "variable names cannot contain '=' or NUL")
		case reservedEnv[m.key] != "":
			c.fail(kp, "%s", reservedEnv[m.key])
		}
		s, ok := c.str(m.val, kp)
		if ok && c.noNUL(s, kp) {
			env[m.key] = s
		}
	}
	return env
}

func (c *configChecker) network(v *jval, p jsonPath) Network {
	var n Network
	members, ok := c.object(v, p)
	if !ok {
		return n
	}
	var (
		addr                netip.Prefix
		gw                  netip.Addr
		hasAddr, hasGateway bool
	)
	for _, m := range members {
		if !c.known(m, p, networkKeys, nil) {
			continue
		}
		kp := p.key(m.key)
		switch m.key {
		case "mode":
			if s, ok := c.str(m.val, kp); ok {
				if s != "dhcp" && s != "static" {
					c.fail(kp, `%q is not a network mode: use "dhcp" or "static"`, s)
				}
				n.Mode = s
			}
		case "address":
			s, ok := c.str(m.val, kp)
			if !ok {
				break
			}
			hasAddr = true
			n.Address = s
			pf, err := netip.ParsePrefix(s)
			if err != nil {
				if _, ipErr := netip.ParseAddr(s); ipErr == nil {
					c.fail(kp, "%q lacks the prefix length: write it as CIDR, e.g. %q", s, s+"/24")
				} else {
					c.fail(kp, "%q is not an address in CIDR form, e.g. \"192.168.1.10/24\"", s)
				}
				break
			}
			if err := checkHostAddress(pf); err != nil {
				c.fail(kp, "%v", err)
				break
			}
			addr = pf
		case "gateway":
			s, ok := c.str(m.val, kp)
			if !ok {
				break
			}
			hasGateway = true
			n.Gateway = s
			a, err := parseIP(s)
			if err != nil {
				c.fail(kp, "%v", err)
				break
			}
			gw = a
		case "dns":
			n.DNS = c.stringList(m.val, kp, func(s string) error {
				_, err := parseIP(s)
				return err
			})
		case "ntp":
			n.NTP = c.stringList(m.val, kp, checkNTPServer)
			// An explicit empty list turns NTP off (a node on a network
			// with no time service, or one whose clock is kept otherwise);
			// an absent key means the defaults.
			n.NTPOff = m.val.kind == kindArray && len(m.val.arr) == 0
		}
	}
	// The gateway need not lie inside the address's prefix: some hosters
	// hand out a /32 with an on-link gateway elsewhere. It must be of the
	// same IP version, though, or there is no route to it.
	if addr.IsValid() && gw.IsValid() && gw.Unmap().Is4() != addr.Addr().Unmap().Is4() {
		c.fail(p.key("gateway"), "%s and the address %s are of different IP versions", gw, addr)
	}
	switch n.Mode {
	case "static":
		if !hasAddr {
			c.fail(p, `"mode": "static" requires "address", the node's address in CIDR form, e.g. "address": "192.168.1.10/24"`)
		}
	case "", "dhcp":
		if hasAddr {
			c.fail(p.key("address"), `only used with "mode": "static"; add it, or leave "address" out for DHCP`)
		}
		if hasGateway {
			c.fail(p.key("gateway"), `only used with "mode": "static"; add it, or leave "gateway" out for DHCP`)
		}
	}
	return n
}

// checkHostAddress rejects an IPv4 prefix whose address is the network or
// broadcast address of its subnet: "192.168.1.0/24" is almost always a
// network written where the node's own address was meant.
func checkHostAddress(pf netip.Prefix) error {
	a := pf.Addr()
	if !a.Is4() || pf.Bits() > 30 {
		return nil
	}
	if a == pf.Masked().Addr() {
		return fmt.Errorf("%s is the network address of its subnet; give the node's own address, e.g. %s", pf, netip.PrefixFrom(a.Next(), pf.Bits()))
	}
	b := a.As4()
	host := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	if mask := uint32(1)<<(32-pf.Bits()) - 1; host&mask == mask {
		return fmt.Errorf("%s is the broadcast address of its subnet; give the node's own address", pf)
	}
	return nil
}

// stringList checks an array of strings, each with check when not nil. It
// returns a non-nil slice for an array, so "[]" stays distinguishable from
// "absent".
func (c *configChecker) stringList(v *jval, p jsonPath, check func(string) error) []string {
	if v.kind != kindArray {
		c.wrongType(p, "array of strings", v)
		return nil
	}
	out := make([]string, 0, len(v.arr))
	for i, e := range v.arr {
		ep := p.index(i)
		s, ok := c.str(e, ep)
		if !ok {
			continue
		}
		if check != nil {
			if err := check(s); err != nil {
				c.fail(ep, "%v", err)
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

func (c *configChecker) apps(v *jval, p jsonPath) []AppConfig {
	if v.kind != kindArray {
		c.wrongType(p, "array", v)
		return nil
	}
	if len(v.arr) == 0 {
		c.fail(p, `is empty: list at least one app, or leave "apps" out to build the app directory itself`)
		return nil
	}
	apps := make([]AppConfig, 0, len(v.arr))
	for i, e := range v.arr {
		ap := p.index(i)
		var a AppConfig
		members, ok := c.object(e, ap)
		if !ok {
			apps = append(apps, a)
			continue
		}
		hasPath := false
		for _, m := range members {
			if !c.known(m, ap, appKeys, nil) {
				continue
			}
			kp := ap.key(m.key)
			switch m.key {
			case "name":
				if s, ok := c.str(m.val, kp); ok {
					if err := checkAppName(s); err != nil {
						c.fail(kp, "%v", err)
					}
					a.Name = s
				}
			case "path":
				hasPath = true
				if s, ok := c.str(m.val, kp); ok {
					if s == "" {
						c.fail(kp, `must not be empty; use "." for the directory of nodeboot.json`)
					}
					a.Path = s
				}
			case "env":
				a.Env = c.env(m.val, kp)
			case "args":
				a.Args = c.stringList(m.val, kp, func(s string) error {
					if strings.ContainsRune(s, 0) {
						return errors.New("contains a NUL character")
					}
					return nil
				})
			case "port":
				a.Port = c.port(m.val, kp)
				if a.Port == contract.APIPort {
					c.fail(kp, "%d is the port of the node's management API: choose another, e.g. 8080", a.Port)
				}
			case "shell":
				if m.val.kind != kindBool {
					c.wrongType(kp, "boolean", m.val)
					break
				}
				a.Shell = m.val.boolean
			case "allowRemoteInspector":
				if m.val.kind != kindBool {
					c.wrongType(kp, "boolean", m.val)
					break
				}
				a.AllowRemoteInspector = m.val.boolean
			case "limits":
				a.Limits = c.limits(m.val, kp)
			case "sandbox":
				a.Sandbox = c.sandboxConfig(m.val, kp)
			case "healthPath":
				if s, ok := c.str(m.val, kp); ok {
					if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, " \t\r\n?#") || len(s) > 1024 {
						c.fail(kp, `must be an absolute URL path such as "/healthz"`)
					}
					a.HealthPath = s
				}
			case "health":
				if s, ok := c.str(m.val, kp); ok {
					switch s {
					case HealthReady:
						a.Health = s
					case "port":
					default:
						c.fail(kp, `must be "ready" (the app calls require('nodeboot').ready()) or "port" (the default: its port accepts)`)
					}
				}
			case "maxLockSeconds":
				if m.val.kind != kindNumber {
					c.wrongType(kp, "number", m.val)
					break
				}
				n, err := strconv.Atoi(string(m.val.num))
				if err != nil || n < 1 || n > MaxLockSeconds {
					c.fail(kp, "must be a whole number of seconds from 1 to %d", MaxLockSeconds)
					break
				}
				a.MaxLockSeconds = n
			case "persist":
				seen := map[string]bool{}
				a.Persist = c.stringList(m.val, kp, func(s string) error {
					clean, err := PersistPath(s)
					if err != nil {
						return err
					}
					if seen[clean] {
						return fmt.Errorf("%q is listed twice", s)
					}
					seen[clean] = true
					return nil
				})
			}
		}
		if !hasPath {
			c.fail(ap, `missing "path", the app's directory relative to nodeboot.json, e.g. "path": "./api"`)
		}
		apps = append(apps, a)
	}
	// Names and ports given here must be unique; defaults (from package.json,
	// and ports from 8080 up) are checked by Load once they are known.
	names := map[string]int{}
	ports := map[int]int{}
	for i, a := range apps {
		if a.Name != "" {
			if j, dup := names[a.Name]; dup {
				c.fail(p.index(i).key("name"), "%q is already the name of apps[%d]; app names must be unique", a.Name, j)
			} else {
				names[a.Name] = i
			}
		}
		if a.Port != 0 {
			if j, dup := ports[a.Port]; dup {
				c.fail(p.index(i).key("port"), "%d is already the port of apps[%d]; ports must be unique", a.Port, j)
			} else {
				ports[a.Port] = i
			}
		}
	}
	return apps
}

// PersistPath checks one "persist" entry and returns it cleaned, relative
// to the app dir: it must name a directory strictly inside the app.
func PersistPath(s string) (string, error) {
	if s == "" || strings.ContainsRune(s, 0) {
		return "", errors.New(`must be a directory of the app, e.g. "./uploads"`)
	}
	if path.IsAbs(s) {
		return "", errors.New(`must be relative to the app's directory, e.g. "./uploads"`)
	}
	clean := path.Clean(s)
	if clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", errors.New(`must be a directory inside the app, e.g. "./uploads"`)
	}
	if clean == "node_modules" || strings.HasPrefix(clean, "node_modules/") {
		return "", errors.New("node_modules is code, not data: it cannot be persistent")
	}
	return clean, nil
}

// port accepts an integer 1..65535. JSON has only numbers, so 8080.0 counts
// as an integer, as JSON Schema's "integer" says.
func (c *configChecker) port(v *jval, p jsonPath) int {
	if v.kind != kindNumber {
		c.wrongType(p, "integer", v)
		return 0
	}
	f, err := strconv.ParseFloat(string(v.num), 64)
	if err != nil || math.IsInf(f, 0) {
		c.fail(p, "%s is not a port number: use 1-65535", v.num)
		return 0
	}
	if f != math.Trunc(f) {
		c.wrongType(p, "integer", v)
		return 0
	}
	if f < 1 || f > 65535 {
		c.fail(p, "%s is not a port number: use 1-65535", v.num)
		return 0
	}
	return int(f)
}

// inspectorFlags are node's options that make it listen for a debugger,
// each taking [host:]port.
var inspectorFlags = []string{"--inspect", "--inspect-brk", "--inspect-wait", "--inspect-port", "--debug-port"}

// CheckInspector refuses node options (in nodeArgs, or the env's
// NODE_OPTIONS) that open node's inspector on a non-loopback address: the
// inspector runs any code it is sent, as the app, with no authentication,
// so it must be asked for explicitly ("allowRemoteInspector"). A port alone
// binds 127.0.0.1, which only the app's own node can reach.
//
// nodeEnv is the node-wide "env", which the app's own overrides (as when
// it runs).
func CheckInspector(a *App, nodeEnv map[string]string, allow bool) error {
	if allow {
		return nil
	}
	env := nodeEnv
	if _, ok := a.Env["NODE_OPTIONS"]; ok {
		env = a.Env
	}
	var bad []string
	check := func(args []string, where string) {
		for i := 0; i < len(args); i++ {
			name, val, hasVal := strings.Cut(args[i], "=")
			if !contains(inspectorFlags, name) {
				continue
			}
			shown := args[i]
			// --inspect-port and --debug-port also take their value as the
			// next word; --inspect and friends only after "=".
			if !hasVal && (name == "--inspect-port" || name == "--debug-port") && i+1 < len(args) {
				val, hasVal = args[i+1], true
				shown += " " + args[i+1]
				i++
			}
			if hasVal && !loopbackBind(val) {
				bad = append(bad, shown+where)
			}
		}
	}
	check(a.NodeArgs, "")
	if opts, ok := env["NODE_OPTIONS"]; ok {
		check(strings.Fields(opts), " (in NODE_OPTIONS)")
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("app %s: %s would open node's inspector to the network, and whoever reaches it runs code as the app: bind it to 127.0.0.1 (e.g. --inspect=9229), or set \"allowRemoteInspector\": true on the app in nodeboot.json if you mean it", a.Name, strings.Join(bad, ", "))
}

// loopbackBind reports whether an inspector's [host:]port value binds a
// loopback address (no host: node's default, 127.0.0.1).
func loopbackBind(v string) bool {
	host := ""
	if strings.HasPrefix(v, "[") {
		end := strings.IndexByte(v, ']')
		if end < 0 {
			return false
		}
		host = v[1:end]
	} else if i := strings.LastIndexByte(v, ':'); i >= 0 {
		host = v[:i]
	} else if _, err := strconv.Atoi(v); err != nil {
		host = v // a host without a port
	}
	if host == "" || host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
