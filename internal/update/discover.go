package update

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nodeboot/nodeboot/internal/datafs"
	"github.com/nodeboot/nodeboot/internal/disk"
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
