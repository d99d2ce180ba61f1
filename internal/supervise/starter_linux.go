package supervise

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
)

// NewStarter returns the Starter that runs real processes, with their exit
// collected by r. A nil r means the process's active Reaper (one is started
// if there is none).
func NewStarter(r *Reaper) Starter { return &osStarter{reaper: r} }

func defaultStarter() Starter { return &osStarter{} }

type osStarter struct {
	reaper *Reaper
}

func (o *osStarter) Start(spec StartSpec) (Process, error) {
	r := o.reaper
	if r == nil {
		var err error
		if r, err = defaultReaper(); err != nil {
			return nil, err
		}
	}

	if spec.Sandbox != nil {
		return o.startSandboxed(r, spec)
	}

	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", os.DevNull, err)
	}
	defer devnull.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("creating stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("creating stderr pipe: %w", err)
	}

	attr := &os.ProcAttr{
		Dir:   spec.Dir,
		Env:   spec.Env,
		Files: []*os.File{devnull, outW, errW},
		Sys:   sysProcAttr(spec.UID, spec.GID),
	}
	argv := append([]string{spec.Path}, spec.Args...)
	var proc *os.Process
	pid, exited, err := r.Spawn(func() (int, error) {
		p, err := os.StartProcess(spec.Path, argv, attr)
		if err != nil {
			return 0, err
		}
		proc = p
		return p.Pid, nil
	})
	// The child has its own copies of the write ends; ours would keep the
	// readers from ever seeing EOF.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("starting %s: %w", spec.Path, err)
	}
	// The exit status comes from the reaper; release the pidfd the os
	// package may hold for the process instead of leaking it until GC.
	proc.Release()
	return &osProcess{pid: pid, stdout: outR, stderr: errR, exited: exited}, nil
}

// sysProcAttr puts the child in a process group of its own, so that stopping
// a service reaches everything it spawned (node workers, shell pipelines)
// without touching PID 1 or other services, and drops to the app's user.
func sysProcAttr(uid, gid uint32) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if (uid != 0 || gid != 0) && !(uint32(os.Getuid()) == uid && uint32(os.Getgid()) == gid) {
		// An empty (non-nil) Groups makes the child call setgroups(0): root's
		// supplementary groups must not leak into the app, which
		// NoSetGroups would allow. Skipped when there is nothing to change,
		// since setgroups fails for an unprivileged parent.
		attr.Credential = &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}
	}
	return attr
}

type osProcess struct {
	pid            int
	stdout, stderr *os.File
	exited         <-chan ExitStatus
}

func (p *osProcess) PID() int                  { return p.pid }
func (p *osProcess) Stdout() io.ReadCloser     { return p.stdout }
func (p *osProcess) Stderr() io.ReadCloser     { return p.stderr }
func (p *osProcess) Exited() <-chan ExitStatus { return p.exited }

// Signal signals the whole process group. The group's ID is the leader's
// PID, which the kernel does not hand out again while any member of the group
// is alive, so this cannot hit an unrelated process while the group exists.
func (p *osProcess) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(-p.pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signalling process group %d: %w", p.pid, ErrNoProcess)
		}
		return fmt.Errorf("signalling process group %d with %s: %w", p.pid, SignalName(sig), err)
	}
	return nil
}
