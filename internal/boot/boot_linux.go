package boot

import (
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Uptime is the time since the kernel started.
func Uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

const (
	nosuid = unix.MS_NOSUID
	nodev  = unix.MS_NODEV
	noexec = unix.MS_NOEXEC
)

// EarlyMounts come first: /dev, so the console can be opened.
var EarlyMounts = []Mount{
	{Source: "devtmpfs", Target: "/dev", FSType: "devtmpfs", Flags: nosuid, Data: "mode=0755", Mode: 0o755, Required: true, BusyOK: true},
}

// SystemMounts are the kernel and runtime file systems every Node app
// expects. /data is not here: where it lives depends on the image format.
var SystemMounts = []Mount{
	{Source: "proc", Target: "/proc", FSType: "proc", Flags: nosuid | nodev | noexec, Mode: 0o555, Required: true},
	{Source: "sysfs", Target: "/sys", FSType: "sysfs", Flags: nosuid | nodev | noexec, Mode: 0o555, Required: true},
	{Source: "devpts", Target: "/dev/pts", FSType: "devpts", Flags: nosuid | noexec, Data: "gid=5,mode=0620,ptmxmode=0666", Mode: 0o755},
	{Source: "tmpfs", Target: "/dev/shm", FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=1777", Mode: 0o1777},
	{Source: "tmpfs", Target: "/run", FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=0755", Mode: 0o755, Required: true},
	{Source: "tmpfs", Target: "/tmp", FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=1777", Mode: 0o1777, Required: true},
	{Source: "cgroup2", Target: "/sys/fs/cgroup", FSType: "cgroup2", Flags: nosuid | nodev | noexec, Data: "nsdelegate", Mode: 0o555},
}

// DataTmpfs is /data when the image has no data partition (initramfs). It
// does not survive a reboot, which PID 1 says on the console.
var DataTmpfs = Mount{Source: "tmpfs", Target: "/data", FSType: "tmpfs", Flags: nosuid | nodev, Data: "mode=0755", Mode: 0o755, Required: true}

// OS is the real Mounter.
type OS struct{}

// MkdirAll creates the mount point.
func (OS) MkdirAll(path string, mode fs.FileMode) error { return os.MkdirAll(path, mode) }

// Mount calls mount(2).
func (OS) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

// OpenConsole makes /dev/console PID 1's stdin, stdout and stderr. The
// initramfs carries no device nodes (they cannot be created without root at
// build time), so the kernel starts init without a console; devtmpfs has one.
func OpenConsole() (*os.File, error) {
	f, err := os.OpenFile("/dev/console", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/console: %w", err)
	}
	for _, fd := range []int{0, 1, 2} {
		if err := unix.Dup2(int(f.Fd()), fd); err != nil {
			return nil, fmt.Errorf("dup console to fd %d: %w", fd, err)
		}
	}
	return f, nil
}

// RemountRootReadOnly makes / read-only after boot set-up wrote what it needed:
// the image is immutable, apps write only to /data, /tmp and /run.
func RemountRootReadOnly() error {
	return unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_BIND, "")
}
