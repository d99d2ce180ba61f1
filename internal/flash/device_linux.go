//go:build linux

package flash

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// OSDevice opens the real target.
//
// A block device is opened with O_EXCL: the kernel refuses that while the
// device or one of its partitions is mounted or held by LVM, RAID or
// device-mapper, a safety net under Check. Writes go through the page
// cache with writeback started chunk by chunk (sync_file_range), so the
// progress follows the device rather than the cache, and the final flush
// is short. Sync flushes, then drops the device's cached pages (BLKFLSBUF,
// POSIX_FADV_DONTNEED); OpenRead reads with O_DIRECT, so the read-back
// comes from the medium.
type OSDevice struct{}

// OpenWrite implements Device.
func (OSDevice) OpenWrite(t *Target) (Writer, error) {
	flags := os.O_WRONLY | unix.O_CLOEXEC
	if t.File {
		flags |= os.O_CREATE
	} else {
		flags |= unix.O_EXCL
	}
	f, err := os.OpenFile(t.Path, flags, 0o644)
	switch {
	case errors.Is(err, unix.EBUSY):
		return nil, refuse(t.Path, "the kernel reports it busy: it or one of its partitions is mounted (perhaps in another mount namespace), held by LVM, RAID or device-mapper, or opened exclusively by another program: unmount or close what uses it, then run this again")
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("opening %s: %w: writing a disk needs root: run it with sudo", t.Path, err)
	case err != nil:
		return nil, fmt.Errorf("opening %s: %w", t.Path, err)
	}
	return &osWriter{f: f, block: !t.File, stream: true}, nil
}

type osWriter struct {
	f      *os.File
	block  bool
	stream bool // sync_file_range works here
	off    int64
	// the previous chunk, whose writeback Write waits for
	prevOff, prevLen int64
}

func (w *osWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		return n, err
	}
	if w.stream {
		fd := int(w.f.Fd())
		// Start writeback of this chunk; wait for the previous one and
		// drop it from the cache: at most two chunks are ever dirty.
		if err := unix.SyncFileRange(fd, w.off, int64(n), unix.SYNC_FILE_RANGE_WRITE); err != nil {
			if errors.Is(err, unix.EIO) {
				return n, err
			}
			w.stream = false
		} else if w.prevLen > 0 {
			err := unix.SyncFileRange(fd, w.prevOff, w.prevLen,
				unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
			if err != nil {
				return n, err
			}
			unix.Fadvise(fd, w.prevOff, w.prevLen, unix.FADV_DONTNEED)
		}
	}
	w.prevOff, w.prevLen = w.off, int64(n)
	w.off += int64(n)
	return n, nil
}

func (w *osWriter) Sync() error {
	if err := w.f.Sync(); err != nil {
		return err
	}
	fd := int(w.f.Fd())
	unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
	if w.block {
		unix.IoctlSetInt(fd, unix.BLKFLSBUF, 0)
	}
	return nil
}

func (w *osWriter) Close() error {
	if w.block {
		// Have the kernel read the new partition table; best effort (a
		// loop device without partition scanning answers EINVAL). It
		// works only from the exclusive open, hence here.
		unix.IoctlSetInt(int(w.f.Fd()), unix.BLKRRPART, 0)
	}
	return w.f.Close()
}

// OpenRead implements Device.
func (OSDevice) OpenRead(t *Target) (io.ReadCloser, error) {
	f, err := os.OpenFile(t.Path, os.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EINVAL) { // a file system without O_DIRECT
		f, err = os.OpenFile(t.Path, os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
			return f, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s to read it back: %w", t.Path, err)
	}
	// O_DIRECT wants a buffer aligned to the logical block size: mmap
	// gives a page-aligned one.
	buf, err := unix.Mmap(-1, 0, ChunkSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read-back buffer: %w", err)
	}
	return &directReader{f: f, buf: buf}, nil
}

// directReader reads an O_DIRECT file in aligned ChunkSize pieces.
type directReader struct {
	f    *os.File
	buf  []byte
	r, w int // buf[r:w] is unread
	err  error
	read bool
}

func (d *directReader) Read(p []byte) (int, error) {
	if d.r == d.w {
		if d.err != nil {
			return 0, d.err
		}
		n, err := d.f.Read(d.buf)
		if errors.Is(err, unix.EINVAL) && !d.read {
			// O_DIRECT accepted at open but not at read: read through
			// the (dropped) page cache instead.
			fd := int(d.f.Fd())
			if fl, ferr := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); ferr == nil {
				unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_DIRECT)
				n, err = d.f.Read(d.buf)
			}
		}
		d.read = true
		d.r, d.w, d.err = 0, n, err
		if n == 0 {
			if err == nil {
				d.err = io.EOF
			}
			return 0, d.err
		}
	}
	n := copy(p, d.buf[d.r:d.w])
	d.r += n
	return n, nil
}

func (d *directReader) Close() error {
	unix.Munmap(d.buf)
	return d.f.Close()
}

func statNode(path string) (Node, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Node{}, err
	}
	n := Node{Mode: fi.Mode().Type()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && n.IsBlock() {
		n.Rdev = DevNum{unix.Major(st.Rdev), unix.Minor(st.Rdev)}
	}
	return n, nil
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
