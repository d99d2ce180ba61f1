package supervise

import (
	"fmt"
	"syscall"

	"github.com/nodeboot/nodeboot/internal/sandbox"
)

// ExitStatus is how a process ended, decoded from the kernel's wait status
// into a form that can be logged and tested without platform code.
type ExitStatus struct {
	// Code is the exit code when the process exited normally, -1 otherwise.
	Code int
	// Signal is the signal that killed the process, 0 when it exited.
	Signal syscall.Signal
	// CoreDumped reports whether the kernel wrote a core for the signal.
	CoreDumped bool
	// OOMKilled reports that the kernel's OOM killer ended the process
	// because its cgroup reached MemoryLimit (bytes; 0 if unknown).
	OOMKilled   bool
	MemoryLimit int64
	// OOMWatchdog: the kernel has no memory cgroup, and PID 1's watchdog
	// killed the app for going over MemoryLimit.
	OOMWatchdog bool
	// SandboxFailed: the sandbox helper could not build the sandbox, and
	// node never ran; the helper's reason is the app's last stderr line.
	SandboxFailed bool
	// FaultFile is, for SIGILL, the base name of the file whose code used
	// the instruction, from the kernel's log ("" when not found).
	FaultFile string
}

// Exited reports whether the process exited on its own (as opposed to being
// killed by a signal).
func (e ExitStatus) Exited() bool { return e.Signal == 0 }

// String gives the reason in the words used on the console, e.g. "exited with
// status 1" or "killed by signal SEGV (core dumped)".
func (e ExitStatus) String() string {
	if e.SandboxFailed {
		return "the sandbox could not be set up (the reason is the app's line before this one); node did not run"
	}
	if e.OOMWatchdog {
		return fmt.Sprintf("killed by the OOM watchdog (memory limit %s; this kernel has no memory cgroup, so PID 1 measures the app's memory)", sandbox.FormatBytes(e.MemoryLimit))
	}
	if e.OOMKilled {
		if e.MemoryLimit > 0 {
			return fmt.Sprintf("killed by the kernel's OOM killer (memory limit %s)", sandbox.FormatBytes(e.MemoryLimit))
		}
		return "killed by the kernel's OOM killer"
	}
	if e.Signal == 0 {
		return fmt.Sprintf("exited with status %d", e.Code)
	}
	s := "killed by signal " + SignalName(e.Signal)
	if e.CoreDumped {
		s += " (core dumped)"
	}
	if e.Signal == syscall.SIGILL {
		// On x86 and arm64 SIGILL almost always means a prebuilt binary
		// compiled for a newer CPU than this one (issue 17: an addon
		// built for x86-64-v2 on QEMU's qemu64).
		s += ": its code used an instruction this CPU does not have"
		if e.FaultFile != "" {
			s += " (in " + e.FaultFile + ")"
		}
		s += "; run it on a newer CPU (under QEMU: a CPU model with the instruction, as nodeboot run gives) or use a build of the package for this CPU"
	}
	return s
}

// SignalName returns the short conventional name of sig without the "SIG"
// prefix ("SEGV", "TERM"), which is what operators grep for; Go's own
// Signal.String gives prose ("segmentation fault"). Unknown signals are
// rendered by number.
func SignalName(sig syscall.Signal) string {
	if name, ok := signalNames[sig]; ok {
		return name
	}
	if sig >= sigRTMin && sig <= sigRTMax {
		return fmt.Sprintf("RTMIN+%d", int(sig-sigRTMin))
	}
	return fmt.Sprintf("%d", int(sig))
}
