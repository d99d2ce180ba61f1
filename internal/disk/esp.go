package disk

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// Entry is a Boot Loader Specification type 1 entry, as far as nodeboot's
// images use it.
type Entry struct {
	ID       string // file name under /loader/entries, e.g. "nodeboot-a+3.conf"
	Title    string
	SortKey  string
	Version  string
	Linux    string // ESP path of the kernel
	Options  string // the kernel command line
	Initrd   []string
	TriesOK  bool // the name has a boot counter
	TriesOut bool // ... and it has run out: systemd-boot sorts it last
}

// maxEntrySize bounds what ParseEntry reads: real entries are a few hundred
// bytes, and an image is untrusted input.
const maxEntrySize = 64 << 10

// ParseEntry parses the entry file id with content b. Unknown keys are
// ignored, as the specification asks; an entry without a "linux" line is
// an error, because nothing could be booted from it.
func ParseEntry(id string, b []byte) (*Entry, error) {
	if len(b) > maxEntrySize {
		return nil, fmt.Errorf("boot entry %s: %d bytes, more than an entry can be (%d)", id, len(b), maxEntrySize)
	}
	e := &Entry{ID: id}
	e.TriesOK, e.TriesOut = triesOf(id)
	var opts []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), maxEntrySize)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		v = strings.TrimSpace(v)
		switch k {
		case "title":
			e.Title = v
		case "sort-key":
			e.SortKey = v
		case "version":
			e.Version = v
		case "linux":
			e.Linux = v
		case "options":
			// Several options lines are joined, in order.
			if v != "" {
				opts = append(opts, v)
			}
		case "initrd":
			e.Initrd = append(e.Initrd, v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("boot entry %s: %w", id, err)
	}
	if e.Linux == "" {
		return nil, fmt.Errorf("boot entry %s has no linux line: it names no kernel", id)
	}
	e.Options = strings.Join(opts, " ")
	return e, nil
}

// triesOf reads systemd-boot's boot counter from an entry's file name:
// "x+3.conf" has three tries left, "x+0-3.conf" none.
func triesOf(id string) (counted, out bool) {
	base := strings.TrimSuffix(id, ".conf")
	i := strings.LastIndexByte(base, '+')
	if i < 0 {
		return false, false
	}
	left, _, _ := strings.Cut(base[i+1:], "-")
	n, err := strconv.Atoi(left)
	if err != nil || n < 0 {
		return false, false
	}
	return true, n == 0
}

// Choose returns the entry systemd-boot boots with loader.conf's default
// pattern and no one at the keyboard: entries whose tries ran out go last;
// then by sort key, version (newest first) and file name (last first); the
// first that matches the pattern wins, or the first of all without one.
func Choose(entries []*Entry, defaultPattern string) (*Entry, error) {
	if len(entries) == 0 {
		return nil, errors.New("the ESP has no boot entries in /loader/entries")
	}
	sorted := append([]*Entry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.TriesOut != b.TriesOut {
			return !a.TriesOut
		}
		if a.SortKey != b.SortKey {
			return a.SortKey < b.SortKey
		}
		if a.Version != b.Version {
			return a.Version > b.Version
		}
		return a.ID > b.ID
	})
	if defaultPattern == "" {
		return sorted[0], nil
	}
	for _, e := range sorted {
		if ok, _ := path.Match(defaultPattern, e.ID); ok {
			return e, nil
		}
		if ok, _ := path.Match(defaultPattern, strings.TrimSuffix(e.ID, ".conf")); ok {
			return e, nil
		}
	}
	return nil, fmt.Errorf("no boot entry matches loader.conf's default %q", defaultPattern)
}

// loaderDefault reads the "default" pattern from loader.conf.
func loaderDefault(b []byte) string {
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		if k == "default" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Boot is what an image's ESP says to boot.
type Boot struct {
	Entry  *Entry
	Kernel []byte
}

// maxKernelSize bounds the kernel ReadBoot reads from an image.
const maxKernelSize = 256 << 20

// ReadBoot reads the image at imgPath's ESP and returns the entry
// systemd-boot would boot and that entry's kernel, so a VM can load the
// kernel directly instead of going through UEFI firmware.
func ReadBoot(imgPath string) (b *Boot, err error) {
	// go-diskfs trusts the FAT boot sector's fields and panics on some
	// damaged ones (FuzzReadBoot found a slice out of range in its FAT
	// table reader); a damaged image must be an error `run` can explain.
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("%s is damaged: its partition table or EFI system partition cannot be read (%v); rebuild it with `nodeboot build --format disk`", imgPath, r)
		}
	}()
	d, err := diskfs.Open(imgPath, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", imgPath, err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		return nil, fmt.Errorf("%s has no partition table nodeboot can read (is it a disk image from `nodeboot build --format disk`?): %w", imgPath, err)
	}
	t, ok := pt.(*gpt.Table)
	if !ok {
		return nil, fmt.Errorf("%s: partition table is not GPT", imgPath)
	}
	esp := 0
	for i, p := range t.Partitions {
		if strings.EqualFold(string(p.Type), TypeESP) {
			esp = i + 1
			break
		}
	}
	if esp == 0 {
		return nil, fmt.Errorf("%s has no EFI system partition", imgPath)
	}
	if err := checkFATBootSector(imgPath, t.Partitions[esp-1].GetStart(), t.Partitions[esp-1].GetSize()); err != nil {
		return nil, fmt.Errorf("%s: the EFI system partition is damaged: %w; rebuild the image with `nodeboot build --format disk`", imgPath, err)
	}
	fsys, err := d.GetFilesystem(esp)
	if err != nil {
		return nil, fmt.Errorf("%s: reading the ESP's FAT file system: %w", imgPath, err)
	}
	defer fsys.Close()
	conf, err := readLimited(fsys, "/loader/loader.conf", maxEntrySize)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", imgPath, err)
	}
	infos, err := fsys.ReadDir("loader/entries")
	if err != nil {
		return nil, fmt.Errorf("%s: the ESP has no /loader/entries: %w", imgPath, err)
	}
	var entries []*Entry
	for _, fi := range infos {
		name := fi.Name()
		if fi.IsDir() || !strings.HasSuffix(strings.ToLower(name), ".conf") {
			continue
		}
		b, err := readLimited(fsys, "/loader/entries/"+name, maxEntrySize)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", imgPath, err)
		}
		e, err := ParseEntry(name, b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", imgPath, err)
		}
		entries = append(entries, e)
	}
	e, err := Choose(entries, loaderDefault(conf))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", imgPath, err)
	}
	if len(e.Initrd) > 0 {
		return nil, fmt.Errorf("%s: boot entry %s has an initrd, which a direct kernel boot does not load yet", imgPath, e.ID)
	}
	k, err := readLimited(fsys, e.Linux, maxKernelSize)
	if err != nil {
		return nil, fmt.Errorf("%s: boot entry %s: %w", imgPath, e.ID, err)
	}
	return &Boot{Entry: e, Kernel: k}, nil
}

// checkFATBootSector refuses an ESP whose FAT32 boot sector describes
// more than the partition holds. go-diskfs sizes its buffers from these
// fields as they are: a damaged sector asking for a FAT of 400 GiB made it
// allocate until the process died (found by FuzzReadBoot).
func checkFATBootSector(imgPath string, off, size int64) error {
	f, err := os.Open(imgPath)
	if err != nil {
		return err
	}
	defer f.Close()
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, off); err != nil {
		return fmt.Errorf("reading its boot sector: %w", err)
	}
	bps := int64(binary.LittleEndian.Uint16(bs[0x0b:]))
	spc := int64(bs[0x0d])
	reserved := int64(binary.LittleEndian.Uint16(bs[0x0e:]))
	fats := int64(bs[0x10])
	total := int64(binary.LittleEndian.Uint32(bs[0x20:]))
	fatSectors := int64(binary.LittleEndian.Uint32(bs[0x24:]))
	switch {
	case bs[510] != 0x55 || bs[511] != 0xaa:
		return errors.New("no boot sector signature")
	case bps != 512 && bps != 1024 && bps != 2048 && bps != 4096:
		return fmt.Errorf("%d bytes per sector", bps)
	case spc == 0 || spc&(spc-1) != 0:
		return fmt.Errorf("%d sectors per cluster", spc)
	case reserved == 0 || fats == 0 || fats > 2 || fatSectors == 0:
		return errors.New("no FAT described")
	case total*bps > size:
		return fmt.Errorf("the file system (%d bytes) is larger than its partition (%d bytes)", total*bps, size)
	case (reserved+fats*fatSectors)*bps > size:
		return fmt.Errorf("its FATs end beyond its partition")
	}
	return nil
}

// readLimited reads a whole file of fsys, refusing one bigger than limit.
func readLimited(fsys fs.FS, name string, limit int64) ([]byte, error) {
	// io/fs paths: no leading slash (a BLS entry's paths have one).
	f, err := fsys.Open(strings.TrimPrefix(name, "/"))
	if err != nil {
		return nil, fmt.Errorf("reading %s on the ESP: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s on the ESP: %w", name, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s on the ESP is bigger than %d MiB", name, limit>>20)
	}
	return b, nil
}

// WriteKernel writes b.Kernel to a new file in dir for QEMU's -kernel and
// returns its path.
func (b *Boot) WriteKernel(dir string) (string, error) {
	f, err := os.CreateTemp(dir, "vmlinuz-*")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(b.Kernel); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), f.Close()
}
