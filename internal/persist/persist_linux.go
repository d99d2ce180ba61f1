package persist

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// resolve is how every path component is opened: never through a symlink,
// never out of the dir it is looked up in.
const resolve = unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// Bind mounts StateDir/persist/<d> over codeDir/<d> for every dir d of a,
// creating what is missing (owned by the app under StateDir, by root in the
// code dir). A dir that is already a mount point is left as it is, so Bind
// may be called again for a code dir whose binds exist. A dir that fails
// does not keep the others from being bound; the errors are joined.
func Bind(a App, codeDir string) error {
	var errs []error
	for _, d := range a.Dirs {
		if err := bindOne(a, codeDir, d); err != nil {
			errs = append(errs, fmt.Errorf("persist %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// MakeStateDir creates the app's state dir (its parent must exist and be
// root's) and gives it to the app, refusing a symlink anywhere on the way.
func MakeStateDir(dir string, uid, gid int) error {
	parent, err := unix.Openat2(unix.AT_FDCWD, filepath.Dir(dir), &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return pathError("opening", filepath.Dir(dir), err)
	}
	defer unix.Close(parent)
	fd, err := openDir(parent, filepath.Base(dir), 0o700, dir)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	return nil
}

func bindOne(a App, codeDir, d string) error {
	if err := checkRel(d); err != nil {
		return err
	}
	dst := filepath.Join(codeDir, d)
	if m, err := IsMountPoint(dst); err != nil {
		return err
	} else if m {
		return nil
	}
	src, err := appDir(a, filepath.Join("persist", d))
	if err != nil {
		return err
	}
	defer unix.Close(src)
	target, err := codeSubdir(codeDir, d)
	if err != nil {
		return err
	}
	defer unix.Close(target)

	tree, err := unix.OpenTree(src, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("cloning %s: %w", filepath.Join(a.StateDir, "persist", d), err)
	}
	defer unix.Close(tree)
	// The flags are set on the detached mount, before anyone can see it:
	// data the app writes there is never run from there (docs/sandbox.md).
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("setting nosuid,nodev,noexec: %w", err)
	}
	if err := unix.MoveMount(tree, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("mounting on %s: %w", dst, err)
	}
	return nil
}

// checkRel refuses what spec.PersistPath would: a persist dir must be a
// clean relative path strictly inside the code dir.
func checkRel(d string) error {
	if d == "" || filepath.IsAbs(d) || filepath.Clean(d) != d || d == "." || d == ".." || strings.HasPrefix(d, "../") {
		return fmt.Errorf("%q is not a clean path inside the app's dir", d)
	}
	return nil
}

// appDir opens StateDir/rel as the app's, creating every missing level and
// chowning every level below StateDir to the app, all through fds. A
// symlink anywhere (StateDir included) is refused: the app may have planted
// it to make PID 1 chown or mount someone else's files.
func appDir(a App, rel string) (int, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, a.StateDir, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, pathError("opening the state dir", a.StateDir, err)
	}
	at := a.StateDir
	for _, c := range strings.Split(rel, "/") {
		at = filepath.Join(at, c)
		next, err := openDir(fd, c, 0o700, at)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
		if err := unix.Fchown(fd, a.UID, a.GID); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("chown %s: %w", at, err)
		}
	}
	return fd, nil
}

// codeSubdir opens codeDir/rel (an O_PATH fd, to mount on), creating
// missing levels owned by root. A symlink in the way is refused: in a
// deployed version it comes from the bundle, and binding through it would
// cover some other dir.
func codeSubdir(codeDir, rel string) (int, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, codeDir, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, pathError("opening the code dir", codeDir, err)
	}
	at := codeDir
	for _, c := range strings.Split(rel, "/") {
		at = filepath.Join(at, c)
		next, err := openDir(fd, c, 0o755, at)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// openDir opens the dir name in parent, creating it with mode if missing.
// The fd is O_PATH when parent's is, else O_RDONLY (fchown needs a real one).
func openDir(parent int, name string, mode uint32, at string) (int, error) {
	flags, err := unix.FcntlInt(uintptr(parent), unix.F_GETFL, 0)
	if err != nil {
		return -1, err
	}
	how := unix.OpenHow{Flags: unix.O_DIRECTORY | unix.O_CLOEXEC | uint64(flags&unix.O_PATH), Resolve: resolve}
	if flags&unix.O_PATH == 0 {
		how.Flags |= unix.O_RDONLY
	}
	// mkdirat does not follow a symlink in its last component: an
	// existing link makes it fail with EEXIST, and the open refuses it.
	if err := unix.Mkdirat(parent, name, mode); err != nil && !errors.Is(err, unix.EEXIST) && !errors.Is(err, unix.EROFS) {
		return -1, fmt.Errorf("creating %s: %w", at, err)
	}
	fd, err := unix.Openat2(parent, name, &how)
	if err != nil {
		return -1, pathError("opening", at, err)
	}
	return fd, nil
}

// pathError says what a refused path means.
func pathError(what, path string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%s %s: a symlink is in the way (%w); persist dirs must be real dirs: remove the link", what, path, err)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s %s: it is not a directory (%w)", what, path, err)
	}
	return fmt.Errorf("%s %s: %w", what, path, err)
}

// Unbind unmounts every mount below codeDir (its persist binds, stacked
// ones included), the last mounted first, so that nothing removing or
// walking codeDir afterwards can reach the persistent data.
func Unbind(codeDir string) error {
	ms, err := Mounts(codeDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range slices.Backward(ms) {
		// MNT_DETACH: the mount leaves the tree at once even if a
		// process still has a file open in it (an app's last write
		// cannot hold up a deploy); UMOUNT_NOFOLLOW: the mount point is
		// never resolved through a symlink.
		if err := unix.Unmount(m, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", m, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if left, err := Mounts(codeDir); err != nil {
		return err
	} else if len(left) > 0 {
		return fmt.Errorf("still mounted after unmounting: %s", strings.Join(left, ", "))
	}
	return nil
}

// Mounts lists the mount points strictly below dir, in the order they
// were mounted (/proc/self/mountinfo's order).
func Mounts(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("reading /proc/self/mountinfo: %w", err)
	}
	var out []string
	for _, m := range infos {
		if m.Mountpoint != dir {
			out = append(out, m.Mountpoint)
		}
	}
	return out, nil
}

// IsMountPoint reports whether dir is a mount point, from
// /proc/self/mountinfo.
func IsMountPoint(dir string) (bool, error) {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(filepath.Clean(dir)))
	if err != nil {
		return false, fmt.Errorf("reading /proc/self/mountinfo: %w", err)
	}
	return len(infos) > 0, nil
}

// Bind is Bind(a, codeDir), so an App serves as internal/deploy's Persist.
func (a App) Bind(codeDir string) error { return Bind(a, codeDir) }

// Unbind is Unbind(codeDir).
func (a App) Unbind(codeDir string) error { return Unbind(codeDir) }
