package kernelbuild

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lock takes an exclusive lock on path, waiting for another nodeboot that
// builds the same profile (two `nodeboot build --kernel nodeboot-vm` at
// once share one object dir); the returned func releases it.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("kernel build lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("kernel build lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
