package datafs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"

	"github.com/nodeboot/nodeboot/internal/disk"
)

// Grow extends the data partition dev (the last partition) to the end of its
// disk when the disk is bigger than the image was (an image written to a
// larger USB stick or disk), moving the backup GPT to the disk's new end and
// telling the kernel the partition's new size. It is only called while the
// partition is still empty, before its file system is created, so nothing
// on it can be lost. It returns the partition's new size, or 0 when there
// was nothing to grow.
func Grow(dev string) (int64, error) {
	name := filepath.Base(dev)
	pnoB, err := os.ReadFile(filepath.Join("/sys/class/block", name, "partition"))
	if err != nil {
		return 0, fmt.Errorf("%s is not a partition: %w", dev, err)
	}
	pno, err := strconv.Atoi(strings.TrimSpace(string(pnoB)))
	if err != nil {
		return 0, fmt.Errorf("partition number of %s: %w", dev, err)
	}
	// /sys/class/block/vda4 → ../../devices/.../vda/vda4: the parent is the disk.
	real, err := filepath.EvalSymlinks(filepath.Join("/sys/class/block", name))
	if err != nil {
		return 0, err
	}
	diskDev := "/dev/" + filepath.Base(filepath.Dir(real))
	// Not O_EXCL: the root file system on this disk is mounted.
	f, err := os.OpenFile(diskDev, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	size, err := deviceSize(f)
	if err != nil {
		return 0, err
	}
	store := file.New(f, false)
	tbl, err := gpt.Read(store, 512, 512)
	if err != nil {
		if _, merr := mbrSignature(diskDev); merr == nil {
			// A Raspberry Pi image: the data partition is the last
			// logical one; its EBR and the extended partition grow.
			return growMBR(f, diskDev, dev, pno, size)
		}
		return 0, fmt.Errorf("reading the GPT of %s: %w", diskDev, err)
	}
	if int64(tbl.TotalSize()) >= size {
		return 0, nil
	}
	var part *gpt.Partition
	for _, p := range tbl.Partitions {
		if p.Name == Label {
			part = p
		}
	}
	if part == nil {
		return 0, fmt.Errorf("no partition named %s in the GPT of %s", Label, diskDev)
	}
	for _, p := range tbl.Partitions {
		if p != part && p.End > 0 && p.Start > part.Start {
			return 0, fmt.Errorf("the data partition is not the last one on %s: not growing it", diskDev)
		}
	}
	tbl.Resize(uint64(size))
	// End on a 1 MiB boundary, like the partitions the image writer made.
	end := (tbl.LastDataSector()+1)/2048*2048 - 1
	if end <= part.End {
		return 0, nil
	}
	part.End = end
	part.Size = (end - part.Start + 1) * 512
	w, err := store.Writable()
	if err != nil {
		return 0, err
	}
	if err := tbl.Write(w, size); err != nil {
		return 0, fmt.Errorf("writing the GPT of %s: %w", diskDev, err)
	}
	// The kernel keeps its own idea of the partition's size until told.
	if err := resizePartition(f, pno, int64(part.Start)*512, int64(part.Size)); err != nil {
		return 0, fmt.Errorf("telling the kernel the new size of %s: %w", dev, err)
	}
	return int64(part.Size), nil
}

// growMBR grows the last logical partition of an MBR disk (a Pi image's
// data partition) to the disk's end, and tells the kernel.
func growMBR(f *os.File, diskDev, dev string, pno int, size int64) (int64, error) {
	p, grew, err := disk.GrowMBRLast(f, size)
	if err != nil {
		return 0, fmt.Errorf("growing the data partition of %s: %w", diskDev, err)
	}
	if p.Number != pno {
		return 0, fmt.Errorf("%s is partition %d, the last one on %s is %d: not growing it", dev, pno, diskDev, p.Number)
	}
	if !grew {
		return 0, nil
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("writing the partition table of %s: %w", diskDev, err)
	}
	if err := resizePartition(f, pno, p.Offset, p.Size); err != nil {
		return 0, fmt.Errorf("telling the kernel the new size of %s: %w", dev, err)
	}
	return p.Size, nil
}

// resizePartition tells the kernel a partition's new extent (BLKPG).
func resizePartition(f *os.File, pno int, start, length int64) error {
	bp := unix.BlkpgPartition{Start: start, Length: length, Pno: int32(pno)}
	arg := unix.BlkpgIoctlArg{Op: unix.BLKPG_RESIZE_PARTITION, Datalen: int32(unsafe.Sizeof(bp)), Data: (*byte)(unsafe.Pointer(&bp))}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKPG, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		return errno
	}
	return nil
}
