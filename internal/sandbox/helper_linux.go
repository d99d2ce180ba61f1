package sandbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/psx"
)

// The helper's extra fds, as the starter passes them (os.ProcAttr.Files).
const (
	SpecFD   = 3 // the JSON Spec, read to EOF
	StatusFD = 4 // the helper writes node's 4-byte wait status here before exiting
)

// ExitSetupFailed is the helper's exit status when the sandbox could not be
// built; its reason is on stderr, i.e. in the app's log.
const ExitSetupFailed = 125

// HelperMain is the helper's main: the init binary calls it when argv[1] is
// HelperArg. It does not return.
func HelperMain() {
	code, err := helper()
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandbox: %v\n", err)
		os.Exit(ExitSetupFailed)
	}
	os.Exit(code)
}

func helper() (int, error) {
	// One OS thread for all of it: a namespace unshared by Enter (the
	// cgroup namespace) belongs to the calling thread only, and the
	// cgroup2 mount and the fork of the app must come from that thread.
	// Unpinned, Go ran the fork on another thread and the app's
	// /proc/self/cgroup read "0::/apps/<name>", a path its /sys/fs/cgroup
	// does not have, so libuv found no memory limit (constrainedMemory 0).
	runtime.LockOSThread()
	f := os.NewFile(SpecFD, "sandbox-spec")
	var s Spec
	if err := json.NewDecoder(io.LimitReader(f, 1<<20)).Decode(&s); err != nil {
		return 0, fmt.Errorf("reading the sandbox spec from fd %d: %w", SpecFD, err)
	}
	f.Close()
	status := os.NewFile(StatusFD, "sandbox-status")
	if err := Enter(&s); err != nil {
		return 0, err
	}
	return runChild(&s, status)
}

// Enter builds the sandbox around the calling process, which must be root
// and already in fresh mount, PID, IPC and UTS namespaces (and network with
// NetworkNone) and in the app's cgroup: the file system view, then the
// capability drop, no_new_privs, Landlock and seccomp. Only the final
// setuid is left to the exec of the app's process.
func Enter(s *Spec) error {
	if err := validate(s); err != nil {
		return err
	}
	// A cgroup namespace rooted at the app's own cgroup: /proc/self/cgroup
	// reads "0::/" and the cgroup2 mounted below shows only its limits,
	// which is where libuv reads the memory available to node.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("cgroup namespace: %w", err)
	}
	if err := setupMounts(s); err != nil {
		return err
	}
	if s.NetworkNone {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("loopback in the app's network namespace: %w", err)
		}
	}
	if err := dropCapabilities(); err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	if err := applyLandlock(s); err != nil {
		return err
	}
	return applySeccomp(s.AllowSyscalls)
}

func validate(s *Spec) error {
	for name, p := range map[string]string{"code dir": s.CodeDir, "state dir": s.StateDir, "path": s.Path, "dir": s.Dir} {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return fmt.Errorf("sandbox spec: %s %q is not a clean absolute path", name, p)
		}
	}
	if s.APIDir != "" && (!filepath.IsAbs(s.APIDir) || filepath.Clean(s.APIDir) != s.APIDir) {
		return fmt.Errorf("sandbox spec: api dir %q is not a clean absolute path", s.APIDir)
	}
	if s.UID == 0 || s.GID == 0 {
		return errors.New("sandbox spec: refusing to run an app as root")
	}
	return nil
}

// A mount step of the sandbox's file system view.
type mountStep struct {
	what string
	do   func() error
}

func setupMounts(s *Spec) error {
	// Nothing done here may leak back to the node, nor the node's later
	// mounts (another app's deploy) into this view.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / private: %w", err)
	}
	// Detached copies of the app's own dirs, taken before the dirs around
	// them are covered: with their submounts (the persist binds).
	code, err := unix.OpenTree(unix.AT_FDCWD, s.CodeDir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("cloning the code dir %s: %w", s.CodeDir, err)
	}
	defer unix.Close(code)
	state, err := unix.OpenTree(unix.AT_FDCWD, s.StateDir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("cloning the state dir %s: %w", s.StateDir, err)
	}
	defer unix.Close(state)
	type keptDir struct {
		dir string
		fd  int
	}
	kept := []keptDir{{s.CodeDir, code}, {s.StateDir, state}}
	if s.APIDir != "" {
		// The socket to PID 1 is the same inode in the clone, so a
		// connect reaches PID 1's listener from this namespace.
		api, err := unix.OpenTree(unix.AT_FDCWD, s.APIDir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return fmt.Errorf("cloning the app api dir %s: %w", s.APIDir, err)
		}
		defer unix.Close(api)
		kept = append(kept, keptDir{s.APIDir, api})
	}

	const (
		nosuid = unix.MS_NOSUID | unix.MS_NODEV
		strict = nosuid | unix.MS_NOEXEC
	)
	tmpfs := func(dir string, flags uintptr, mode string) error {
		if err := unix.Mount("tmpfs", dir, "tmpfs", flags, "mode="+mode); err != nil {
			return fmt.Errorf("tmpfs on %s: %w", dir, err)
		}
		return nil
	}
	remount := func(dir string, flags uintptr) error {
		err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|flags, "")
		if errors.Is(err, unix.EINVAL) {
			// Not a mount point (a plain dir of the root on some
			// hosts): make it one, then set its flags.
			if err = unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err == nil {
				err = unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|flags, "")
			}
		}
		if err != nil {
			return fmt.Errorf("remounting %s: %w", dir, err)
		}
		return nil
	}
	var steps []mountStep
	for _, c := range s.Confine {
		steps = append(steps, mountStep{"confine " + c, func() error {
			if _, err := os.Stat(c); err != nil {
				return nil // nothing to hide
			}
			if err := tmpfs(c, strict, "0755"); err != nil {
				return err
			}
			for _, keep := range kept {
				if !within(keep.dir, c) {
					continue
				}
				if err := os.MkdirAll(keep.dir, 0o755); err != nil {
					return err
				}
				if err := unix.MoveMount(keep.fd, "", unix.AT_FDCWD, keep.dir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
					return fmt.Errorf("mounting %s back: %w", keep.dir, err)
				}
			}
			return remount(c, unix.MS_RDONLY|strict)
		}})
	}
	// A kept dir outside every confined dir becomes a mount of its own
	// (its clone mounted over it), so its flags can be set below.
	for _, keep := range kept {
		confined := false
		for _, c := range s.Confine {
			confined = confined || within(keep.dir, c)
		}
		if !confined {
			steps = append(steps, mountStep{"bind " + keep.dir, func() error {
				return unix.MoveMount(keep.fd, "", unix.AT_FDCWD, keep.dir, unix.MOVE_MOUNT_F_EMPTY_PATH)
			}})
		}
	}
	steps = append(steps,
		// Read-only at the mount, whatever the file modes say; the
		// persist submounts keep their own (writable) flags.
		mountStep{"code dir read-only", func() error { return remount(s.CodeDir, unix.MS_RDONLY|nosuid) }},
		mountStep{"state dir nosuid", func() error { return remount(s.StateDir, strict) }},
	)
	if s.APIDir != "" {
		// Read-only: the app connects to its socket (which a read-only
		// mount allows) but cannot fill PID 1's /run with files.
		steps = append(steps, mountStep{"app api dir read-only", func() error { return remount(s.APIDir, unix.MS_RDONLY|strict) }})
	}
	for _, h := range s.Hide {
		steps = append(steps, mountStep{"hide " + h, func() error {
			if _, err := os.Stat(h); err != nil {
				return nil
			}
			return tmpfs(h, unix.MS_RDONLY|strict, "0000")
		}})
	}
	steps = append(steps,
		mountStep{"private /tmp", func() error { return tmpfs("/tmp", strict, "1777") }},
		mountStep{"private /dev", func() error { return setupDev() }},
		mountStep{"/proc of the app's PID namespace", func() error {
			// hidepid=2 ("invisible"; the number works on every
			// kernel): a process the app may not ptrace-read is not
			// in its /proc. That hides this helper, the namespace's
			// root PID 1, and leaves the app's own processes.
			return unix.Mount("proc", "/proc", "proc", strict, "hidepid=2")
		}},
		mountStep{"/sys read-only", func() error { return remount("/sys", unix.MS_RDONLY|strict) }},
		mountStep{"the app's cgroup on /sys/fs/cgroup", func() error {
			// The node's whole hierarchy goes (the kernel refuses the same
			// cgroup2 mounted twice on one mount point); the new mount,
			// made in the cgroup namespace, shows the app's cgroup only.
			if err := unix.Unmount("/sys/fs/cgroup", unix.MNT_DETACH); err != nil && err != unix.EINVAL {
				return fmt.Errorf("unmounting the node's cgroup2: %w", err)
			}
			return unix.Mount("cgroup2", "/sys/fs/cgroup", "cgroup2", unix.MS_RDONLY|strict, "")
		}},
		mountStep{"/run read-only", func() error {
			if _, err := os.Stat("/run"); err != nil {
				return nil
			}
			return remount("/run", unix.MS_RDONLY|strict)
		}},
		mountStep{"/ read-only", func() error { return remount("/", unix.MS_RDONLY|unix.MS_NOSUID) }},
	)
	for _, st := range steps {
		if err := st.do(); err != nil {
			return fmt.Errorf("%s: %w", st.what, err)
		}
	}
	return nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// setupDev gives the app a /dev of its own with only the harmless devices:
// the node's devtmpfs has its disks, whose modes are the only thing keeping
// an app from them otherwise.
func setupDev() error {
	if err := unix.Mount("tmpfs", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755"); err != nil {
		return fmt.Errorf("tmpfs on /dev: %w", err)
	}
	devs := map[string]int{"null": 3, "zero": 5, "full": 7, "random": 8, "urandom": 9}
	for _, name := range devFiles {
		p := "/dev/" + name
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, uint32(devs[name])))); err != nil {
			return fmt.Errorf("mknod %s: %w", p, err)
		}
		// mknod applies the umask; the devices are for everyone.
		if err := unix.Chmod(p, 0o666); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, "/dev/"+name); err != nil {
			return err
		}
	}
	if err := os.Mkdir("/dev/shm", 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777"); err != nil {
		return fmt.Errorf("tmpfs on /dev/shm: %w", err)
	}
	return unix.Mount("", "/dev", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755")
}

// dropCapabilities empties the bounding, ambient and inheritable sets on
// every thread (they are per thread, and the Go runtime has several; psx
// reaches them all, with or without cgo), so
// that nothing the app executes can gain a capability back. The effective
// set stays until the app's process sets its uid, which clears it.
func dropCapabilities() error {
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	for c := 0; c <= last; c++ {
		if _, _, e := psx.Syscall6(syscall.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0, 0); e != 0 && e != unix.EINVAL {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, e)
		}
	}
	if _, _, e := psx.Syscall6(syscall.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("clearing ambient capabilities: %w", e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if _, _, e := psx.Syscall3(syscall.SYS_CAPSET, uintptr(unsafePointer(&hdr)), uintptr(unsafePointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("clearing inheritable capabilities: %w", e)
	}
	return nil
}

// runChild starts the app's process as the app's user and stays its
// parent: the namespace's PID 1 must reap orphans and must not be node
// (which neither reaps nor gets default signal actions as PID 1). TERM,
// INT and HUP go to node's process group; the exit status is node's.
func runChild(s *Spec, status *os.File) (int, error) {
	syscall.CloseOnExec(StatusFD)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	attr := &os.ProcAttr{
		Dir:   s.Dir,
		Env:   s.Env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			Credential: &syscall.Credential{Uid: s.UID, Gid: s.GID, Groups: []uint32{}},
		},
	}
	p, err := os.StartProcess(s.Path, append([]string{s.Path}, s.Args...), attr)
	if err != nil {
		return 0, fmt.Errorf("starting %s: %w", s.Path, err)
	}
	pid := p.Pid
	p.Release()
	go func() {
		for sig := range sigs {
			_ = syscall.Kill(-pid, sig.(syscall.Signal))
		}
	}()
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("waiting for %s: %w", s.Path, err)
		}
		if wpid != pid {
			continue // an orphan of the app's
		}
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(ws))
		status.Write(b[:])
		status.Close()
		if ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	}
}

// loopbackUp brings lo up in a fresh network namespace (SIOCSIFFLAGS).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
