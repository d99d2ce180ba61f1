// Package applog writes an app's output lines to a size-bounded file on
// /data/logs, rotating <app>.log → <app>.log.1 → … so logs survive reboots
// without ever filling the data partition.
package applog

import (
	"fmt"
	"os"
	"sync"
)

// File is an io.Writer appending to Path, rotated once it exceeds Max
// bytes, keeping Keep old files. Writes are whole lines (the supervisor
// writes one line per call), so a line is never split across files.
type File struct {
	Path string
	Max  int64
	Keep int

	mu     sync.Mutex
	f      *os.File
	size   int64
	closed bool
}

// rename is os.Rename; tests inject failures.
var rename = os.Rename

// Defaults bound one app's logs to (Keep+1) × Max = 4 MiB.
const (
	DefaultMax  = 1 << 20
	DefaultKeep = 3
)

// Open opens (appending to) path.
func Open(path string, max int64, keep int) (*File, error) {
	if max <= 0 {
		max = DefaultMax
	}
	if keep <= 0 {
		keep = DefaultKeep
	}
	l := &File{Path: path, Max: max, Keep: keep}
	if err := l.open(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *File) open() error {
	f, err := os.OpenFile(l.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("opening log %s: %w", l.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	l.f, l.size = f, st.Size()
	return nil
}

// Write appends p, rotating first if p would take the file past Max.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, os.ErrClosed
	}
	if l.f == nil {
		// An earlier rotation or reopen failed: try again now rather than
		// stay silent until the next boot.
		if err := l.open(); err != nil {
			return 0, err
		}
	}
	if l.size > 0 && l.size+int64(len(p)) > l.Max {
		if err := l.rotate(); err != nil {
			// Keep logging to the current file, over its bound, until a
			// later write's rotation succeeds.
			if l.f == nil {
				if oerr := l.open(); oerr != nil {
					return 0, err
				}
			}
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

// rotate shifts the old files and starts a new one. On failure the current
// file stays open (or is reopened by the next write), so the app's lines
// still reach /data/logs and the next write retries the rotation.
func (l *File) rotate() error {
	for i := l.Keep - 1; i >= 1; i-- {
		rename(fmt.Sprintf("%s.%d", l.Path, i), fmt.Sprintf("%s.%d", l.Path, i+1))
	}
	if err := rename(l.Path, l.Path+".1"); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("rotating %s: %w", l.Path, err)
	}
	l.f.Close()
	l.f = nil
	return l.open()
}

// Close closes the file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
