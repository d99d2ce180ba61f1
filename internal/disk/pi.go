package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
	"github.com/google/renameio/v2"

	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/piboot"
)

// A Raspberry Pi image (--target pi) is an MBR disk, because the Pi 3's
// boot ROM reads nothing else (the Pi 4 and 5 bootloaders read GPT too):
//
//	1 MiB   1 control  FAT32: autoboot.txt (Pi 4/5: which boot partition),
//	                   and slot A's boot files, which a Pi 3 boots
//	        2 boot A   FAT32: firmware, config.txt, cmdline.txt, kernel,
//	                   device trees, overlays of slot A
//	        3 boot B   FAT32, empty until an update fills it
//	        4 extended holding the logical partitions:
//	        5 root A   squashfs
//	        6 root B   same size, empty
//	        7 data     the rest; the node makes its ext4
//
// Per-slot boot partitions are what autoboot.txt's tryboot_a_b selects:
// an update writes the inactive slot's boot and root partitions, then
// reboots with the tryboot flag, and the firmware boots the [tryboot]
// partition once; committing rewrites autoboot.txt's [all] in place.

// DefaultPiBootSize is each FAT partition's size: the Pi kernel (46 MB
// uncompressed), firmware, device trees and overlays take about 60 MB,
// and an update's kernel may be larger.
const DefaultPiBootSize = 128 * MiB

// PiOptions describe a Raspberry Pi image.
type PiOptions struct {
	Path string
	Size int64 // DefaultSize if 0
	Root *image.Tree
	// KernelDir holds the Pi kernel (vmlinuz), its device trees (*.dtb)
	// and overlays/; FirmwareDir the GPU firmware (piboot.Firmware).
	KernelDir, FirmwareDir string
	// Cmdline is the base kernel command line, without console or root.
	Cmdline string
	// BootSize is each FAT partition's size (DefaultPiBootSize if 0).
	BootSize        int64
	RootSize        int64 // as Options.RootSize
	RootCompression string
	MTime           time.Time
	// Seed derives the MBR disk signature and the FAT serials.
	Seed string
}

// PiLayout is what WritePi produced.
type PiLayout struct {
	Size       int64
	Signature  uint32 // MBR disk signature: PARTUUIDs are <sig>-<nn>
	Partitions []MBRPartition
	RootFSSize int64
	// Cmdline is slot A's complete kernel command line (cmdline.txt).
	Cmdline string
}

// Partition returns partition n of the layout.
func (l *PiLayout) Partition(n int) MBRPartition {
	for _, p := range l.Partitions {
		if p.Number == n {
			return p
		}
	}
	return MBRPartition{}
}

// WritePi writes the Raspberry Pi disk image described by o.
func WritePi(o PiOptions) (*PiLayout, error) {
	if o.Path == "" || o.Root == nil {
		return nil, errors.New("Pi image: no output path or root tree")
	}
	if o.Size == 0 {
		o.Size = DefaultSize
	}
	if o.BootSize == 0 {
		o.BootSize = DefaultPiBootSize
	}
	raw := false
	switch o.RootCompression {
	case "", "gzip":
	case "none":
		raw = true
	default:
		return nil, fmt.Errorf("unknown root file system compression %q: use gzip or none", o.RootCompression)
	}
	if o.Size%MiB != 0 || o.BootSize%MiB != 0 || o.RootSize%MiB != 0 {
		return nil, errors.New("Pi image, boot and root slot sizes must be whole MiB")
	}
	if _, err := fatGeometryFor(o.BootSize); err != nil {
		return nil, err
	}
	bootFiles, err := PiBootFiles(o.KernelDir, o.FirmwareDir)
	if err != nil {
		return nil, err
	}

	extOff := MiB + 3*o.BootSize
	rootAOff := extOff + MiB // the first EBR takes the extended partition's first MiB
	minimum := func(root int64) int64 { return rootAOff + 2*root + 2*MiB + MinDataSize }
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
		if seed, err = deriveSeed(pf, rootAOff, sqSize, Options{Cmdline: o.Cmdline, RootSize: o.RootSize, ESPSize: o.BootSize, Kernel: filepath.Join(o.KernelDir, piboot.KernelFile), SystemdBoot: filepath.Join(o.FirmwareDir, "start4.elf")}); err != nil {
			return nil, err
		}
	}
	l := &PiLayout{Size: o.Size, RootFSSize: sqSize}
	// A signature of 0 means "none" to some tools; the kernel then has no
	// PARTUUIDs to give.
	if l.Signature = binary.LittleEndian.Uint32(seedBytes(seed, "mbr-signature")); l.Signature == 0 {
		l.Signature = 1
	}
	rootBOff := rootAOff + rootSize + MiB
	dataOff := rootBOff + rootSize + MiB
	l.Partitions = []MBRPartition{
		{piboot.PartControl, MBRTypeFAT32LBA, MiB, o.BootSize},
		{piboot.PartBootA, MBRTypeFAT32LBA, MiB + o.BootSize, o.BootSize},
		{piboot.PartBootB, MBRTypeFAT32LBA, MiB + 2*o.BootSize, o.BootSize},
		{4, MBRTypeExtendedLBA, extOff, o.Size - extOff},
		{piboot.PartRootA, MBRTypeLinux, rootAOff, rootSize},
		{piboot.PartRootB, MBRTypeLinux, rootBOff, rootSize},
		{piboot.PartData, MBRTypeLinux, dataOff, o.Size - dataOff},
	}
	l.Cmdline = piboot.Cmdline(o.Cmdline, l.Signature, "a", hasInit(o.Root))

	slotA := append(bootFiles,
		fatFile{Path: "/config.txt", Data: piboot.ConfigTxt()},
		fatFile{Path: "/cmdline.txt", Data: []byte(l.Cmdline)})
	control := append(append([]fatFile(nil), slotA...), fatFile{Path: "/autoboot.txt",
		Data: piboot.Autoboot{TrybootAB: true, Boot: piboot.PartBootA, Try: piboot.PartBootB}.Format()})
	for _, f := range []struct {
		part  int
		label string
		files []fatFile
	}{
		{piboot.PartControl, "NODEBOOT", control},
		{piboot.PartBootA, "NODEBOOT-A", slotA},
		{piboot.PartBootB, "NODEBOOT-B", nil},
	} {
		p := l.Partition(f.part)
		if err := writeFAT32(pf, p.Offset, fatOptions{
			Size:     p.Size,
			Hidden:   uint32(p.Offset / 512),
			VolumeID: binary.LittleEndian.Uint32(seedBytes(seed, fmt.Sprintf("fat-%d", f.part))),
			Label:    f.label,
			Time:     o.MTime,
		}, f.files); err != nil {
			return nil, fmt.Errorf("writing boot partition %d: %w", f.part, err)
		}
	}
	zero := make([]byte, MiB)
	for _, n := range []int{piboot.PartRootB, piboot.PartData} {
		p := l.Partition(n)
		if _, err := pf.WriteAt(zero[:min(MiB, p.Size)], p.Offset); err != nil {
			return nil, fmt.Errorf("writing %s: %w", o.Path, err)
		}
	}
	var logical []MBRPartition
	for _, p := range l.Partitions[4:] {
		logical = append(logical, p)
	}
	if err := writeMBR(pf, l.Signature, l.Partitions[:3], extOff, o.Size-extOff, logical); err != nil {
		return nil, err
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return nil, fmt.Errorf("writing %s: %w", o.Path, err)
	}
	return l, nil
}

// PiBootFiles lists a slot's boot files besides config.txt and
// cmdline.txt: the firmware, the kernel, every device tree of the kernel
// module and its overlays. A model's device tree or a firmware file
// missing is an error that names it.
func PiBootFiles(kernelDir, firmwareDir string) ([]fatFile, error) {
	var files []fatFile
	for _, name := range piboot.Firmware {
		files = append(files, fatFile{Path: "/" + name, Src: filepath.Join(firmwareDir, name)})
	}
	files = append(files, fatFile{Path: "/" + piboot.KernelFile, Src: filepath.Join(kernelDir, piboot.KernelFile)})
	dtbs, _ := filepath.Glob(filepath.Join(kernelDir, "*.dtb"))
	overlays, _ := filepath.Glob(filepath.Join(kernelDir, "overlays", "*"))
	sort.Strings(dtbs)
	sort.Strings(overlays)
	for _, p := range dtbs {
		files = append(files, fatFile{Path: "/" + filepath.Base(p), Src: p})
	}
	for _, p := range overlays {
		files = append(files, fatFile{Path: "/overlays/" + filepath.Base(p), Src: p})
	}
	for _, f := range files {
		if st, err := os.Stat(f.Src); err != nil || !st.Mode().IsRegular() {
			return nil, fmt.Errorf("the Pi boot file %s is missing at %s (the kernel module %s, the firmware module %s)", strings.TrimPrefix(f.Path, "/"), f.Src, kernelDir, firmwareDir)
		}
	}
	for _, m := range piboot.Models {
		if _, err := os.Stat(filepath.Join(kernelDir, m.DTB)); err != nil {
			return nil, fmt.Errorf("the Pi kernel in %s has no device tree %s for the %s", kernelDir, m.DTB, m.Name)
		}
	}
	return files, nil
}

// PiBootFS describes a slot's boot partition file system, as a node writes
// it when it receives an OS update.
type PiBootFS struct {
	Size   int64 // the partition's size
	Offset int64 // where the partition starts on its disk (the FAT's hidden sectors)
	Label  string
	// VolumeID is the FAT serial; MTime every entry's time.
	VolumeID uint32
	MTime    time.Time
	Files    []piboot.BootFile // the boot set and cmdline.txt
}

// WritePiBootFS writes o's FAT32 file system to w from w's first byte (a
// boot partition's device): the same writer WritePi uses, so a slot that
// an update wrote is laid out like one the image was built with. Nothing
// is synced.
func WritePiBootFS(w io.WriterAt, o PiBootFS) error {
	files := make([]fatFile, 0, len(o.Files))
	for _, f := range o.Files {
		files = append(files, fatFile{Path: "/" + f.Name, Data: f.Data})
	}
	return writeFAT32(w, 0, fatOptions{Size: o.Size, Hidden: uint32(o.Offset / 512), VolumeID: o.VolumeID, Label: o.Label, Time: o.MTime}, files)
}

// ReadPiBootSet reads slot A's boot set (partition 2, everything but
// cmdline.txt) and its cmdline.txt from a Pi image: what an OS update made
// from the image carries. The files are read with go-diskfs's FAT reader.
func ReadPiBootSet(imgPath string) (files []piboot.BootFile, cmdline string, err error) {
	f, err := os.Open(imgPath)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	_, parts, err := ReadMBR(f)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", imgPath, err)
	}
	var p *MBRPartition
	for i := range parts {
		if parts[i].Number == piboot.PartBootA {
			p = &parts[i]
		}
	}
	if p == nil {
		return nil, "", fmt.Errorf("%s has no partition %d: it is not a Pi image (`nodeboot build --target pi`)", imgPath, piboot.PartBootA)
	}
	fsys, err := fat32.Read(file.New(f, true), p.Size, p.Offset, 512)
	if err != nil {
		return nil, "", fmt.Errorf("%s partition %d: %w", imgPath, p.Number, err)
	}
	var walk func(dir string) error
	walk = func(dir string) error {
		ents, err := fsys.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			name := e.Name()
			if name == "." || name == ".." || !e.IsDir() && !e.Type().IsRegular() {
				continue
			}
			full := strings.TrimPrefix(path.Join(dir, name), "/")
			if e.IsDir() {
				if err := walk(full); err != nil {
					return err
				}
				continue
			}
			b, err := readAll(fsys, "/"+full)
			if err != nil {
				return fmt.Errorf("%s: %w", full, err)
			}
			if strings.EqualFold(full, piboot.CmdlineFile) {
				cmdline = string(b)
				continue
			}
			files = append(files, piboot.BootFile{Name: full, Data: b})
		}
		return nil
	}
	// ReadDir takes io/fs paths ("." is the root), OpenFile absolute ones.
	if err := walk("."); err != nil {
		return nil, "", fmt.Errorf("%s partition %d: %w", imgPath, p.Number, err)
	}
	if cmdline == "" {
		return nil, "", fmt.Errorf("%s partition %d has no %s", imgPath, p.Number, piboot.CmdlineFile)
	}
	return files, cmdline, nil
}
