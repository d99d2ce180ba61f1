// Package disk writes an installable, UEFI-bootable raw disk image of a node:
// a GPT disk holding an EFI system partition with systemd-boot, two root file
// system slots (A and B, for updates) and a data partition. Everything is
// written in Go into a plain file: no root, no loop devices, no mkfs.
//
//	LBA 0       protective MBR
//	LBA 1-33    GPT header and partition entries
//	1 MiB       1 ESP     FAT32, systemd-boot, loader entries, slot kernels
//	            2 root A  squashfs of the root tree, mounted read-only
//	            3 root B  same size, empty until an update fills it
//	            4 data    the rest; empty: the init makes its file system
//	last 33 LBA backup GPT
package disk

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/target"
)

const (
	// MiB is the partition alignment.
	MiB = int64(1) << 20

	// DefaultSize is the image size when Options.Size is 0.
	DefaultSize = 2 << 30
	// DefaultESPSize is the ESP's size when Options.ESPSize is 0.
	DefaultESPSize = 128 * MiB
	// MinRootSize is the smallest default root slot.
	MinRootSize = 256 * MiB
	// MinDataSize is the smallest data partition Write accepts: room for an
	// ext4 journal, logs and a few app bundles.
	MinDataSize = 64 * MiB
	// DefaultSystemdBoot is where Debian's systemd-boot-efi puts the loader.
	DefaultSystemdBoot = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"

	// GPT partition type GUIDs (Discoverable Partitions Specification).
	TypeESP        = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeRootX86_64 = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	TypeLinuxData  = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

	// GPT partition names; the init finds its partitions by them.
	LabelESP   = "nodeboot-esp"
	LabelRootA = "nodeboot-root-a"
	LabelRootB = "nodeboot-root-b"
	LabelData  = "nodeboot-data"

	// BootTries is the boot counter a new entry starts with: systemd-boot
	// counts a try down on every boot of the entry, and one whose tries are
	// used up without the init blessing it sorts last.
	BootTries = 3

	// gptTail is what the backup GPT takes at the end of the disk: 32
	// sectors of partition entries and the header.
	gptTail = 33 * 512
)

// Slot is what a root slot boots: its kernel, complete command line and the
// title systemd-boot shows.
type Slot struct {
	Kernel  string // host path of the bzImage
	Cmdline string
	Title   string
}

// Options describe a disk image.
type Options struct {
	// Path of the image file. It is written under a temporary name and
	// renamed into place, so an error leaves nothing half-written.
	Path string
	// Size of the image in bytes (DefaultSize if 0); a multiple of 512.
	Size int64
	// Root is the root file system: the tree an initramfs would hold.
	Root *image.Tree
	// Kernel is the bzImage of slot A.
	Kernel string
	// Cmdline is the base kernel command line. Write appends the root
	// device (root=PARTUUID=<slot A> rootfstype=squashfs ro rootwait) and,
	// when the tree has /init and the line names no init, init=/init: on a
	// disk the kernel would otherwise look for /sbin/init.
	Cmdline string
	// Title of slot A's boot entry ("nodeboot" if empty).
	Title string
	// SystemdBoot is systemd-boot's EFI binary for Arch
	// (DefaultSystemdBoot if empty, which is amd64's).
	SystemdBoot string
	// Arch is the target architecture ("" = amd64): the boot loader's
	// file name on the ESP and the root partitions' type.
	Arch string
	// ESPSize is the EFI system partition's size (DefaultESPSize if 0).
	ESPSize int64
	// RootSize is each root slot's size. If 0: twice the root file system,
	// rounded up to 64 MiB, and at least MinRootSize, so that an update of
	// the same app still fits its slot.
	RootSize int64
	// RootCompression of the squashfs: "gzip" (zlib, the default) or "none".
	RootCompression string
	// MTime is every file's modification time (the Unix epoch if zero).
	MTime time.Time
	// Seed derives every GUID of the image (disk, partitions) and the ESP's
	// volume serial, so the same inputs give the same bytes. Pass the image's
	// input digest. If empty, it is the digest of the root file system, the
	// kernel, systemd-boot and the command line.
	Seed string
}

// Partition is one GPT entry.
type Partition struct {
	Number int    // GPT entry number, 1-based (the N in /dev/vdaN)
	Label  string // GPT partition name
	Type   string // partition type GUID, upper case
	GUID   string // unique partition GUID (PARTUUID), lower case
	Offset int64  // bytes from the start of the disk
	Size   int64  // bytes
}

// Layout is what Write produced.
type Layout struct {
	Size     int64
	DiskGUID string
	ESP      Partition
	RootA    Partition
	RootB    Partition
	Data     Partition
	// VolumeID is the ESP's FAT volume serial number.
	VolumeID uint32
	// RootFSSize is the size of slot A's squashfs, padded to 4 KiB.
	RootFSSize int64
	// SlotA is what slot A boots; its Cmdline is the complete one.
	SlotA Slot
	// EntryPath is slot A's boot entry on the ESP.
	EntryPath string
}

// TooSmallError is returned when the image cannot hold its contents.
type TooSmallError struct {
	What string // "image" or "root slot"
	Size int64
	Min  int64
}

func (e *TooSmallError) Error() string {
	return fmt.Sprintf("%s size %s is too small: it needs at least %s (%d bytes)", e.What, mib(e.Size), mib(e.Min), e.Min)
}

func mib(n int64) string {
	if n%MiB == 0 {
		return fmt.Sprintf("%d MiB", n/MiB)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/float64(MiB))
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// ErrNoSystemdBoot is wrapped by Write's error when systemd-boot is missing.
var ErrNoSystemdBoot = errors.New("systemd-boot EFI binary not found")

// Write writes the disk image described by o.
func Write(o Options) (*Layout, error) {
	if o.Path == "" {
		return nil, errors.New("disk image: no output path")
	}
	if o.Root == nil {
		return nil, errors.New("disk image: no root tree")
	}
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.ESPSize == 0 {
		o.ESPSize = DefaultESPSize
	}
	tgt, err := target.Lookup(cmp.Or(o.Arch, "amd64"))
	if err != nil {
		return nil, err
	}
	if o.SystemdBoot == "" {
		o.SystemdBoot = DefaultSystemdBoot
	}
	if o.Title == "" {
		o.Title = "nodeboot"
	}
	raw := false
	switch o.RootCompression {
	case "", "gzip":
	case "none":
		raw = true
	default:
		return nil, fmt.Errorf("unknown root file system compression %q: use gzip or none", o.RootCompression)
	}
	if o.Size <= 0 || o.Size%512 != 0 {
		return nil, fmt.Errorf("image size %d is not a positive multiple of 512 bytes", o.Size)
	}
	if o.ESPSize%MiB != 0 || o.RootSize%MiB != 0 {
		return nil, errors.New("ESP and root slot sizes must be whole MiB")
	}
	if _, err := fatGeometryFor(o.ESPSize); err != nil {
		return nil, err
	}
	if st, err := os.Stat(o.SystemdBoot); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w at %s: install it with `apt-get install systemd-boot-efi` (Debian, Ubuntu)", ErrNoSystemdBoot, o.SystemdBoot)
	}
	if st, err := os.Stat(o.Kernel); err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("kernel %s is not a regular file", o.Kernel)
	}

	espOff := MiB
	rootAOff := espOff + o.ESPSize
	minimum := func(root int64) int64 {
		return roundUp(rootAOff+2*root+MinDataSize+gptTail, MiB)
	}
	// Fail before the long part when even the smallest root slot cannot fit.
	guess := o.RootSize
	if guess == 0 {
		guess = MinRootSize
	}
	if o.Size < minimum(guess) {
		return nil, &TooSmallError{What: "image", Size: o.Size, Min: minimum(guess)}
	}

	pf, err := renameio.NewPendingFile(o.Path, renameio.WithPermissions(0o644))
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", o.Path, err)
	}
	defer pf.Cleanup()
	// A sparse file: the unwritten parts (slot B, the data partition) are
	// zeros and take no space until copied to a real disk.
	if err := pf.Truncate(o.Size); err != nil {
		return nil, fmt.Errorf("creating %s: %w", o.Path, err)
	}

	sqSize, err := writeSquashfs(o.Root, pf, rootAOff, squashfsOptions{MTime: unixTime(o.MTime), Uncompress: raw})
	if err != nil {
		return nil, fmt.Errorf("writing the root file system: %w", err)
	}
	rootSize := o.RootSize
	if rootSize == 0 {
		rootSize = max(roundUp(2*sqSize, 64*MiB), MinRootSize)
	} else if rootSize < sqSize {
		return nil, &TooSmallError{What: "root slot", Size: rootSize, Min: roundUp(sqSize, MiB)}
	}
	if o.Size < minimum(rootSize) {
		return nil, &TooSmallError{What: "image", Size: o.Size, Min: minimum(rootSize)}
	}

	seed := o.Seed
	if seed == "" {
		if seed, err = deriveSeed(pf, rootAOff, sqSize, o); err != nil {
			return nil, err
		}
	}
	l := &Layout{
		Size:       o.Size,
		DiskGUID:   seedGUID(seed, "disk"),
		VolumeID:   binary.LittleEndian.Uint32(seedBytes(seed, "esp-volume-id")),
		RootFSSize: sqSize,
	}
	lastUsable := o.Size - gptTail // end of the last usable sector
	l.ESP = Partition{1, LabelESP, TypeESP, seedGUID(seed, "esp"), espOff, o.ESPSize}
	l.RootA = Partition{2, LabelRootA, tgt.RootType, seedGUID(seed, "root-a"), rootAOff, rootSize}
	l.RootB = Partition{3, LabelRootB, tgt.RootType, seedGUID(seed, "root-b"), rootAOff + rootSize, rootSize}
	dataOff := l.RootB.Offset + rootSize
	l.Data = Partition{4, LabelData, TypeLinuxData, seedGUID(seed, "data"), dataOff, lastUsable - dataOff}

	l.SlotA = Slot{Kernel: o.Kernel, Cmdline: SlotCmdline(o.Cmdline, l.RootA.GUID, hasInit(o.Root)), Title: o.Title}
	entryPath, entry := BootEntry("a", l.SlotA, BootTries)
	l.EntryPath = entryPath
	files := []fatFile{
		{Path: tgt.EFIBootFile, Src: o.SystemdBoot},
		{Path: "/loader/loader.conf", Data: LoaderConf()},
		{Path: entryPath, Data: entry},
		{Path: KernelPath("a"), Src: o.Kernel},
	}
	if err := writeFAT32(pf, espOff, fatOptions{
		Size:     o.ESPSize,
		Hidden:   uint32(espOff / 512),
		VolumeID: l.VolumeID,
		Label:    "NODEBOOT",
		Time:     o.MTime,
	}, files); err != nil {
		return nil, fmt.Errorf("writing the ESP: %w", err)
	}

	// Slot B and the data partition start with a zeroed MiB, so that nothing
	// probes a stale file system there (they are zero in a new sparse file
	// already; this keeps it so if the writer ever targets a device).
	zero := make([]byte, MiB)
	for _, p := range []Partition{l.RootB, l.Data} {
		if _, err := pf.WriteAt(zero[:min(MiB, p.Size)], p.Offset); err != nil {
			return nil, fmt.Errorf("writing %s: %w", o.Path, err)
		}
	}

	if err := writeGPT(pf, l); err != nil {
		return nil, err
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return nil, fmt.Errorf("writing %s: %w", o.Path, err)
	}
	return l, nil
}

func writeGPT(f *renameio.PendingFile, l *Layout) error {
	t := &gpt.Table{
		LogicalSectorSize:  512,
		PhysicalSectorSize: 512,
		ProtectiveMBR:      true,
		GUID:               l.DiskGUID,
	}
	for _, p := range []Partition{l.ESP, l.RootA, l.RootB, l.Data} {
		t.Partitions = append(t.Partitions, &gpt.Partition{
			Index: p.Number,
			Start: uint64(p.Offset / 512),
			End:   uint64((p.Offset+p.Size)/512 - 1),
			Size:  uint64(p.Size),
			Type:  gpt.Type(p.Type),
			Name:  p.Label,
			GUID:  p.GUID,
		})
	}
	// go-diskfs fsyncs after each of its writes when the file can; one
	// fsync, renameio's before the rename, is enough for the whole image.
	if err := t.Write(unsynced{f.File}, l.Size); err != nil {
		return fmt.Errorf("writing the partition table: %w", err)
	}
	return nil
}

// unsynced hides *os.File's Sync method.
type unsynced struct{ f *os.File }

func (u unsynced) Read(b []byte) (int, error)                { return u.f.Read(b) }
func (u unsynced) ReadAt(b []byte, off int64) (int, error)   { return u.f.ReadAt(b, off) }
func (u unsynced) WriteAt(b []byte, off int64) (int, error)  { return u.f.WriteAt(b, off) }
func (u unsynced) Seek(off int64, whence int) (int64, error) { return u.f.Seek(off, whence) }
func (u unsynced) Stat() (fs.FileInfo, error)                { return u.f.Stat() }
func (u unsynced) Close() error                              { return nil }

// SlotCmdline is the complete kernel command line of a slot whose root file
// system is the partition with PARTUUID rootGUID.
func SlotCmdline(base, rootGUID string, addInit bool) string {
	fields := strings.Fields(base)
	hasWait := false
	for _, f := range fields {
		k, _, _ := strings.Cut(f, "=")
		switch k {
		case "init":
			addInit = false
		case "rootwait", "rootdelay":
			hasWait = true
		}
	}
	// rootwait: on real hardware the boot disk (USB, some NVMe) may show up
	// after the kernel first looks for its root.
	fields = append(fields, "root=PARTUUID="+strings.ToLower(rootGUID), "rootfstype=squashfs", "ro")
	if !hasWait {
		fields = append(fields, "rootwait")
	}
	if addInit {
		fields = append(fields, "init=/init")
	}
	return strings.Join(fields, " ")
}

func hasInit(t *image.Tree) bool {
	e, ok := t.Get("/init")
	return ok && (e.Kind == image.KindFile || e.Kind == image.KindSymlink)
}

// KernelPath is where slot's kernel lives on the ESP.
func KernelPath(slot string) string { return "/nodeboot/" + slot + "/vmlinuz" }

// BootEntry returns the ESP path and content of slot's Boot Loader
// Specification (type 1) entry, with tries boot attempts left: systemd-boot
// renames nodeboot-a+3.conf to nodeboot-a+2-1.conf when it boots it, and the
// init renames it to nodeboot-a.conf once the node came up well.
func BootEntry(slot string, s Slot, tries int) (string, []byte) {
	name := "/loader/entries/nodeboot-" + slot
	if tries > 0 {
		name += fmt.Sprintf("+%d", tries)
	}
	title := s.Title
	if title == "" {
		title = "nodeboot"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "title %s (slot %s)\n", title, strings.ToUpper(slot))
	// One sort key for all slots: between them systemd-boot then orders by
	// version (newest first), and puts any entry out of tries last.
	fmt.Fprintf(&b, "sort-key nodeboot\n")
	fmt.Fprintf(&b, "linux %s\n", KernelPath(slot))
	fmt.Fprintf(&b, "options %s\n", s.Cmdline)
	return name + ".conf", []byte(b.String())
}

// LoaderConf is loader/loader.conf: boot the best nodeboot entry at once
// (the first in systemd-boot's order that matches, so a slot whose tries ran
// out loses to the other), no menu unless a key is held, and no editing of
// the kernel command line at the console.
func LoaderConf() []byte {
	return []byte("default nodeboot-*\ntimeout 0\neditor no\nauto-entries no\nauto-firmware no\n")
}

// seedBytes derives 32 bytes for name from seed.
func seedBytes(seed, name string) []byte {
	h := sha256.Sum256([]byte("nodeboot disk\x00" + seed + "\x00" + name))
	return h[:]
}

// seedGUID derives a version 4 (random-format) GUID for name from seed.
func seedGUID(seed, name string) string {
	b := seedBytes(seed, name)[:16]
	b[6] = b[6]&0x0F | 0x40
	b[8] = b[8]&0x3F | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// deriveSeed digests what the image is made of, for callers without one.
func deriveSeed(f *renameio.PendingFile, rootOff, rootSize int64, o Options) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "cmdline %q title %q esp %d root %d\n", o.Cmdline, o.Title, o.ESPSize, o.RootSize)
	if _, err := io.Copy(h, io.NewSectionReader(f, rootOff, rootSize)); err != nil {
		return "", err
	}
	for _, p := range []string{o.Kernel, o.SystemdBoot} {
		in, err := os.Open(p)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, in)
		in.Close()
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", filepath.Base(p), err)
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}
