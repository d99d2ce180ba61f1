package store

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// removeTree removes the directory tree at dir without ever crossing into
// another mount. A version dir may still hold the bind mount of an app's
// persist dir (PID 1 binds them at deploy); os.RemoveAll would descend into
// it and delete the app's persistent data (issue 12, item 1).
//
// Three guards, outermost first: a mount point /proc/self/mountinfo lists
// under dir refuses the whole removal before anything is deleted; every
// directory is then opened from its parent's descriptor with openat2
// (RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH), which fails
// with EXDEV at a mount, so a mount made meanwhile is skipped (and named
// in the error) rather than walked; and unlinkat refuses a mount point
// itself (EBUSY). Where openat2 is missing (Linux < 5.6) a directory is
// opened with O_NOFOLLOW and its st_dev compared with dir's, which catches
// every mount but a bind mount of the same file system, and those
// mountinfo lists.
func removeTree(dir string) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return os.Remove(dir)
	}
	if ms, err := mountsUnder(dir); err != nil {
		return err
	} else if len(ms) > 0 {
		return &MountError{Path: dir, Mounts: ms}
	}
	return removeWalk(dir)
}

// removeWalk is removeTree after the mountinfo check: the guards that hold
// against a mount made after it.
func removeWalk(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return &os.PathError{Op: "fstat", Path: dir, Err: err}
	}
	r := &remover{dev: st.Dev}
	fd, _ = r.dir(fd, dir)
	if fd >= 0 {
		unix.Close(fd)
	}
	if len(r.mounts) > 0 {
		r.errs = append(r.errs, &MountError{Path: dir, Mounts: r.mounts})
	}
	if err := errors.Join(r.errs...); err != nil {
		return err
	}
	if err := unix.Rmdir(dir); err != nil {
		return &os.PathError{Op: "rmdir", Path: dir, Err: err}
	}
	return nil
}

// noOpenat2 forces the fallback for kernels without openat2, for tests.
var noOpenat2 = false

type remover struct {
	dev    uint64 // of the tree's top
	mounts []string
	errs   []error
}

var errMount = errors.New("a mount point")

// openSub opens the subdirectory name of the directory open as fd without
// following a symlink or crossing a mount (errMount).
func (r *remover) openSub(fd int, name string) (int, error) {
	if !noOpenat2 {
		sub, err := unix.Openat2(fd, name, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH,
		})
		if err == unix.EXDEV {
			return -1, errMount
		}
		if err != unix.ENOSYS && err != unix.EPERM {
			return sub, err
		}
	}
	sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(sub, &st); err != nil {
		unix.Close(sub)
		return -1, err
	}
	if st.Dev != r.dev {
		unix.Close(sub)
		return -1, errMount
	}
	return sub, nil
}

// dir empties the directory open as fd (at path p, for messages) and
// reports whether it is empty now (its parent removes it). It returns a
// descriptor of the same directory (fd itself or a reopened one; -1 when
// that failed) because it closes fd while it works below: a hostile tree
// may be 2 000 levels deep, and PID 1 must not hold a descriptor per
// level. It climbs back with ".." and checks that it arrived where it
// left (device and inode), so the walk is linear in the tree's size and
// holds at most two descriptors.
func (r *remover) dir(fd int, p string) (int, bool) {
	at := func(name string) string { return filepath.Join(p, name) }
	dup, err := unix.Dup(fd)
	if err != nil {
		r.errs = append(r.errs, &os.PathError{Op: "dup", Path: p, Err: err})
		return fd, false
	}
	f := os.NewFile(uintptr(dup), p)
	ents, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		r.errs = append(r.errs, err)
		return fd, false
	}
	empty := true
	var subdirs []string
	for _, e := range ents {
		if e.IsDir() {
			subdirs = append(subdirs, e.Name())
			continue
		}
		switch err := unix.Unlinkat(fd, e.Name(), 0); err {
		case nil, unix.ENOENT:
		case unix.EISDIR:
			subdirs = append(subdirs, e.Name())
		case unix.EBUSY:
			// A file bind-mounted over a file of the tree.
			r.mounts = append(r.mounts, at(e.Name()))
			empty = false
		default:
			r.errs = append(r.errs, &os.PathError{Op: "unlinkat", Path: at(e.Name()), Err: err})
			empty = false
		}
	}
	ents = nil
	for _, d := range subdirs {
		sub, err := r.openSub(fd, d)
		if err == errMount {
			r.mounts = append(r.mounts, at(d))
			empty = false
			continue
		}
		if err != nil {
			r.errs = append(r.errs, &os.PathError{Op: "open", Path: at(d), Err: err})
			empty = false
			continue
		}
		var here unix.Stat_t
		if err := unix.Fstat(fd, &here); err != nil {
			unix.Close(sub)
			r.errs = append(r.errs, &os.PathError{Op: "fstat", Path: p, Err: err})
			return fd, false
		}
		unix.Close(fd)
		sub, subEmpty := r.dir(sub, at(d))
		if sub < 0 {
			return -1, false
		}
		fd, err = unix.Openat(sub, "..", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(sub)
		var back unix.Stat_t
		if err == nil {
			err = unix.Fstat(fd, &back)
		}
		if err == nil && (back.Dev != here.Dev || back.Ino != here.Ino) {
			unix.Close(fd)
			err = errors.New("the tree moved while it was being removed")
		}
		if err != nil {
			r.errs = append(r.errs, &os.PathError{Op: "climbing back to", Path: p, Err: err})
			return -1, false
		}
		if !subEmpty {
			empty = false
			continue
		}
		switch err := unix.Unlinkat(fd, d, unix.AT_REMOVEDIR); err {
		case nil, unix.ENOENT:
		case unix.EBUSY:
			r.mounts = append(r.mounts, at(d))
			empty = false
		default:
			r.errs = append(r.errs, &os.PathError{Op: "rmdir", Path: at(d), Err: err})
			empty = false
		}
	}
	return fd, empty
}

// mountsUnder lists the mount points /proc/self/mountinfo names at or
// under dir.
func mountsUnder(dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// Compare real paths: mountinfo names mounts by their resolved path.
	if p, err := filepath.EvalSymlinks(abs); err == nil {
		abs = p
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("listing mounts before removing %s: %w", dir, err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == abs || strings.HasPrefix(mp, abs+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("listing mounts before removing %s: %w", dir, err)
	}
	return out, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountPointOf returns the mount point of the file system holding p (the
// longest mount point /proc/self/mountinfo lists that p lies under), or p
// when that cannot be read: what an error about a full disk should name.
func mountPointOf(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return p
	}
	best := ""
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best = mp
		}
	}
	if best == "" {
		return p
	}
	return best
}
