package store

import (
	"fmt"
	"strings"
)

// MountError says that a version could not be removed (entirely) because
// a file system is mounted inside it; nothing was deleted through the
// mount. The deploy code unmounts what it bound (persist dirs) before a
// version is dropped; what it did not unmount stays, and is removed at the
// next boot, when no mounts are left.
type MountError struct {
	Path   string   // the tree being removed
	Mounts []string // the mount points inside it
}

func (e *MountError) Error() string {
	return fmt.Sprintf("not removing %s: %s mounted inside it (unmount it first; nothing was deleted through it)", e.Path, strings.Join(e.Mounts, ", "))
}

// Is makes errors.Is(err, ErrMounted) hold.
func (e *MountError) Is(target error) bool { return target == ErrMounted }
