package datafs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
)

// Disk is the data partition as Prepare writes it: the block device on the
// node, a file standing in for it in tests.
type Disk interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes every write so far durable (fsync: on a block device it
	// also flushes the disk's write cache).
	Sync() error
}

// Options are Prepare's hooks into the node.
type Options struct {
	// Grow, when set, is called once a file system is about to be created
	// (nothing of value is on the partition then) and may make the
	// partition bigger; it returns the new size, or 0 when it stays.
	Grow func() (int64, error)
	// Log receives what Prepare does, for the console.
	Log func(format string, args ...any)
}

// Prepared says what Prepare found and did.
type Prepared struct {
	Found   State // what the partition held
	Created bool  // a new file system was made
	Size    int64 // the partition's size, after growing
}

// Prepare makes sure d (size bytes) holds an ext4 file system it may mount:
// it creates one on an empty partition, or on one whose creation was
// interrupted. Anything else (another file system, any bytes that are not
// nodeboot's own unfinished creation) is left untouched and reported as
// ErrForeign, so the caller falls back to a tmpfs and the owner can rescue it.
//
// A creation survives a power cut at any write (issue 12): the marker goes
// on disk first, the file system is written with the superblock's magic
// held back, and only once all of it is flushed does the magic follow, then
// the marker's removal. Until the magic is on disk the partition probes as
// Interrupted and the next Prepare starts again; a device that reorders
// writes between flushes cannot break this, since nothing is written after
// a flush that the state before it depends on.
func Prepare(d Disk, size int64, opt Options) (Prepared, error) {
	logf := opt.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	res := Prepared{Size: size}
	state, err := Probe(d)
	if err != nil {
		return res, err
	}
	res.Found = state
	switch state {
	case Ext4:
		return res, clearStaleMarker(d, logf)
	case Unknown:
		return res, ErrForeign
	case Empty:
		logf("data partition is empty (first boot): creating an ext4 file system")
	case Interrupted:
		logf("data partition holds an ext4 creation that was interrupted (a power cut during the first boot?): creating it again")
	}
	if opt.Grow != nil {
		if grown, err := opt.Grow(); err != nil {
			logf("data partition keeps its size of %d MiB: %v", size>>20, err)
		} else if grown > 0 {
			logf("grew the data partition from %d MiB to %d MiB (the rest of the disk)", size>>20, grown>>20)
			res.Size = grown
		}
	}
	start := time.Now()
	if err := create(d, res.Size); err != nil {
		return res, err
	}
	res.Created = true
	logf("created ext4 of %d MiB in %v", res.Size>>20, time.Since(start).Round(time.Millisecond))
	return res, nil
}

// create writes a new file system on d in the order Prepare's comment gives.
func create(d Disk, size int64) error {
	if _, err := d.WriteAt(marker[:], 0); err != nil {
		return fmt.Errorf("writing the creation marker: %w", err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("flushing the creation marker: %w", err)
	}
	s := &staged{d: d}
	if _, err := ext4.Create(storage{s}, size, 0, 512, &ext4.Params{VolumeName: Label}); err != nil {
		return fmt.Errorf("creating ext4: %w", err)
	}
	if !s.magicSet || s.magic != [2]byte{ext4Magic & 0xff, ext4Magic >> 8} {
		return fmt.Errorf("creating ext4: the superblock's magic was %x, not ext4's", s.magic)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("flushing the new file system: %w", err)
	}
	if _, err := d.WriteAt(s.magic[:], magicOff); err != nil {
		return fmt.Errorf("writing the superblock's magic: %w", err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("flushing the superblock's magic: %w", err)
	}
	if _, err := d.WriteAt(s.head[:], 0); err != nil {
		return fmt.Errorf("clearing the creation marker: %w", err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("flushing the cleared creation marker: %w", err)
	}
	return nil
}

// clearStaleMarker removes a marker left by a power cut between a
// creation's magic and the marker's removal. The file system is complete
// then, and ext4 never uses the first sector; the marker must go before
// anything else happens, or a superblock damaged later would be taken for
// an unfinished creation and formatted.
func clearStaleMarker(d Disk, logf func(string, ...any)) error {
	head := make([]byte, markerSize)
	if _, err := d.ReadAt(head, 0); err != nil {
		return fmt.Errorf("reading the first sector: %w", err)
	}
	if !bytes.Equal(head, marker[:]) {
		return nil
	}
	logf("data partition: clearing the creation marker a power cut left behind a finished file system")
	if _, err := d.WriteAt(make([]byte, markerSize), 0); err != nil {
		return fmt.Errorf("clearing the creation marker: %w", err)
	}
	if err := d.Sync(); err != nil {
		return fmt.Errorf("flushing the cleared creation marker: %w", err)
	}
	return nil
}

// ErrForeign says the partition holds something that is neither empty, nor
// nodeboot's ext4, nor its unfinished creation.
var ErrForeign = errors.New("the data partition holds no ext4 file system and is not empty (corrupted superblock? another system's data?); it was NOT formatted and is left as it is")

// staged is the partition as go-diskfs sees it while it creates the file
// system: every write goes through except two ranges, held back until the
// rest is on disk. The marker sector keeps the marker (head records what
// the file system wants there, zeros unless go-diskfs writes it), and the
// primary superblock's magic stays zero (magic records the real one).
// Reads see what was asked for, so go-diskfs reads back its own writes.
type staged struct {
	d        Disk
	head     [markerSize]byte
	magic    [2]byte
	magicSet bool
}

func (s *staged) WriteAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	if off >= magicOff+2 || end <= 0 || (end <= magicOff && off >= markerSize) {
		return s.d.WriteAt(p, off)
	}
	q := bytes.Clone(p)
	for i := max(off, 0); i < min(end, markerSize); i++ {
		s.head[i] = p[i-off]
		q[i-off] = marker[i]
	}
	for i := max(off, magicOff); i < min(end, magicOff+2); i++ {
		s.magic[i-magicOff] = p[i-off]
		s.magicSet = true
		q[i-off] = 0
	}
	return s.d.WriteAt(q, off)
}

func (s *staged) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.d.ReadAt(p, off)
	end := off + int64(n)
	for i := max(off, 0); i < min(end, markerSize); i++ {
		p[i-off] = s.head[i]
	}
	if s.magicSet {
		for i := max(off, magicOff); i < min(end, magicOff+2); i++ {
			p[i-off] = s.magic[i-magicOff]
		}
	}
	return n, err
}

// storage presents the staged partition to go-diskfs.
type storage struct{ s *staged }

func (s storage) ReadAt(p []byte, off int64) (int, error)  { return s.s.ReadAt(p, off) }
func (s storage) WriteAt(p []byte, off int64) (int, error) { return s.s.WriteAt(p, off) }

// The rest of backend.Storage: ext4.Create reads and writes at offsets
// only; it asks for an *os.File to sync it, which Prepare does itself.
func (s storage) Stat() (fs.FileInfo, error)              { return nil, backend.ErrNotSuitable }
func (s storage) Read([]byte) (int, error)                { return 0, backend.ErrNotSuitable }
func (s storage) Seek(int64, int) (int64, error)          { return 0, backend.ErrNotSuitable }
func (s storage) Close() error                            { return nil }
func (s storage) Sys() (*os.File, error)                  { return nil, backend.ErrNotSuitable }
func (s storage) Writable() (backend.WritableFile, error) { return s, nil }
func (s storage) Path() string                            { return "" }
