package supervise

import (
	"syscall"
	"testing"
)

func TestExitStatusOOM(t *testing.T) {
	tests := []struct {
		st   ExitStatus
		want string
	}{
		{ExitStatus{Code: -1, Signal: syscall.SIGKILL, OOMKilled: true, MemoryLimit: 256 << 20}, "killed by the kernel's OOM killer (memory limit 256 MiB)"},
		{ExitStatus{Code: -1, Signal: syscall.SIGKILL, OOMKilled: true}, "killed by the kernel's OOM killer"},
		{ExitStatus{Code: -1, Signal: syscall.SIGKILL, OOMWatchdog: true, MemoryLimit: 1 << 30}, "killed by the OOM watchdog (memory limit 1 GiB; this kernel has no memory cgroup, so PID 1 measures the app's memory)"},
		{ExitStatus{Code: -1, Signal: syscall.SIGKILL}, "killed by signal KILL"},
		{ExitStatus{Code: 125, SandboxFailed: true}, "the sandbox could not be set up (the reason is the app's line before this one); node did not run"},
	}
	for _, tc := range tests {
		if got := tc.st.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.st, got, tc.want)
		}
	}
}
