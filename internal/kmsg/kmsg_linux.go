package kmsg

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Path is the kernel log device; a variable for the tests.
var Path = "/dev/kmsg"

// LastTrap returns the newest trap record of kind (e.g. "invalid opcode")
// logged at or after since (time since boot, as Now returns), reading
// everything the kernel's ring buffer still holds. The kernel prints a
// trap only when the signal was not handled and its rate limit allows, so
// finding none is normal.
func LastTrap(kind string, since time.Duration) (Trap, bool, error) {
	// Non-blocking: a read at the end of the buffer returns EAGAIN
	// instead of waiting for the next record.
	fd, err := unix.Open(Path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return Trap{}, false, fmt.Errorf("opening %s: %w", Path, err)
	}
	defer unix.Close(fd)
	var (
		found Trap
		ok    bool
		buf   = make([]byte, 8192) // one record per read, at most 8 KiB (CONSOLE_EXT_LOG_MAX)
	)
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, syscall.EPIPE) {
			continue // records were overwritten while we read: go on with the next
		}
		if errors.Is(err, syscall.EAGAIN) || (err == nil && n == 0) {
			return found, ok, nil
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return found, ok, fmt.Errorf("reading %s: %w", Path, err)
		}
		if t, isTrap := ParseRecord(string(buf[:n])); isTrap && t.Kind == kind && t.At >= since {
			found, ok = t, true
		}
	}
}

// Now returns the time since boot on the clock kmsg records are stamped
// with (the kernel's local clock, which CLOCK_MONOTONIC follows closely).
func Now() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
