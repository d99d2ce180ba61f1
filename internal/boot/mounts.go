package boot

import (
	"fmt"
	"io/fs"
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
		case mt.Required:
			return fmt.Errorf("mounting %s on %s: %w", mt.FSType, mt.Target, err)
		default:
			log("optional mount %s on %s failed: %v", mt.FSType, mt.Target, err)
		}
	}
	return nil
}
