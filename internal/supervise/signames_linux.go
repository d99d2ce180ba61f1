package supervise

import "syscall"

// signalNames maps the Linux signals to their names. The table is kept here
// rather than pulled from golang.org/x/sys because it is all the package
// needs from there.
var signalNames = map[syscall.Signal]string{
	syscall.SIGABRT:   "ABRT",
	syscall.SIGALRM:   "ALRM",
	syscall.SIGBUS:    "BUS",
	syscall.SIGCHLD:   "CHLD",
	syscall.SIGCONT:   "CONT",
	syscall.SIGFPE:    "FPE",
	syscall.SIGHUP:    "HUP",
	syscall.SIGILL:    "ILL",
	syscall.SIGINT:    "INT",
	syscall.SIGIO:     "IO",
	syscall.SIGKILL:   "KILL",
	syscall.SIGPIPE:   "PIPE",
	syscall.SIGPROF:   "PROF",
	syscall.SIGPWR:    "PWR",
	syscall.SIGQUIT:   "QUIT",
	syscall.SIGSEGV:   "SEGV",
	syscall.SIGSTKFLT: "STKFLT",
	syscall.SIGSTOP:   "STOP",
	syscall.SIGSYS:    "SYS",
	syscall.SIGTERM:   "TERM",
	syscall.SIGTRAP:   "TRAP",
	syscall.SIGTSTP:   "TSTP",
	syscall.SIGTTIN:   "TTIN",
	syscall.SIGTTOU:   "TTOU",
	syscall.SIGURG:    "URG",
	syscall.SIGUSR1:   "USR1",
	syscall.SIGUSR2:   "USR2",
	syscall.SIGVTALRM: "VTALRM",
	syscall.SIGWINCH:  "WINCH",
	syscall.SIGXCPU:   "XCPU",
	syscall.SIGXFSZ:   "XFSZ",
}

// Real-time signal range as seen by processes (glibc reserves 32 and 33).
const (
	sigRTMin syscall.Signal = 34
	sigRTMax syscall.Signal = 64
)
