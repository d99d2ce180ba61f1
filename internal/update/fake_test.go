package update

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
)

// The fakes below stand in for the ESP, the state directory and the slot
// devices so that the power can be cut between any two writes. Each write
// the updater asks for is split into the steps a real file system takes
// (a FAT rename links the new name before it unlinks the old one; a file's
// data reaches the disk only at its sync), and the crasher can stop the
// machine before any step. After a cut, data that was never synced is
// lost, or half-written.

// powerCut is what the crasher panics with.
type powerCut struct{ step int }

type crasher struct {
	n  int // steps taken
	at int // the step that does not happen (0: never)
}

func (c *crasher) point() {
	c.n++
	if c.at > 0 && c.n == c.at {
		panic(powerCut{c.n})
	}
}

// memDir is a Dir in memory, durable unless the power is cut.
type memDir struct {
	cr      *crasher
	files   map[string][]byte
	pending map[string]*memFile // open files with unsynced writes
}

func newMemDir(cr *crasher) *memDir {
	return &memDir{cr: cr, files: map[string][]byte{}, pending: map[string]*memFile{}}
}

func clean(name string) string { return path.Clean("/" + name) }

func (d *memDir) ReadFile(name string) ([]byte, error) {
	b, ok := d.files[clean(name)]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return append([]byte(nil), b...), nil
}

func (d *memDir) ReadDir(dir string) ([]string, error) {
	dir = clean(dir)
	var names []string
	for p := range d.files {
		if path.Dir(p) == dir {
			names = append(names, path.Base(p))
		}
	}
	sort.Strings(names)
	return names, nil
}

func (d *memDir) WriteFile(name string, data []byte) error {
	name = clean(name)
	tmp := path.Join(path.Dir(name), "."+path.Base(name)+".tmp")
	d.cr.point()
	d.files[tmp] = append([]byte(nil), data[:len(data)/2]...) // written, not yet synced: torn
	d.cr.point()
	d.files[tmp] = append([]byte(nil), data...) // synced
	return d.rename(tmp, name)
}

func (d *memDir) Rename(oldname, newname string) error {
	oldname, newname = clean(oldname), clean(newname)
	if _, ok := d.files[oldname]; !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	return d.rename(oldname, newname)
}

// rename as FAT does it: the new directory entry, then the old one freed.
func (d *memDir) rename(oldname, newname string) error {
	d.cr.point()
	d.files[newname] = d.files[oldname]
	d.cr.point()
	delete(d.files, oldname)
	return nil
}

func (d *memDir) Remove(name string) error {
	name = clean(name)
	if _, ok := d.files[name]; !ok {
		return nil
	}
	d.cr.point()
	delete(d.files, name)
	return nil
}

func (d *memDir) OpenFile(name string, truncate bool) (File, error) {
	name = clean(name)
	d.cr.point()
	if _, ok := d.files[name]; !ok || truncate {
		d.files[name] = nil
	}
	f := &memFile{cr: d.cr, data: &d.files, name: name}
	d.pending[name] = f
	return f, nil
}

// cut loses what was never synced (half of the first pending write lands).
func (d *memDir) cut() {
	for _, f := range d.pending {
		f.cut()
	}
	// Half-written temporary files stay, as on a real FAT: systemd-boot
	// skips their names, and the updater never reads them.
	d.pending = map[string]*memFile{}
}

// memFile is a file (or, with data pointing at its own map, a device)
// whose writes are durable only after Sync.
type memFile struct {
	cr      *crasher
	data    *map[string][]byte
	name    string
	pending []write
	closed  bool
}

type write struct {
	off int64
	b   []byte
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	if f.closed {
		return 0, errors.New("write to a closed file")
	}
	f.cr.point()
	f.pending = append(f.pending, write{off, append([]byte(nil), p...)})
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.cr.point()
	for _, w := range f.pending {
		f.apply(w)
	}
	f.pending = nil
	return nil
}

func (f *memFile) apply(w write) {
	b := (*f.data)[f.name]
	if end := w.off + int64(len(w.b)); int64(len(b)) < end {
		b = append(b, make([]byte, end-int64(len(b)))...)
	}
	copy(b[w.off:], w.b)
	(*f.data)[f.name] = b
}

func (f *memFile) cut() {
	if len(f.pending) > 0 {
		w := f.pending[0]
		f.apply(write{w.off, w.b[:len(w.b)/2]})
	}
	f.pending = nil
}

func (f *memFile) Close() error { f.closed = true; return nil }

// memDevice is a slot's block device: a fixed size, writes durable at Sync.
type memDevice struct {
	cr    *crasher
	disk  map[string][]byte // one entry, "dev"
	size  int64
	open  []*memFile
	opens int
}

func newMemDevice(cr *crasher, size int64) *memDevice {
	return &memDevice{cr: cr, disk: map[string][]byte{"dev": make([]byte, 0, 1<<20)}, size: size}
}

func (d *memDevice) Open() (Device, error) {
	d.opens++
	f := &memFile{cr: d.cr, data: &d.disk, name: "dev"}
	d.open = append(d.open, f)
	return sizedFile{f, d.size}, nil
}

type sizedFile struct {
	*memFile
	size int64
}

func (s sizedFile) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > s.size {
		return 0, fmt.Errorf("write beyond the device's end (%d bytes)", s.size)
	}
	return s.memFile.WriteAt(p, off)
}

func (d *memDevice) bytes() []byte { return d.disk["dev"] }

func (d *memDevice) cut() {
	for _, f := range d.open {
		f.cut()
	}
	d.open = nil
}

func sha256sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
