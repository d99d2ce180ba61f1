// Package image assembles the root file system of a node as one in-memory
// tree of entries and writes it out as a compressed initramfs. The tree holds
// references to host files, not their bytes, so a 100 MB node binary is read
// once, while writing.
package image

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Kind is the type of an entry.
type Kind int

const (
	KindDir Kind = iota
	KindFile
	KindSymlink
)

// Entry is one node of the root tree. Ownership defaults to root; everything
// that must not leak from the build host (uid, gid, mtime) is fixed here.
type Entry struct {
	Path   string      // absolute path in the image, cleaned, e.g. /usr/bin/node
	Kind   Kind        //
	Mode   fs.FileMode // Unix permission bits, 0o7777 (sticky is 0o1000 here)
	Source string      // host file to copy (KindFile), unless Data is set
	Data   []byte      // inline content for generated files
	Size   int64       // size of Source, filled by AddFile
	Link   string      // symlink target (KindSymlink)
	UID    int
	GID    int
}

// Tree is a set of entries keyed by path. Parent directories are implied:
// adding /a/b/c creates /a and /a/b (0755, root) when they are not there yet.
type Tree struct {
	entries map[string]*Entry
}

// NewTree returns a tree holding only the root directory.
func NewTree() *Tree {
	t := &Tree{entries: map[string]*Entry{}}
	t.entries["/"] = &Entry{Path: "/", Kind: KindDir, Mode: 0o755}
	return t
}

func clean(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("image path %q is not absolute", p)
	}
	return path.Clean(p), nil
}

// add inserts e, creating parents. A second entry at the same path must be
// identical in kind; the later one wins, which lets callers override defaults
// deliberately (e.g. a generated /etc file).
func (t *Tree) add(e *Entry) error {
	p, err := clean(e.Path)
	if err != nil {
		return err
	}
	e.Path = p
	if err := t.mkdirAll(path.Dir(p)); err != nil {
		return err
	}
	if old, ok := t.entries[p]; ok && old.Kind != e.Kind {
		if old.Kind == KindDir && p != "/" {
			return fmt.Errorf("image path %s: already a directory", p)
		}
	}
	t.entries[p] = e
	return nil
}

func (t *Tree) mkdirAll(dir string) error {
	if dir == "/" {
		return nil
	}
	if e, ok := t.entries[dir]; ok {
		if e.Kind != KindDir {
			return fmt.Errorf("image path %s: not a directory", dir)
		}
		return nil
	}
	if err := t.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	t.entries[dir] = &Entry{Path: dir, Kind: KindDir, Mode: 0o755}
	return nil
}

// AddDir adds a directory (or changes the mode/owner of an implied one).
func (t *Tree) AddDir(p string, mode fs.FileMode, uid, gid int) error {
	bits := mode & 0o7777
	if mode&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	return t.add(&Entry{Path: p, Kind: KindDir, Mode: bits, UID: uid, GID: gid})
}

// AddFile adds a copy of the host file src.
func (t *Tree) AddFile(p, src string, mode fs.FileMode, size int64) error {
	return t.add(&Entry{Path: p, Kind: KindFile, Mode: mode.Perm(), Source: src, Size: size})
}

// AddData adds a generated file.
func (t *Tree) AddData(p string, data []byte, mode fs.FileMode) error {
	return t.add(&Entry{Path: p, Kind: KindFile, Mode: mode.Perm(), Data: data, Size: int64(len(data))})
}

// AddSymlink adds a symbolic link.
func (t *Tree) AddSymlink(p, target string) error {
	return t.add(&Entry{Path: p, Kind: KindSymlink, Mode: 0o777, Link: target})
}

// Get returns the entry at p.
func (t *Tree) Get(p string) (*Entry, bool) {
	e, ok := t.entries[path.Clean(p)]
	return e, ok
}

// Entries returns all entries sorted by path, so that every writer emits them
// in the same order on every host: the first requirement of reproducibility.
// Sorting is byte-wise on the path, which puts a directory before its contents.
func (t *Tree) Entries() []*Entry {
	out := make([]*Entry, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Size is the sum of all file sizes in the tree.
func (t *Tree) Size() int64 {
	var n int64
	for _, e := range t.entries {
		if e.Kind == KindFile {
			n += e.Size
		}
	}
	return n
}

// Split divides the tree in two: the entries inBase selects, and the
// others. Each part also holds the directories above its entries, as they
// are in t, so that each part is a whole archive and the two unpacked one
// after the other (the kernel takes concatenated initramfs archives) give
// t. The parts share t's entries.
func (t *Tree) Split(inBase func(*Entry) bool) (base, rest *Tree) {
	base, rest = NewTree(), NewTree()
	base.entries["/"], rest.entries["/"] = t.entries["/"], t.entries["/"]
	for p, e := range t.entries {
		if p == "/" {
			continue
		}
		dst := rest
		if inBase(e) {
			dst = base
		}
		dst.entries[p] = e
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := dst.entries[d]; ok {
				break
			}
			dst.entries[d] = t.entries[d]
		}
	}
	return base, rest
}
