package spec

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/nodeboot/nodeboot/internal/sandbox"
	"github.com/nodeboot/nodeboot/internal/shell"
)

// SandboxConfig is an app's "sandbox" object.
type SandboxConfig struct {
	// Enabled false runs the app without the sandbox (its own uid only):
	// for measuring the sandbox's cost, or an app it breaks. nil: on.
	Enabled *bool `json:"enabled,omitempty"`
	// Network is "shared" (default: the node's network) or "none"
	// (loopback only).
	Network string `json:"network,omitempty"`
	// AllowSyscalls are names from the deny list the app may call.
	AllowSyscalls []string `json:"allowSyscalls,omitempty"`
}

var (
	limitsKeys  = []string{"memory", "memoryHigh", "cpuWeight", "cpuMax", "pids"}
	sandboxKeys = []string{"enabled", "network", "allowSyscalls"}
)

// minPIDs is the smallest pids limit accepted: node alone runs about a
// dozen threads, each of which counts.
const minPIDs = 16

// minMemory catches a limit written in bytes where MiB were meant; node
// does not start in less.
const minMemory = 16 << 20

func (c *configChecker) limits(v *jval, p jsonPath) sandbox.Limits {
	var l sandbox.Limits
	members, ok := c.object(v, p)
	if !ok {
		return l
	}
	for _, m := range members {
		if !c.known(m, p, limitsKeys, nil) {
			continue
		}
		kp := p.key(m.key)
		switch m.key {
		case "memory":
			l.MemoryMax = c.memSize(m.val, kp)
		case "memoryHigh":
			l.MemoryHigh = c.memSize(m.val, kp)
		case "cpuWeight":
			l.CPUWeight = c.intRange(m.val, kp, 1, 10000, "a cgroup cpu weight: 1-10000, default 100")
		case "cpuMax":
			s, ok := c.str(m.val, kp)
			if !ok {
				break
			}
			pct, err := ParseCPUMax(s)
			if err != nil {
				c.fail(kp, "%v", err)
				break
			}
			l.CPUMax = pct
		case "pids":
			l.PIDs = c.intRange(m.val, kp, minPIDs, 4194304, fmt.Sprintf("a process and thread count: %d or more (node alone runs a dozen threads)", minPIDs))
		}
	}
	if l.MemoryMax > 0 && l.MemoryHigh > l.MemoryMax {
		c.fail(p.key("memoryHigh"), "%s is above \"memory\" (%s): the high mark throttles before the hard limit, so it must be lower", sandbox.FormatBytes(l.MemoryHigh), sandbox.FormatBytes(l.MemoryMax))
	}
	return l
}

// memSize reads "256M", "1.5G", "512MiB" (binary units) or a number of bytes.
func (c *configChecker) memSize(v *jval, p jsonPath) int64 {
	var n int64
	switch v.kind {
	case kindNumber:
		f, err := strconv.ParseFloat(string(v.num), 64)
		if err != nil || f != math.Trunc(f) || f <= 0 || f > math.MaxInt64/2 {
			c.fail(p, "%s is not a size: use e.g. \"256M\" or \"1G\"", v.num)
			return 0
		}
		n = int64(f)
	case kindString:
		var err error
		if n, err = ParseMemory(v.str); err != nil {
			c.fail(p, "%v", err)
			return 0
		}
	default:
		c.wrongType(p, `size such as "256M"`, v)
		return 0
	}
	if n < minMemory {
		c.fail(p, "%d bytes is too little for node; write the size with a unit, e.g. \"256M\" (at least 16M)", n)
		return 0
	}
	return n
}

// ParseMemory reads a memory size: a number with an optional binary unit
// K, M, G or T (also written KiB, MB...), e.g. "256M", "1.5G".
func ParseMemory(s string) (int64, error) {
	// The grammar first, the schema's own pattern: ParseFloat alone also
	// takes "2e7", "5." or "0x1p4", and the unit trimming below took "5iB".
	if !sizeRE.MatchString(s) {
		return 0, fmt.Errorf("%q is not a size: use e.g. \"256M\" or \"1G\"", s)
	}
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(strings.TrimSuffix(u, "B"), "I")
	mult := int64(1)
	if u != "" {
		switch u[len(u)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			u = u[:len(u)-1]
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(u), 64)
	// A size that rounds to less than one byte (".1") is as meaningless
	// as zero, so it is refused rather than silently becoming 0.
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || f*float64(mult) < 1 || f*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("%q is not a size: use e.g. \"256M\" or \"1G\"", s)
	}
	return int64(f * float64(mult)), nil
}

// ParseCPUMax reads "50%" (half of one CPU) or "200%" (two CPUs).
func ParseCPUMax(s string) (int, error) {
	num, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if !ok || err != nil || n < 1 || n > 100000 {
		return 0, fmt.Errorf("%q is not a CPU share: use a percentage of one CPU, e.g. \"50%%\" or \"200%%\" for two CPUs", s)
	}
	return n, nil
}

func (c *configChecker) intRange(v *jval, p jsonPath, lo, hi int, what string) int {
	if v.kind != kindNumber {
		c.wrongType(p, "integer", v)
		return 0
	}
	f, err := strconv.ParseFloat(string(v.num), 64)
	if err != nil || f != math.Trunc(f) {
		c.wrongType(p, "integer", v)
		return 0
	}
	if f < float64(lo) || f > float64(hi) {
		c.fail(p, "%s is out of range: %s", v.num, what)
		return 0
	}
	return int(f)
}

func (c *configChecker) sandboxConfig(v *jval, p jsonPath) SandboxConfig {
	var sc SandboxConfig
	members, ok := c.object(v, p)
	if !ok {
		return sc
	}
	for _, m := range members {
		if !c.known(m, p, sandboxKeys, nil) {
			continue
		}
		kp := p.key(m.key)
		switch m.key {
		case "enabled":
			if m.val.kind != kindBool {
				c.wrongType(kp, "boolean", m.val)
				break
			}
			b := m.val.boolean
			sc.Enabled = &b
		case "network":
			if s, ok := c.str(m.val, kp); ok {
				if s != "shared" && s != "none" {
					c.fail(kp, `%q is not a sandbox network: use "shared" (the node's network, default) or "none" (loopback only)`, s)
				}
				sc.Network = s
			}
		case "allowSyscalls":
			seen := map[string]bool{}
			sc.AllowSyscalls = c.stringList(m.val, kp, func(s string) error {
				if !sandbox.IsDenied(s) {
					return fmt.Errorf("%q is not denied by the sandbox, so there is nothing to allow; the denied calls are: %s", s, strings.Join(append(sandbox.Denied(nil), "clone3", "socket", "clone"), " "))
				}
				if seen[s] {
					return fmt.Errorf("%q is listed twice", s)
				}
				seen[s] = true
				return nil
			})
		}
	}
	if sc.Enabled != nil && !*sc.Enabled && (sc.Network != "" || sc.AllowSyscalls != nil) {
		c.fail(p, `"enabled": false turns the whole sandbox off; leave out "network" and "allowSyscalls", which would have no effect`)
	}
	return sc
}

// runtimeSandbox turns the config's sandbox settings into runtime.json's.
func runtimeSandbox(sc SandboxConfig) sandbox.Options {
	return sandbox.Options{
		Disabled:      sc.Enabled != nil && !*sc.Enabled,
		NetworkNone:   sc.Network == "none",
		AllowSyscalls: slices.Clone(sc.AllowSyscalls),
	}
}

// Where the sandbox keeps an app from looking.
var (
	sandboxConfine = []string{AppsDir, "/data"}
	sandboxHide    = []string{"/etc/nodeboot"}
)

// SandboxSpec is the sandbox of the app without its command (the
// supervisor fills that in at each start); nil when the config turned it off.
func (a *RuntimeApp) SandboxSpec() *sandbox.Spec {
	if a.Sandbox.Disabled {
		return nil
	}
	confine := slices.Clone(sandboxConfine)
	if !a.Shell {
		// Its /bin/sh and /usr/bin applets then dangle: ENOENT, as
		// without any shell in the image.
		confine = append(confine, shell.Dir)
	}
	return &sandbox.Spec{
		App:           a.Name,
		UID:           uint32(a.UID),
		GID:           uint32(a.GID),
		CodeDir:       a.Dir,
		StateDir:      a.DataDir,
		Persist:       slices.Clone(a.Persist),
		Confine:       confine,
		Hide:          slices.Clone(sandboxHide),
		NetworkNone:   a.Sandbox.NetworkNone,
		AllowSyscalls: slices.Clone(a.Sandbox.AllowSyscalls),
		Limits:        a.Limits,
	}
}
