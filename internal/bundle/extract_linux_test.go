package bundle

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// tmpfsOf mounts a tmpfs of size bytes on a new temp dir (CI runs as
// root) and unmounts it when the test ends.
func tmpfsOf(t *testing.T, size string) string {
	t.Helper()
	d := t.TempDir()
	if err := unix.Mount("tmpfs", d, "tmpfs", 0, "size="+size); err != nil {
		if os.Getenv("NODEBOOT_E2E") == "1" {
			t.Fatalf("mounting a tmpfs (needs root): %v", err)
		}
		t.Skipf("mounting a tmpfs needs root (CI runs as root): %v", err)
	}
	t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
	return d
}

// A full disk while the tree is written is the node's trouble, not the
// bundle's: the error keeps ENOSPC (the API answers 507), does not claim
// the bundle is invalid, and nothing of the tree stays.
func TestExtractDiskFull(t *testing.T) {
	d := tmpfsOf(t, "256k")
	noise := make([]byte, 512<<10)
	rand.Read(noise)
	data := mk(t, good(file("app/noise", string(noise)))...)
	dst := filepath.Join(d, "dst")
	_, err := Extract(bytes.NewReader(data), dst, Limits{})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Extract on a full disk: %v, want ENOSPC", err)
	}
	if errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnsafe) || errors.Is(err, ErrTooBig) {
		t.Errorf("a full disk is reported as a bad bundle: %v", err)
	}
	if ents, _ := os.ReadDir(d); len(ents) != 0 {
		t.Errorf("left on the disk: %v", ents)
	}
}
