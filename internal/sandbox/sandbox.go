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
	// APIDir, when set, is the dir of the app's socket to PID 1
	// (internal/appapi): kept visible, read-only, inside a confined dir.
	APIDir string `json:"apiDir,omitempty"`
	// Confine are dirs whose contents the app does not see, except for
	// CodeDir, StateDir and APIDir when they lie inside (/apps, /data,
	// /run/nodeboot/app).
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

// Allowed is the filter's allow list: the calls an app may make (a few of
// them only with some arguments, see ArgRules). It is Docker's default
// profile for a process without capabilities, less io_uring, memfd and
// execveat, the clock and the NUMA calls, plus the calls newer than that
// profile which only wait, read or restrict (futex2, cachestat, mseal,
// the *xattrat family). Every call node makes is on it: docs/sandbox.md
// has the measurement, and the sandbox test runs node's workload under the
// filter. A call not on it fails with EPERM; a call the filter's syscall
// table does not know at all (a kernel newer than the table) with ENOSYS,
// as on an older kernel, so that glibc and libuv fall back. Names an
// architecture lacks are skipped there.
var Allowed = []string{
	"accept", "accept4", "access", "alarm", "arch_prctl", "bind", "brk", "cachestat", "capget", "capset",
	"chdir", "chmod", "chown", "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
	"clock_nanosleep", "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat",
	"dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
	"epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "exit", "exit_group",
	"faccessat", "faccessat2", "fadvise64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
	"fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork",
	"fremovexattr", "fsetxattr", "fstat", "fstatat", "fstatfs", "fsync", "ftruncate", "futex", "futex_requeue",
	"futex_time64", "futex_wait", "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd", "getdents",
	"getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer", "getpeername", "getpgid", "getpgrp",
	"getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresuid", "getrlimit", "get_robust_list",
	"getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid",
	"getxattr", "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
	"io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get",
	"ioprio_set", "io_setup", "io_submit", "kill", "landlock_add_rule", "landlock_create_ruleset",
	"landlock_restrict_self", "lchown", "lgetxattr", "link", "linkat", "listen", "listxattr", "listxattrat",
	"llistxattr", "lremovexattr", "lseek", "lsetxattr", "lstat", "madvise", "map_shadow_stack", "membarrier",
	"mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mprotect",
	"mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
	"mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync",
	"munlock", "munlockall", "munmap", "nanosleep", "newfstatat", "open", "openat", "openat2", "pause",
	"pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
	"ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease",
	"pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink",
	"readlinkat", "readv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages",
	"removexattr", "removexattrat", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
	"rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
	"rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
	"sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
	"sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
	"sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
	"semtimedop", "semtimedop_time64", "sendfile", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsuid",
	"setgid", "setgroups", "setitimer", "setpgid", "setpriority", "setregid", "setresgid", "setresuid",
	"setreuid", "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address",
	"setuid", "setxattr", "setxattrat", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
	"signalfd", "signalfd4", "socketpair", "splice", "stat", "statfs", "statx", "symlink", "symlinkat", "sync",
	"sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
	"timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64",
	"timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
	"tkill", "truncate", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64",
	"utimes", "vfork", "vmsplice", "wait4", "waitid", "write", "writev",
}

// DenyGroups name every call the filter refuses, with the reason: together
// with Allowed and the argument rules they cover the whole syscall table of
// both image architectures (a test checks), so that each refused call can
// be allowed back by name in the config. Every call in them fails with
// EPERM (clone3 with ENOSYS, see ArgRules).
var DenyGroups = []SyscallGroup{
	{"@mount", "file system mounts and root changes", []string{
		"mount", "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
		"move_mount", "open_tree", "open_tree_attr", "mount_setattr", "listmount", "statmount"}},
	{"@namespaces", "new or other namespaces (user namespaces give capabilities back)", []string{
		"unshare", "setns"}},
	{"@module", "kernel modules", []string{"init_module", "finit_module", "delete_module", "create_module", "query_module"}},
	{"@reboot", "reboot and kexec", []string{"reboot", "kexec_load", "kexec_file_load"}},
	{"@swap", "swap", []string{"swapon", "swapoff"}},
	{"@debug", "tracing and reading or steering other processes", []string{
		"ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "perf_event_open", "kcmp",
		"pidfd_getfd", "lookup_dcookie", "uretprobe"}},
	{"@bpf", "eBPF programs", []string{"bpf"}},
	{"@keyring", "the kernel keyring", []string{"keyctl", "add_key", "request_key"}},
	{"@raw-io", "port I/O", []string{"iopl", "ioperm", "pciconfig_read", "pciconfig_write", "pciconfig_iobase"}},
	{"@clock", "setting the clock", []string{"settimeofday", "clock_settime", "clock_settime64", "clock_adjtime",
		"clock_adjtime64", "adjtimex", "stime"}},
	{"@privileged", "host-wide administration", []string{
		"sethostname", "setdomainname", "acct", "quotactl", "quotactl_fd", "nfsservctl", "vhangup", "syslog",
		"open_by_handle_at", "name_to_handle_at", "fanotify_init", "userfaultfd", "uselib",
		"lsm_get_self_attr", "lsm_set_self_attr", "lsm_list_modules"}},
	{"@cpu-emulation", "x86 legacy modes", []string{"modify_ldt", "vm86", "vm86old"}},
	{"@io_uring", "io_uring, whose bugs were the kernel's most exploited; libuv falls back to its thread pool", []string{
		"io_uring_setup", "io_uring_enter", "io_uring_register"}},
	{"@fileless-exec", "running code that never was a file on a mount: a memfd escapes the noexec of every writable dir", []string{
		"memfd_create", "memfd_secret", "execveat"}},
	{"@personality", "execution domains that turn off ASLR or make readable memory executable; querying and PER_LINUX stay allowed", []string{
		"personality"}},
	{"@numa", "NUMA memory placement, of no use on a node and a window on other processes' memory", []string{
		"get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind", "migrate_pages", "move_pages"}},
	{"@obsolete", "calls of old kernels or unimplemented", []string{
		"_sysctl", "sysfs", "ustat", "get_kernel_syms", "getpmsg", "putpmsg", "afs_syscall", "tuxcall",
		"security", "vserver", "arch_specific_syscall"}},
}

// ArgRules are the calls allowed only for some arguments (EPERM for the
// others). Each compares the low 32 bits of an int argument only: the
// kernel truncates those, so the high 32 bits must not decide anything.
var ArgRules = []string{
	"socket: only AF_UNIX, AF_INET and AF_INET6 (SOCK_STREAM and SOCK_DGRAM) and AF_NETLINK (NETLINK_ROUTE); no packet, raw, vsock or other families",
	"clone: no CLONE_NEW* namespace flags",
	"personality: only PER_LINUX, PER_LINUX32, UNAME26 and the query 0xffffffff",
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
	// Whole sets by name (docs/sandbox.md lists their calls), a set the
	// config opened in part by its remaining calls.
	var denied []string
	for _, g := range DenyGroups {
		left := slices.DeleteFunc(slices.Clone(g.Syscalls), func(n string) bool { return slices.Contains(s.AllowSyscalls, n) })
		switch {
		case len(left) == len(g.Syscalls):
			denied = append(denied, g.Name)
		case len(left) > 0:
			denied = append(denied, left...)
		}
	}
	fmt.Fprintf(&b, "  syscalls:   an allow list of %d calls; denied (EPERM): %s; sockets other than unix, tcp, udp and netlink route; clone with namespace flags; clone3 → ENOSYS\n", len(Allowed), strings.Join(denied, " "))
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
