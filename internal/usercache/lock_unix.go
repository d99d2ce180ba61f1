//go:build unix

package usercache

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// LockRun marks the run image dir as in use until release is called: a
// shared flock on dir+".lock" (beside it, since a build swaps the dir itself
// for a new one). Several runs of one app may share it; prune waits for none
// of them and skips the dir.
func LockRun(dir string) (release func(), err error) {
	for {
		f, err := os.OpenFile(dir+".lock", os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("locking %s: %w", dir, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", dir, err)
		}
		// A prune may have removed the lock file while this waited for
		// it: then lock the new one.
		if same(f, dir+".lock") {
			return func() { f.Close() }, nil
		}
		f.Close()
	}
}

func same(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// busy tells whether a run holds dir.
func busy(dir string) bool {
	f, err := os.OpenFile(dir+".lock", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return true
	}
	return false
}

// removeUnlessBusy removes dir and its lock file while holding the lock
// exclusively, so no run can start using it meanwhile.
func removeUnlessBusy(dir string) (bool, error) {
	f, err := os.OpenFile(dir+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return false, fmt.Errorf("locking %s: %w", dir, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return false, nil
	}
	if err := removeAll(dir); err != nil {
		return false, fmt.Errorf("removing %s: %w", dir, err)
	}
	// Removed under the lock: a run waiting on this file sees it is gone
	// and locks a new one.
	os.Remove(dir + ".lock")
	return true, nil
}

func allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}
