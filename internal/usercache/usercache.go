// Package usercache knows what nodeboot keeps in the user cache dir (node
// versions, kernels, the images `nodeboot run` builds per app dir), lists it
// and prunes it, never deleting what a running VM uses: `run` holds a shared
// flock on <image dir>.lock for as long as it builds and boots, and prune
// removes an entry only while it holds that lock exclusively.
package usercache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Kinds of entries, each one directory of the cache.
const (
	KindNode   = "node"   // node/<version>-<arch>: node from the npm registry
	KindKernel = "kernel" // modules/...@<version>: the kernel module; kernel/: nodeboot's own builds
	KindRun    = "run"    // run/<hash>: the image `nodeboot run APP_DIR` built and boots
	// KindParts: parts/initramfs-<content key>: the system part of an
	// initramfs (PID 1, node, libraries) that rebuilds copy; and digests/,
	// the remembered SHA-256 of unchanged files (internal/filedigest).
	KindParts = "parts"
)

// Root is nodeboot's directory in the user cache dir.
func Root() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache dir: %w (set HOME or XDG_CACHE_HOME)", err)
	}
	return filepath.Join(d, "nodeboot"), nil
}

// Entry is one removable thing in the cache.
type Entry struct {
	Kind    string
	Name    string
	Path    string
	Bytes   int64 // disk space used (allocated blocks: run images are sparse)
	ModTime time.Time
	InUse   bool // a running nodeboot run holds it
}

// List returns the cache's entries under root, largest kinds first by name.
func List(root string) ([]Entry, error) {
	var out []Entry
	add := func(kind, dir string, depth int) error {
		paths, err := entriesAt(dir, depth)
		if err != nil {
			return err
		}
		for _, p := range paths {
			rel, _ := filepath.Rel(dir, p)
			e := Entry{Kind: kind, Name: filepath.ToSlash(rel), Path: p}
			if fi, err := os.Stat(p); err == nil {
				e.ModTime = fi.ModTime()
			}
			e.Bytes = diskUsage(p)
			if kind == KindRun {
				e.InUse = busy(p)
			}
			out = append(out, e)
		}
		return nil
	}
	if err := add(KindNode, filepath.Join(root, "node"), 1); err != nil {
		return nil, err
	}
	// modules/<escaped module path>@<version>: the module path has slashes.
	if err := add(KindKernel, filepath.Join(root, "modules"), -1); err != nil {
		return nil, err
	}
	if err := add(KindKernel, filepath.Join(root, "kernel"), 1); err != nil {
		return nil, err
	}
	if err := add(KindRun, filepath.Join(root, "run"), 1); err != nil {
		return nil, err
	}
	if err := add(KindParts, filepath.Join(root, KindParts), 1); err != nil {
		return nil, err
	}
	// Many small files: listed as one entry.
	if d := filepath.Join(root, "digests"); exists(d) {
		e := Entry{Kind: KindParts, Name: "digests", Path: d, Bytes: diskUsage(d)}
		if fi, err := os.Stat(d); err == nil {
			e.ModTime = fi.ModTime()
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// entriesAt lists the directories depth levels under dir (depth -1: the
// first directory whose name holds an @, as module versions do), skipping
// lock files and temporary work (".tmp-*", ".nodeboot-tmp-*").
func entriesAt(dir string, depth int) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the cache: %w", err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".lock") {
			continue
		}
		p := filepath.Join(dir, n)
		switch {
		case depth == 1 || (depth == -1 && strings.Contains(n, "@")):
			out = append(out, p)
		case e.IsDir():
			sub, err := entriesAt(p, depth)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
		}
	}
	return out, nil
}

// Prune removes every entry keep does not keep and no running VM uses. It
// returns what it removed and what it left because it is in use.
func Prune(root string, keep func(Entry) bool) (removed, inUse []Entry, err error) {
	ents, err := List(root)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		if keep != nil && keep(e) {
			continue
		}
		if e.Kind == KindRun {
			ok, err := removeUnlessBusy(e.Path)
			if err != nil {
				return removed, inUse, err
			}
			if !ok {
				inUse = append(inUse, e)
				continue
			}
		} else if err := removeAll(e.Path); err != nil {
			return removed, inUse, fmt.Errorf("removing %s: %w", e.Path, err)
		}
		removed = append(removed, e)
	}
	return removed, inUse, nil
}

// removeAll removes a tree even where files were made read-only (module
// zips are extracted so).
func removeAll(p string) error {
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(q, 0o755)
		}
		return nil
	})
	return os.RemoveAll(p)
}

// diskUsage sums the blocks allocated to files under p.
func diskUsage(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += allocated(fi)
		}
		return nil
	})
	return n
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
