package supervise

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nodeboot/nodeboot/internal/crash"
	"github.com/nodeboot/nodeboot/internal/sandbox"
)

// cgroupRoot is where app cgroups go; a variable for the tests, whose
// hosts may mount cgroup2 elsewhere.
var cgroupRoot = sandbox.CgroupRoot

// startSandboxed starts the init binary again as the sandbox helper
// (internal/sandbox), in new namespaces and straight into the app's cgroup
// (CLONE_INTO_CGROUP: no window in which the app runs unlimited). The
// helper gets the spec on fd 3 and reports node's wait status on fd 4, so
// that the service sees node's exit, not the helper's.
func (o *osStarter) startSandboxed(r *Reaper, spec StartSpec) (Process, error) {
	sb := *spec.Sandbox
	sb.Path, sb.Args, sb.Dir, sb.Env = spec.Path, spec.Args, spec.Dir, spec.Env
	sb.CodeDir = spec.Dir // a deployed version's dir differs from the image's
	sb.UID, sb.GID = spec.UID, spec.GID
	payload, err := json.Marshal(&sb)
	if err != nil {
		return nil, fmt.Errorf("encoding the sandbox spec: %w", err)
	}
	cg, err := sandbox.PrepareCgroup(cgroupRoot, sb.App, sb.Limits)
	if err != nil {
		return nil, err
	}
	oomBefore := cg.OOMKills()
	cgfd, err := cg.Open()
	if err != nil {
		return nil, err
	}
	defer syscall.Close(cgfd)
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the init binary for the sandbox helper: %w", err)
	}

	var toClose []*os.File
	closeAll := func() {
		for _, f := range toClose {
			f.Close()
		}
	}
	pipe := func() (*os.File, *os.File, error) {
		pr, pw, err := os.Pipe()
		if err == nil {
			toClose = append(toClose, pr, pw)
		}
		return pr, pw, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", os.DevNull, err)
	}
	toClose = append(toClose, devnull)
	outR, outW, err1 := pipe()
	errR, errW, err2 := pipe()
	specR, specW, err3 := pipe()
	statR, statW, err4 := pipe()
	for _, e := range []error{err1, err2, err3, err4} {
		if e != nil {
			closeAll()
			return nil, fmt.Errorf("creating pipes for the sandbox helper: %w", e)
		}
	}
	flags := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	if sb.NetworkNone {
		flags |= syscall.CLONE_NEWNET
	}
	attr := &os.ProcAttr{
		Dir:   "/",
		Env:   []string{},
		Files: []*os.File{devnull, outW, errW, specR, statW},
		Sys: &syscall.SysProcAttr{
			Setpgid:     true,
			Cloneflags:  flags,
			UseCgroupFD: true,
			CgroupFD:    cgfd,
		},
	}
	var proc *os.Process
	pid, exited, err := r.Spawn(func() (int, error) {
		p, err := os.StartProcess(exe, []string{exe, sandbox.HelperArg, sb.App}, attr)
		if err != nil {
			return 0, err
		}
		proc = p
		return p.Pid, nil
	})
	// Only the child keeps these ends.
	for _, f := range []*os.File{devnull, outW, errW, specR, statW} {
		f.Close()
	}
	if err != nil {
		outR.Close()
		errR.Close()
		specW.Close()
		statR.Close()
		return nil, fmt.Errorf("starting the sandbox helper for %s: %w", spec.Path, err)
	}
	proc.Release()
	crash.Go(sb.App+" sandbox spec", func() {
		// A helper that dies before reading gets EPIPE here, and its exit
		// status says why.
		specW.Write(payload)
		specW.Close()
	})
	out := make(chan ExitStatus, 1)
	helperDone := make(chan struct{})
	var watchdogKilled atomic.Bool
	if sb.Limits.MemoryMax > 0 && !cg.Memory {
		crash.Go(sb.App+" memory watchdog", func() { watchMemory(cg, pid, sb.Limits.MemoryMax, helperDone, &watchdogKilled) })
	}
	crash.Go(sb.App+" exit status", func() {
		st := <-exited
		close(helperDone)
		var b [4]byte
		if _, err := io.ReadFull(statR, b[:]); err == nil {
			st = exitStatusOf(syscall.WaitStatus(binary.LittleEndian.Uint32(b[:])))
		} else if st.Code == sandbox.ExitSetupFailed {
			st.SandboxFailed = true
		}
		statR.Close()
		if cg.OOMKills() > oomBefore {
			st.OOMKilled, st.MemoryLimit = true, sb.Limits.MemoryMax
		}
		if watchdogKilled.Load() {
			st.OOMWatchdog, st.MemoryLimit = true, sb.Limits.MemoryMax
		}
		out <- st
	})
	return &osProcess{pid: pid, stdout: outR, stderr: errR, exited: out}, nil
}

// watchInterval is how often the memory watchdog measures an app. An app
// can overshoot its limit by what it allocates in one interval.
const watchInterval = 100 * time.Millisecond

// watchMemory enforces a memory limit where the kernel cannot (no
// CONFIG_MEMCG, as in the default kernel): it kills the whole cgroup once
// the app's memory passes max, like the kernel's OOM killer with
// memory.oom.group would.
func watchMemory(cg *sandbox.Cgroup, pid int, max int64, done <-chan struct{}, killed *atomic.Bool) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if n, err := cg.PSS(); err == nil && n > max {
			killed.Store(true)
			// SIGKILL to the helper, the PID namespace's init: the
			// kernel then kills every process of the namespace, which
			// no app process can leave. Not cgroup.kill: after one,
			// every later helper cloned into that cgroup was killed
			// within milliseconds of its start (seen on Linux 7.1).
			_ = syscall.Kill(pid, syscall.SIGKILL)
			return
		}
	}
}
