//go:build !linux

package store

import "os"

// removeTree: bind mounts, the danger removeTree guards against on Linux
// (remove_linux.go), exist only on the node, which runs Linux.
func removeTree(dir string) error { return os.RemoveAll(dir) }

func mountsUnder(string) ([]string, error) { return nil, nil }

func mountPointOf(p string) string { return p }
