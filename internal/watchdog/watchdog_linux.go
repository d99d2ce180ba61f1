package watchdog

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Path is the first watchdog the kernel registers.
const Path = "/dev/watchdog"

// wdiocKeepalive is _IOR('W', 5, int), which golang.org/x/sys does not name.
const wdiocKeepalive = 0x80045705

// File is a watchdog device node opened for writing: opening it arms it.
type File struct{ f *os.File }

// Open arms the watchdog at path and asks for timeout; it returns the
// timeout the driver granted (drivers round it to what the hardware can
// count), which may differ.
func Open(path string, timeout time.Duration) (*File, time.Duration, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, 0, err
	}
	secs := int(timeout / time.Second)
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.WDIOC_SETTIMEOUT, secs); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("setting the %s timeout to %ds: %w", path, secs, err)
	}
	got, err := unix.IoctlGetInt(int(f.Fd()), unix.WDIOC_GETTIMEOUT)
	if err != nil {
		got = secs
	}
	return &File{f: f}, time.Duration(got) * time.Second, nil
}

// Keepalive restarts the countdown.
func (w *File) Keepalive() error {
	_, err := unix.IoctlRetInt(int(w.f.Fd()), wdiocKeepalive)
	return err
}
