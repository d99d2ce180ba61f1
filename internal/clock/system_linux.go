package clock

import (
	"time"

	"golang.org/x/sys/unix"
)

// System is the kernel's CLOCK_REALTIME.
type System struct{}

// Now reads the system clock.
func (System) Now() time.Time { return time.Now() }

// Set steps the system clock (needs CAP_SYS_TIME; PID 1 has it).
func (System) Set(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// Slew corrects the clock by d gradually, like adjtime(3): the kernel
// speeds or slows the clock by 0.05 % until the offset is used up.
func (System) Slew(d time.Duration) error {
	tx := unix.Timex{Modes: unix.ADJ_OFFSET_SINGLESHOT, Offset: d.Microseconds()}
	_, err := unix.Adjtimex(&tx)
	return err
}
