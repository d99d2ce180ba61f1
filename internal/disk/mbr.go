package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MBR partition types a Pi image uses.
const (
	MBRTypeFAT32LBA    = 0x0c
	MBRTypeExtendedLBA = 0x0f
	MBRTypeLinux       = 0x83
)

// MBRPartition is one partition of an MBR disk; Offset and Size are bytes.
type MBRPartition struct {
	Number int // 1-4 primary, 5 and up logical
	Type   byte
	Offset int64
	Size   int64
}

// writeMBR writes an MBR with signature sig holding primary (at most 4,
// numbered 1-4 in order) and, when logical is not empty, an extended
// partition as the fourth primary entry spanning ext bytes from extOff,
// with one EBR per logical partition in the MiB before it. go-diskfs's MBR
// writer knows no extended partitions, and a Pi image needs seven.
//
// Each EBR's first entry is its logical partition, relative to the EBR;
// its second the next EBR, relative to the extended partition's start, as
// the kernel's msdos parser and sfdisk read them.
func writeMBR(w io.WriterAt, sig uint32, primary []MBRPartition, extOff, extSize int64, logical []MBRPartition) error {
	if len(primary) > 4 || len(logical) > 0 && len(primary) > 3 {
		return errors.New("MBR: too many primary partitions")
	}
	mbr := make([]byte, 512)
	binary.LittleEndian.PutUint32(mbr[440:], sig)
	for i, p := range primary {
		putMBREntry(mbr[446+16*i:], p.Type, p.Offset/512, p.Size/512)
	}
	if len(logical) > 0 {
		putMBREntry(mbr[446+16*3:], MBRTypeExtendedLBA, extOff/512, extSize/512)
	}
	mbr[510], mbr[511] = 0x55, 0xaa
	if _, err := w.WriteAt(mbr, 0); err != nil {
		return fmt.Errorf("writing the MBR: %w", err)
	}
	for i, p := range logical {
		ebrOff := p.Offset - MiB
		if ebrOff < extOff {
			return fmt.Errorf("MBR: logical partition %d leaves no room for its EBR", p.Number)
		}
		ebr := make([]byte, 512)
		putMBREntry(ebr[446:], p.Type, (p.Offset-ebrOff)/512, p.Size/512)
		if i+1 < len(logical) {
			next := logical[i+1].Offset - MiB
			putMBREntry(ebr[462:], MBRTypeExtendedLBA, (next-extOff)/512, (logical[i+1].Offset+logical[i+1].Size-next)/512)
		}
		ebr[510], ebr[511] = 0x55, 0xaa
		if _, err := w.WriteAt(ebr, ebrOff); err != nil {
			return fmt.Errorf("writing the EBR of partition %d: %w", p.Number, err)
		}
	}
	return nil
}

// putMBREntry fills a 16-byte partition entry. The CHS fields hold the
// "use LBA" marker (1023/254/63), as for any partition beyond 8 GiB: no
// firmware nodeboot targets reads them.
func putMBREntry(e []byte, typ byte, lba, sectors int64) {
	chs := []byte{0xfe, 0xff, 0xff}
	copy(e[1:4], chs)
	e[4] = typ
	copy(e[5:8], chs)
	binary.LittleEndian.PutUint32(e[8:], uint32(lba))
	binary.LittleEndian.PutUint32(e[12:], uint32(sectors))
}

// ReadMBR reads the partitions of an MBR disk, the logical ones through
// the EBR chain, bounded so a looping chain ends.
func ReadMBR(r io.ReaderAt) (sig uint32, parts []MBRPartition, err error) {
	b := make([]byte, 512)
	if _, err := r.ReadAt(b, 0); err != nil {
		return 0, nil, fmt.Errorf("reading the MBR: %w", err)
	}
	if b[510] != 0x55 || b[511] != 0xaa {
		return 0, nil, errors.New("no MBR: the first sector lacks the 55 AA signature")
	}
	sig = binary.LittleEndian.Uint32(b[440:])
	var ext int64 = -1
	for i := 0; i < 4; i++ {
		e := b[446+16*i:]
		typ, lba, n := e[4], int64(binary.LittleEndian.Uint32(e[8:])), int64(binary.LittleEndian.Uint32(e[12:]))
		if typ == 0 {
			continue
		}
		if typ == 0x05 || typ == MBRTypeExtendedLBA {
			ext = lba
		}
		parts = append(parts, MBRPartition{Number: i + 1, Type: typ, Offset: lba * 512, Size: n * 512})
	}
	if ext < 0 {
		return sig, parts, nil
	}
	ebr := ext
	for num := 5; num < 5+60; num++ {
		if _, err := r.ReadAt(b, ebr*512); err != nil {
			return sig, parts, fmt.Errorf("reading the EBR at sector %d: %w", ebr, err)
		}
		if b[510] != 0x55 || b[511] != 0xaa {
			return sig, parts, fmt.Errorf("the EBR at sector %d lacks the 55 AA signature", ebr)
		}
		e := b[446:]
		if e[4] != 0 {
			parts = append(parts, MBRPartition{Number: num, Type: e[4],
				Offset: (ebr + int64(binary.LittleEndian.Uint32(e[8:]))) * 512,
				Size:   int64(binary.LittleEndian.Uint32(e[12:])) * 512})
		}
		next := b[462:]
		if next[4] == 0 {
			return sig, parts, nil
		}
		ebr = ext + int64(binary.LittleEndian.Uint32(next[8:]))
	}
	return sig, parts, errors.New("the EBR chain does not end")
}

// GrowMBRLast extends the last logical partition of an MBR disk (a Pi
// image's data partition) and the extended partition holding it to the
// disk's end (size bytes, rounded down to a MiB; at most MBR's 2 TiB),
// writing the MBR's extended entry first, then the previous EBR's link,
// then the partition's own EBR: each one sector, so a power cut between
// them leaves a table the kernel reads (the partition at its old size) and
// the next boot grows it again. It returns the partition as it is now,
// and whether it grew. The caller syncs.
func GrowMBRLast(rw interface {
	io.ReaderAt
	io.WriterAt
}, size int64) (MBRPartition, bool, error) {
	mbr := make([]byte, 512)
	if _, err := rw.ReadAt(mbr, 0); err != nil {
		return MBRPartition{}, false, fmt.Errorf("reading the MBR: %w", err)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		return MBRPartition{}, false, errors.New("no MBR: the first sector lacks the 55 AA signature")
	}
	extIdx := -1
	var extLBA, extEnd int64
	var lastPrimaryEnd int64
	for i := 0; i < 4; i++ {
		e := mbr[446+16*i:]
		lba, n := int64(binary.LittleEndian.Uint32(e[8:])), int64(binary.LittleEndian.Uint32(e[12:]))
		switch e[4] {
		case 0:
		case 0x05, MBRTypeExtendedLBA:
			extIdx, extLBA, extEnd = i, lba, lba+n
		default:
			lastPrimaryEnd = max(lastPrimaryEnd, lba+n)
		}
	}
	if extIdx < 0 {
		return MBRPartition{}, false, errors.New("the MBR has no extended partition: no logical partition to grow")
	}
	// Walk the EBR chain to the last logical partition.
	var prevEBR int64 = -1
	ebr := extLBA
	b := make([]byte, 512)
	num := 5
	for ; ; num++ {
		if num >= 5+60 {
			return MBRPartition{}, false, errors.New("the EBR chain does not end")
		}
		if _, err := rw.ReadAt(b, ebr*512); err != nil {
			return MBRPartition{}, false, fmt.Errorf("reading the EBR at sector %d: %w", ebr, err)
		}
		if b[510] != 0x55 || b[511] != 0xaa {
			return MBRPartition{}, false, fmt.Errorf("the EBR at sector %d lacks the 55 AA signature", ebr)
		}
		next := b[462:]
		if next[4] == 0 {
			break
		}
		prevEBR, ebr = ebr, extLBA+int64(binary.LittleEndian.Uint32(next[8:]))
	}
	e := b[446:]
	start := ebr + int64(binary.LittleEndian.Uint32(e[8:]))
	cur := int64(binary.LittleEndian.Uint32(e[12:]))
	p := MBRPartition{Number: num, Type: e[4], Offset: start * 512, Size: cur * 512}
	if e[4] == 0 {
		return p, false, errors.New("the last EBR holds no partition")
	}
	if start+cur < lastPrimaryEnd || start+cur > extEnd {
		return p, false, fmt.Errorf("partition %d is not the last one on the disk: not growing it", num)
	}
	end := min(size, int64(0xFFFFFFFF)*512) / MiB * MiB / 512 // sectors
	if end <= start+cur {
		return p, false, nil
	}
	putMBREntry(mbr[446+16*extIdx:], mbr[446+16*extIdx+4], extLBA, end-extLBA)
	if _, err := rw.WriteAt(mbr, 0); err != nil {
		return p, false, fmt.Errorf("writing the MBR: %w", err)
	}
	if prevEBR >= 0 {
		pb := make([]byte, 512)
		if _, err := rw.ReadAt(pb, prevEBR*512); err != nil {
			return p, false, fmt.Errorf("reading the EBR at sector %d: %w", prevEBR, err)
		}
		// The link covers the next EBR and its partition.
		putMBREntry(pb[462:], pb[462+4], ebr-extLBA, end-ebr)
		if _, err := rw.WriteAt(pb, prevEBR*512); err != nil {
			return p, false, fmt.Errorf("writing the EBR at sector %d: %w", prevEBR, err)
		}
	}
	putMBREntry(e, e[4], start-ebr, end-start)
	if _, err := rw.WriteAt(b, ebr*512); err != nil {
		return p, false, fmt.Errorf("writing the EBR of partition %d: %w", num, err)
	}
	p.Size = (end - start) * 512
	return p, true, nil
}
