package boot

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// Mount is one file system PID 1 mounts at boot.
type Mount struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
	Mode                   fs.FileMode // of Target, created if missing
	// Required mounts stop the boot when they fail; optional ones are logged
	// and skipped (e.g. cgroup2 on a kernel without it).
	Required bool
	// BusyOK treats EBUSY as done: the kernel mounts devtmpfs on /dev
	// itself when it mounts a disk root (CONFIG_DEVTMPFS_MOUNT), but not
	// for an initramfs.
	BusyOK bool
}

// Mounter is the OS boundary for mounting, so the plan can be run against a
// fake in tests.
type Mounter interface {
	MkdirAll(path string, mode fs.FileMode) error
	Mount(source, target, fstype string, flags uintptr, data string) error
}

// Run performs the mounts in order, logging each; it stops at the first
// failed required mount and returns its error.
func Run(m Mounter, log func(string, ...any), mounts []Mount) error {
	for _, mt := range mounts {
		err := m.MkdirAll(mt.Target, mt.Mode)
		if err == nil {
			err = m.Mount(mt.Source, mt.Target, mt.FSType, mt.Flags, mt.Data)
		}
		switch {
		case err == nil:
			log("mounted %s on %s", mt.FSType, mt.Target)
		case mt.BusyOK && errors.Is(err, syscall.EBUSY):
			log("%s already mounted on %s", mt.FSType, mt.Target)
		case mt.Required:
			return fmt.Errorf("mounting %s on %s: %w", mt.FSType, mt.Target, err)
		default:
			log("optional mount %s on %s failed: %v", mt.FSType, mt.Target, err)
		}
	}
	return nil
}
