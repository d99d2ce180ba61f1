package datafs

import (
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Result says what Mount did.
type Result struct {
	Device  string
	Created bool   // a new file system was made (first boot)
	Tmpfs   bool   // /data is a tmpfs: Warning says why
	Warning string //
	Size    int64  // bytes of the partition
}

// Label is the GPT partition name of the data partition.
const Label = "nodeboot-data"

// findTimeout bounds the wait for the partition's device: the root is on the
// same disk, so it is normally there at once.
const findTimeout = 5 * time.Second

// Mount mounts the data partition on target, creating an ext4 file system
// on an empty partition (or one whose creation was interrupted) first. When
// it cannot be used, target gets a tmpfs and Result.Warning says why; the
// partition is left untouched.
func Mount(target string, log func(string, ...any)) Result {
	var dev string
	var err error
	cmdline, _ := os.ReadFile("/proc/cmdline")
	uuid := PartUUIDFromCmdline(string(cmdline))
	find := func() (string, error) {
		if uuid != "" {
			return FindByPartUUID("/sys", "/dev", uuid)
		}
		return FindByLabel("/sys", "/dev", Label)
	}
	for deadline := time.Now().Add(findTimeout); ; time.Sleep(50 * time.Millisecond) {
		if dev, err = find(); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return tmpfs(target, Result{}, fmt.Sprintf("%v: /data is a tmpfs", err))
	}
	res := Result{Device: dev}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return tmpfs(target, res, fmt.Sprintf("opening %s: %v", dev, err))
	}
	res.Size, err = deviceSize(f)
	if err != nil {
		f.Close()
		return tmpfs(target, res, fmt.Sprintf("size of %s: %v", dev, err))
	}
	// Prepare creates the file system on a new partition, or again on one
	// whose creation a power cut interrupted, and touches nothing else.
	p, err := Prepare(f, res.Size, Options{
		// First boot: if the image was written to a bigger disk, the
		// data partition takes the rest of it before it gets its file
		// system.
		Grow: func() (int64, error) { return Grow(dev) },
		Log: func(format string, args ...any) {
			log("%s: "+format, append([]any{dev}, args...)...)
		},
	})
	res.Size, res.Created = p.Size, p.Created
	if err != nil {
		f.Close()
		return tmpfs(target, res, fmt.Sprintf("%s: %v", dev, err))
	}
	f.Close()
	if err := os.MkdirAll(target, 0o755); err != nil {
		return tmpfs(target, res, err.Error())
	}
	// noinit_itable: go-diskfs zeroes every inode table when it creates
	// the file system but leaves the groups' "inode table zeroed" flag
	// unset, so without it the kernel's ext4lazyinit thread re-zeroes them
	// in the background during the boot and, finding the counts it checks
	// inconsistent, records an error in the superblock ("Something is
	// wrong with group 0"; every later mount then warns "mounting fs with
	// errors"). e2fsck -fn finds the file system clean either way.
	if err := unix.Mount(dev, target, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME, "noinit_itable"); err != nil {
		return tmpfs(target, res, fmt.Sprintf("mounting %s (ext4): %v; it was NOT formatted and is left as it is", dev, err))
	}
	return res
}

func deviceSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if st.Mode().IsRegular() {
		return st.Size(), nil
	}
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return 0, errno
	}
	return int64(size), nil
}

func tmpfs(target string, res Result, why string) Result {
	res.Tmpfs = true
	res.Warning = why
	os.MkdirAll(target, 0o755)
	if err := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		res.Warning += fmt.Sprintf("; and mounting a tmpfs on %s failed too: %v", target, err)
	}
	return res
}
