//go:build !linux && !darwin

package filedigest

import (
	"io/fs"
	"time"
)

// Elsewhere a file's ctime is not at hand: every digest is computed.
func identity(string, fs.FileInfo) (string, bool) { return "", false }

func ctime(fs.FileInfo) time.Time { return time.Now() }
