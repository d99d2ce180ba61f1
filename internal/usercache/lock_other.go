//go:build !unix

package usercache

import (
	"os"
)

// Without flock nothing tells a running VM's image apart: prune keeps every
// run image.
func LockRun(dir string) (func(), error) { return func() {}, nil }

func busy(string) bool { return true }

func removeUnlessBusy(string) (bool, error) { return false, nil }

func allocated(fi os.FileInfo) int64 { return fi.Size() }
