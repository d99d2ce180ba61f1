//go:build !linux

package flash

import (
	"io"
	"io/fs"
	"os"
)

// OSDevice opens the real target; only Linux has one.
type OSDevice struct{}

// OpenWrite implements Device.
func (OSDevice) OpenWrite(t *Target) (Writer, error) { return nil, errNotLinux }

// OpenRead implements Device.
func (OSDevice) OpenRead(t *Target) (io.ReadCloser, error) { return nil, errNotLinux }

func statNode(path string) (Node, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Node{}, err
	}
	return Node{Mode: fi.Mode().Type()}, nil
}

// IsTerminal reports whether f is a character device (a terminal, most
// likely).
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&fs.ModeCharDevice != 0
}
