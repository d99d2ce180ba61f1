package elfdeps

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// fsRoot maps absolute paths as the loader sees them (targets) to host
// paths under a root directory, the way a chroot would.
type fsRoot string

func newRoot(dir string) (fsRoot, error) {
	if dir == "" {
		return "/", nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("root %s: %w", dir, err)
	}
	// Resolve the root itself once so that host paths found under it can be
	// recognised by prefix.
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("root %s: %w", dir, err)
	}
	return fsRoot(real), nil
}

func (r fsRoot) host(target string) string {
	return filepath.Join(string(r), filepath.FromSlash(target))
}

// target returns the loader-visible path of a host path, or the host path
// itself when it lies outside the root: binaries handed to Resolve (and
// whatever they reach via $ORIGIN) may live anywhere, and the image is
// expected to keep the app at its host path.
func (r fsRoot) target(host string) string {
	if r == "/" {
		return host
	}
	rel, err := filepath.Rel(string(r), host)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return host
	}
	return path.Join("/", filepath.ToSlash(rel))
}

func (r fsRoot) contains(host string) bool {
	return r == "/" || r.target(host) != host
}

// maxSymlinks matches the kernel's limit for one path walk.
const maxSymlinks = 40

// realpath resolves every symlink in a host path. Inside the root,
// absolute link targets are taken relative to the root (a library tree
// copied from another system keeps its absolute links), and ".." cannot
// climb out of it.
func (r fsRoot) realpath(host string) (string, error) {
	if r == "/" || !r.contains(host) {
		return filepath.EvalSymlinks(host)
	}
	todo := strings.TrimPrefix(r.target(host), "/")
	done := "" // resolved so far, relative to the root
	links := 0
	for todo != "" {
		var comp string
		comp, todo, _ = strings.Cut(todo, "/")
		switch comp {
		case "", ".":
			continue
		case "..":
			done = parentRel(done)
			continue
		}
		next := path.Join(done, comp)
		fi, err := os.Lstat(r.host(next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		if links++; links > maxSymlinks {
			return "", &fs.PathError{Op: "realpath", Path: host, Err: syscall.ELOOP}
		}
		link, err := os.Readlink(r.host(next))
		if err != nil {
			return "", err
		}
		if path.IsAbs(link) {
			done = ""
		}
		todo = strings.TrimSuffix(link+"/"+todo, "/")
	}
	return r.host("/" + done), nil
}

func parentRel(p string) string {
	d := path.Dir(p)
	if d == "." || d == "/" {
		return ""
	}
	return d
}

// glob expands a shell pattern of targets inside the root, component by
// component, so that symlinked directories resolve within the root.
// Like glob(3) used by ldconfig, results are sorted and wildcards do not
// match a leading dot.
func (r fsRoot) glob(pattern string) ([]string, error) {
	parts := strings.Split(strings.TrimPrefix(path.Clean("/"+pattern), "/"), "/")
	cur := []string{"/"}
	for _, part := range parts {
		if part == "" {
			continue
		}
		var next []string
		for _, dir := range cur {
			if !hasMeta(part) {
				next = append(next, path.Join(dir, part))
				continue
			}
			real, err := r.realpath(r.host(dir))
			if err != nil {
				continue
			}
			ents, err := os.ReadDir(real)
			if err != nil {
				continue
			}
			for _, e := range ents {
				name := e.Name()
				if strings.HasPrefix(name, ".") && !strings.HasPrefix(part, ".") {
					continue
				}
				ok, err := path.Match(part, name)
				if err != nil {
					return nil, fmt.Errorf("pattern %q: %w", pattern, err)
				}
				if ok {
					next = append(next, path.Join(dir, name))
				}
			}
		}
		cur = next
	}
	var out []string
	for _, m := range cur {
		if _, err := r.realpath(r.host(m)); err == nil {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out, nil
}

func hasMeta(s string) bool {
	return strings.ContainsAny(s, `*?[\`)
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
