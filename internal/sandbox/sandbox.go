// Package sandbox isolates one app process: its own uid, no capabilities,
// no_new_privs, a mount namespace that shows only its own code and state,
// PID/IPC/UTS (and optionally network) namespaces, a cgroup with limits,
// Landlock and a seccomp filter.
//
// PID 1 cannot run code between fork and exec (Go's os/exec has no hook), so
// it starts itself again as a helper (HelperArg) inside the new namespaces
// and cgroup; the helper builds the mount namespace, drops privileges,
// restricts itself, and starts node as its child. It stays the namespace's
// PID 1, so node never is: it reaps orphans, forwards TERM/INT/HUP to node
// and reports node's wait status back to the supervisor. docs/sandbox.md
// describes what the app sees.
package sandbox

import (
	"fmt"
	"slices"
	"strings"
)

// HelperArg is argv[1] of the init binary when it runs as the sandbox helper.
const HelperArg = "sandbox-exec"

// Spec is everything the helper needs to start one sandboxed process. PID 1
// fills it at each start: the code dir changes with every deploy.
type Spec struct {
	App      string `json:"app"`
	UID      uint32 `json:"uid"`
	GID      uint32 `json:"gid"`
	CodeDir  string `json:"codeDir"`  // read-only, e.g. /apps/hello or /data/apps/hello/<digest>
	StateDir string `json:"stateDir"` // writable, e.g. /data/state/hello
	// Persist are dirs relative to CodeDir that stay writable (PID 1 has
	// bind-mounted them from StateDir/persist before the start).
	Persist []string `json:"persist,omitempty"`
	// Confine are dirs whose contents the app does not see, except for
	// CodeDir and StateDir when they lie inside (/apps, /data).
	Confine []string `json:"confine,omitempty"`
	// Hide are dirs replaced by an empty read-only directory
	// (/etc/nodeboot: the management credentials and the other apps' env).
	Hide []string `json:"hide,omitempty"`
	// NetworkNone gives the app a network namespace of its own with only
	// loopback.
	NetworkNone bool `json:"networkNone,omitempty"`
	// AllowSyscalls are names of the deny list the app may use anyway.
	AllowSyscalls []string `json:"allowSyscalls,omitempty"`
	Limits        Limits   `json:"limits,omitzero"`

	// The command: Path Args... in Dir with Env.
	Path string   `json:"path"`
	Args []string `json:"args,omitempty"`
	Dir  string   `json:"dir"`
	Env  []string `json:"env,omitempty"`
}

// Limits are an app's cgroup v2 limits; zero means no limit (PIDs: the
// default, DefaultPIDs).
type Limits struct {
	MemoryMax  int64 `json:"memoryMax,omitempty"`  // bytes, memory.max
	MemoryHigh int64 `json:"memoryHigh,omitempty"` // bytes, memory.high
	CPUWeight  int   `json:"cpuWeight,omitempty"`  // 1-10000, cpu.weight
	CPUMax     int   `json:"cpuMax,omitempty"`     // percent of one CPU, cpu.max
	PIDs       int   `json:"pids,omitempty"`       // pids.max
}

// DefaultPIDs is pids.max when the config sets none: room for node's own
// threads (about a dozen), many workers and children, but not a fork bomb.
const DefaultPIDs = 1024

// PIDsMax is the effective pids.max.
func (l Limits) PIDsMax() int {
	if l.PIDs > 0 {
		return l.PIDs
	}
	return DefaultPIDs
}

// Options are the sandbox settings of an app as runtime.json carries them.
// The zero value is the full sandbox.
type Options struct {
	// Disabled runs the app like before the sandbox existed: its own uid
	// and process group only. Meant for measuring the sandbox's cost.
	Disabled      bool     `json:"disabled,omitempty"`
	NetworkNone   bool     `json:"networkNone,omitempty"`
	AllowSyscalls []string `json:"allowSyscalls,omitempty"`
}

// A SyscallGroup is a set of denied system calls with the reason, named like
// systemd's filter sets where one matches.
type SyscallGroup struct {
	Name, Why string
	Syscalls  []string
}

// DenyGroups is the deny list. Every call in it fails with EPERM (clone3
// with ENOSYS, see seccomp_linux.go); everything else is allowed. Names that
// an architecture lacks are skipped there.
var DenyGroups = []SyscallGroup{
	{"@mount", "file system mounts and root changes", []string{
		"mount", "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
		"move_mount", "open_tree", "open_tree_attr", "mount_setattr"}},
	{"@namespaces", "new or other namespaces (user namespaces give capabilities back)", []string{
		"unshare", "setns"}},
	{"@module", "kernel modules", []string{"init_module", "finit_module", "delete_module", "create_module", "query_module"}},
	{"@reboot", "reboot and kexec", []string{"reboot", "kexec_load", "kexec_file_load"}},
	{"@swap", "swap", []string{"swapon", "swapoff"}},
	{"@debug", "tracing and reading other processes", []string{
		"ptrace", "process_vm_readv", "process_vm_writev", "perf_event_open", "kcmp", "pidfd_getfd", "lookup_dcookie"}},
	{"@bpf", "eBPF programs", []string{"bpf"}},
	{"@keyring", "the kernel keyring", []string{"keyctl", "add_key", "request_key"}},
	{"@raw-io", "port I/O", []string{"iopl", "ioperm", "pciconfig_read", "pciconfig_write", "pciconfig_iobase"}},
	{"@clock", "setting the clock", []string{"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime"}},
	{"@privileged", "host-wide administration", []string{
		"sethostname", "setdomainname", "acct", "quotactl", "quotactl_fd", "nfsservctl", "vhangup", "syslog",
		"open_by_handle_at", "name_to_handle_at", "fanotify_init", "userfaultfd", "uselib"}},
	{"@cpu-emulation", "x86 legacy modes", []string{"modify_ldt", "vm86", "vm86old"}},
	{"@io_uring", "io_uring, whose bugs were the kernel's most exploited; libuv falls back to its thread pool", []string{
		"io_uring_setup", "io_uring_enter", "io_uring_register"}},
}

// ArgRules are the calls denied only for some arguments (EPERM too).
var ArgRules = []string{
	"socket(AF_PACKET, ...) and socket(AF_INET or AF_INET6, SOCK_RAW, ...): raw sockets (raw netlink stays allowed)",
	"clone(CLONE_NEWUSER ...): new user namespaces",
	"clone3: fails with ENOSYS, so that glibc and libuv fall back to clone, whose flags the filter can read",
}

// Denied returns the denied names, minus allow, sorted.
func Denied(allow []string) []string {
	var out []string
	for _, g := range DenyGroups {
		for _, s := range g.Syscalls {
			if !slices.Contains(allow, s) {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return out
}

// IsDenied reports whether name is on the deny list, so a config can allow it.
func IsDenied(name string) bool {
	for _, g := range DenyGroups {
		if slices.Contains(g.Syscalls, name) {
			return true
		}
	}
	return name == "clone3" || name == "socket" || name == "clone"
}

// Explain describes in a few lines what an app may do, for
// `nodeboot build --explain`.
func (s *Spec) Explain() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  runs as uid %d gid %d (no supplementary groups), no capabilities, no_new_privs\n", s.UID, s.GID)
	fmt.Fprintf(&b, "  read-only:  / (the image), %s (its code)\n", s.CodeDir)
	rw := []string{s.StateDir, "/tmp (private)", "/dev/shm (private)"}
	for _, p := range s.Persist {
		rw = append(rw, s.CodeDir+"/"+p+" (persist)")
	}
	fmt.Fprintf(&b, "  writable:   %s\n", strings.Join(rw, ", "))
	hidden := []string{}
	for _, c := range s.Confine {
		hidden = append(hidden, c+"/* except its own")
	}
	hidden = append(hidden, s.Hide...)
	fmt.Fprintf(&b, "  hidden:     %s\n", strings.Join(hidden, ", "))
	ns := "mount, pid, ipc, uts, cgroup"
	net := "shared with the node"
	if s.NetworkNone {
		ns += ", network"
		net = "none (loopback only)"
	}
	fmt.Fprintf(&b, "  namespaces: %s; network: %s\n", ns, net)
	fmt.Fprintf(&b, "  syscalls denied (EPERM): %s; raw sockets, clone(CLONE_NEWUSER); clone3 → ENOSYS\n", strings.Join(Denied(s.AllowSyscalls), " "))
	if len(s.AllowSyscalls) > 0 {
		fmt.Fprintf(&b, "  syscalls allowed by config: %s\n", strings.Join(s.AllowSyscalls, " "))
	}
	fmt.Fprintf(&b, "  limits:     %s\n", s.Limits)
	b.WriteString("  Landlock:   reads only the image's system dirs and its own dirs; writes only its writable dirs\n")
	return b.String()
}

func (l Limits) String() string {
	parts := []string{}
	if l.MemoryMax > 0 {
		parts = append(parts, "memory "+FormatBytes(l.MemoryMax))
	} else {
		parts = append(parts, "memory unlimited")
	}
	if l.MemoryHigh > 0 {
		parts = append(parts, "memoryHigh "+FormatBytes(l.MemoryHigh))
	}
	if l.CPUWeight > 0 {
		parts = append(parts, fmt.Sprintf("cpuWeight %d", l.CPUWeight))
	}
	if l.CPUMax > 0 {
		parts = append(parts, fmt.Sprintf("cpuMax %d%%", l.CPUMax))
	}
	parts = append(parts, fmt.Sprintf("pids %d", l.PIDsMax()))
	return strings.Join(parts, ", ")
}

// FormatBytes renders a limit the way the config writes it: "256 MiB".
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
