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
// directory is then opened with openat2(RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS
// | RESOLVE_BENEATH) from dir, which fails with EXDEV at any mount
// crossing, so a mount made meanwhile is skipped (and named in the error)
// rather than walked; and unlinkat refuses a mount point itself (EBUSY).
// Where openat2 is missing (Linux < 5.6) each directory is opened
// component by component with O_NOFOLLOW and its st_dev compared with
// dir's, which catches every mount but a bind mount of the same file
// system, and those mountinfo lists.
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
	rootFD, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(rootFD)
	var rst unix.Stat_t
	if err := unix.Fstat(rootFD, &rst); err != nil {
		return &os.PathError{Op: "fstat", Path: dir, Err: err}
	}
	r := &remover{top: dir, rootFD: rootFD, dev: rst.Dev}
	r.dir(".")
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
	top    string
	rootFD int
	dev    uint64
	mounts []string
	errs   []error
}

// open opens the directory rel (relative to top) without following a
// symlink or crossing a mount; errMount when rel lies on another mount.
func (r *remover) open(rel string) (int, error) {
	if !noOpenat2 {
		fd, err := unix.Openat2(r.rootFD, rel, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH,
		})
		if err == unix.EXDEV {
			return -1, errMount
		}
		if err != unix.ENOSYS && err != unix.EPERM {
			return fd, err
		}
	}
	fd, err := unix.Dup(r.rootFD)
	if err != nil {
		return -1, err
	}
	if rel == "." {
		return fd, nil
	}
	for _, c := range strings.Split(rel, "/") {
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		if st.Dev != r.dev {
			unix.Close(fd)
			return -1, errMount
		}
	}
	return fd, nil
}

var errMount = errors.New("a mount point")

// dir empties the directory rel and reports whether it is empty now (its
// parent removes it). It holds at most one descriptor at a time, whatever
// the depth: the names of a directory are read whole, the descriptor
// closed, and each subdirectory reopened from the top by its path.
func (r *remover) dir(rel string) bool {
	at := func(name string) string { return filepath.Join(r.top, rel, name) }
	fd, err := r.open(rel)
	if err == errMount {
		r.mounts = append(r.mounts, at(""))
		return false
	}
	if err != nil {
		r.errs = append(r.errs, &os.PathError{Op: "open", Path: at(""), Err: err})
		return false
	}
	f := os.NewFile(uintptr(fd), at(""))
	ents, err := f.ReadDir(-1)
	if err != nil {
		f.Close()
		r.errs = append(r.errs, err)
		return false
	}
	empty := true
	var subdirs []string
	for _, e := range ents {
		if e.IsDir() {
			subdirs = append(subdirs, e.Name())
			continue
		}
		switch err := unix.Unlinkat(int(f.Fd()), e.Name(), 0); err {
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
	f.Close()
	ents = nil
	var done []string
	for _, d := range subdirs {
		if r.dir(filepath.Join(rel, d)) {
			done = append(done, d)
		} else {
			empty = false
		}
	}
	if len(done) == 0 {
		return empty
	}
	fd, err = r.open(rel)
	if err != nil {
		r.errs = append(r.errs, &os.PathError{Op: "open", Path: at(""), Err: err})
		return false
	}
	defer unix.Close(fd)
	for _, d := range done {
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
	return empty
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
