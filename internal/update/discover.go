package update

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nodeboot/nodeboot/internal/datafs"
	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/piboot"
)

// Discovered is what PID 1 finds of a disk boot's slots.
type Discovered struct {
	ESP      string // the ESP's device node
	Disk     string // the whole disk's device node
	DiskSize int64
	Slots    []Slot // A and B, each opened through OpenDevice
	Booted   string // the slot the kernel's root= names
}

// DiscoverSlots finds the ESP and both root slots of the disk the node
// booted from: the partitions by their GPT names in sysfs under sysRoot
// ("/sys", device nodes under devRoot), the slots' PARTUUIDs and sizes from
// the disk's GPT, the disk's size from sysfs (a block device's stat says
// 0), and which slot booted from the kernel command line's root=PARTUUID.
// A command line without one is an initramfs boot: nil, no error.
func DiscoverSlots(sysRoot, devRoot, cmdline string) (*Discovered, error) {
	root := disk.RootPartUUID(cmdline)
	if root == "" {
		return nil, nil
	}
	esp, err := datafs.FindByLabel(sysRoot, devRoot, disk.LabelESP)
	if err != nil {
		return nil, fmt.Errorf("the ESP: %w", err)
	}
	whole, size, err := wholeDisk(sysRoot, devRoot, esp)
	if err != nil {
		return nil, err
	}
	l, err := disk.ReadLayout(whole)
	if err != nil {
		return nil, fmt.Errorf("the partition table of %s: %w", whole, err)
	}
	d := &Discovered{ESP: esp, Disk: whole, DiskSize: size}
	for _, p := range []disk.Partition{l.RootA, l.RootB} {
		dev, err := datafs.FindByLabel(sysRoot, devRoot, p.Label)
		if err != nil {
			return nil, err
		}
		d.Slots = append(d.Slots, Slot{Name: strings.TrimPrefix(p.Label, "nodeboot-root-"), PartUUID: p.GUID, Size: p.Size,
			Open: func() (Device, error) { return OpenDevice(dev) }})
	}
	if d.Booted = SlotFromCmdline(cmdline, d.Slots); d.Booted == "" {
		return nil, fmt.Errorf("the kernel's root=PARTUUID=%s is neither root slot of %s (A is %s, B is %s)", root, whole, d.Slots[0].PartUUID, d.Slots[1].PartUUID)
	}
	return d, nil
}

// wholeDisk returns the disk a partition device is on, and its size:
// /sys/class/block/vda1 links to .../vda/vda1, and .../vda/size counts
// 512-byte sectors.
func wholeDisk(sysRoot, devRoot, part string) (string, int64, error) {
	real, err := filepath.EvalSymlinks(filepath.Join(sysRoot, "class", "block", filepath.Base(part)))
	if err != nil {
		return "", 0, fmt.Errorf("finding the disk of %s: %w", part, err)
	}
	parent := filepath.Dir(real)
	b, err := os.ReadFile(filepath.Join(parent, "size"))
	if err != nil {
		return "", 0, fmt.Errorf("the size of the disk of %s: %w", part, err)
	}
	sectors, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("the size of the disk of %s: %w", part, err)
	}
	return filepath.Join(devRoot, filepath.Base(parent)), sectors * 512, nil
}

// PiDiscovered is what PID 1 finds of a Raspberry Pi disk's slots.
type PiDiscovered struct {
	Control   string // the control partition's device node (partition 1)
	Disk      string
	DiskSize  int64
	Signature uint32
	Slots     []Slot // A and B: root partitions 5 and 6
	Boot      map[string]BootPartition
	Booted    string
}

// IsPiCmdline says whether the kernel's root= is an MBR PARTUUID
// ("ssssssss-nn"), as a Pi image's cmdline.txt names it; a GPT disk's is
// a GUID.
func IsPiCmdline(cmdline string) bool {
	root := disk.RootPartUUID(cmdline)
	return len(root) == 11 && root[8] == '-'
}

// DiscoverPi finds a Pi disk's partitions by their MBR numbers
// (piboot's): the disk is the one holding the root= PARTUUID's partition
// (found through sysfs under sysRoot and the disk signature read from its
// device node under devRoot), its partition table read from the disk.
func DiscoverPi(sysRoot, devRoot, cmdline string) (*PiDiscovered, error) {
	root := disk.RootPartUUID(cmdline)
	rootDev, err := datafs.FindByPartUUID(sysRoot, devRoot, root)
	if err != nil {
		return nil, fmt.Errorf("the root partition: %w", err)
	}
	whole, size, err := wholeDisk(sysRoot, devRoot, rootDev)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(whole)
	if err != nil {
		return nil, err
	}
	sig, parts, err := disk.ReadMBR(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("the partition table of %s: %w", whole, err)
	}
	byNum := map[int]disk.MBRPartition{}
	for _, p := range parts {
		byNum[p.Number] = p
	}
	dev := func(n int) (string, disk.MBRPartition, error) {
		p, ok := byNum[n]
		if !ok {
			return "", p, fmt.Errorf("%s has no partition %d: it was not written as a nodeboot Pi image (`nodeboot build --target pi`)", whole, n)
		}
		d, err := datafs.FindByPartUUID(sysRoot, devRoot, piboot.PartUUID(sig, n))
		return d, p, err
	}
	d := &PiDiscovered{Disk: whole, DiskSize: size, Signature: sig, Boot: map[string]BootPartition{}}
	if d.Control, _, err = dev(piboot.PartControl); err != nil {
		return nil, err
	}
	for _, slot := range []string{"a", "b"} {
		rd, rp, err := dev(piboot.RootPartition(slot))
		if err != nil {
			return nil, err
		}
		bd, bp, err := dev(piboot.BootPartition(slot))
		if err != nil {
			return nil, err
		}
		d.Slots = append(d.Slots, Slot{Name: slot, PartUUID: piboot.PartUUID(sig, rp.Number), Size: rp.Size,
			Open: func() (Device, error) { return OpenDevice(rd) }})
		d.Boot[slot] = BootPartition{Offset: bp.Offset, Size: bp.Size, Open: func() (Device, error) { return OpenDevice(bd) }}
	}
	if d.Booted = SlotFromCmdline(cmdline, d.Slots); d.Booted == "" {
		return nil, fmt.Errorf("the kernel's root=PARTUUID=%s is neither root slot of %s (A is %s, B is %s)", root, whole, d.Slots[0].PartUUID, d.Slots[1].PartUUID)
	}
	return d, nil
}
