package disk

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"
	"unicode/utf16"
)

// This file writes the FAT32 file system of the EFI system partition. The
// ESP holds a handful of files written once, so the writer is simple: every
// directory and file is allocated contiguously, directories first. go-diskfs
// v1.9.4's FAT32 writer was tried first and not kept (see
// docs/ARCHITECTURE.md): fsck.vfat flags every first-level directory it makes
// ("Invalid '..' entry", the root must be cluster 0 there), it stamps every
// entry with time.Now() unless the process environment holds
// SOURCE_DATE_EPOCH, and its volume serial cannot be chosen.

const (
	fatSector      = 512
	fatReserved    = 32 // sectors; mkfs.fat's default, aligns the FATs
	fatMinClusters = 65525
	fatMaxClusters = 0x0FFFFFF5
	fatEOC         = 0x0FFFFFFF
	fatAttrVolume  = 0x08
	fatAttrDir     = 0x10
	fatAttrArchive = 0x20
	fatAttrLFN     = 0x0F
)

// fatFile is a file to put on the FAT file system: inline data or a host file.
type fatFile struct {
	Path string // absolute, '/'-separated
	Data []byte
	Src  string
}

type fatOptions struct {
	Size     int64  // bytes
	Hidden   uint32 // sectors before the file system on the disk (its first LBA)
	VolumeID uint32
	Label    string // at most 11 characters
	Time     time.Time
}

type fatNode struct {
	name     string
	dir      bool
	children []*fatNode
	parent   *fatNode
	file     *fatFile
	size     int64
	cluster  uint32
	clusters uint32
	slots    int      // directory entries of this node in its parent
	sfn      [11]byte // short name
}

type fatGeometry struct {
	spc        uint32 // sectors per cluster
	fatSectors uint32
	clusters   uint32
	total      uint32
}

func (g fatGeometry) clusterBytes() int64 { return int64(g.spc) * fatSector }

func (g fatGeometry) clusterOffset(c uint32) int64 {
	return int64(fatReserved+2*g.fatSectors)*fatSector + int64(c-2)*g.clusterBytes()
}

// fatGeometryFor lays out a FAT32 file system of size bytes. Cluster sizes
// follow Microsoft's table (what mkfs.fat uses too): 512 bytes up to 260 MiB,
// which keeps a 128 MiB ESP above FAT32's minimum of 65525 clusters.
func fatGeometryFor(size int64) (fatGeometry, error) {
	var g fatGeometry
	if size%fatSector != 0 || size/fatSector > 0xFFFFFFFF {
		return g, fmt.Errorf("FAT32 size %d is not a whole number of sectors below 2 TiB", size)
	}
	g.total = uint32(size / fatSector)
	switch {
	case size <= 260<<20:
		g.spc = 1
	case size <= 8<<30:
		g.spc = 8
	case size <= 16<<30:
		g.spc = 16
	case size <= 32<<30:
		g.spc = 32
	default:
		g.spc = 64
	}
	if g.total <= fatReserved+2 {
		return g, fmt.Errorf("ESP of %d bytes is too small for FAT32", size)
	}
	// Size the FAT for every cluster the space could hold, then count the
	// clusters left beside the two FATs: the FAT may end up a little larger
	// than needed, never smaller.
	upper := uint64(g.total-fatReserved) / uint64(g.spc)
	g.fatSectors = uint32(((upper+2)*4 + fatSector - 1) / fatSector)
	if uint64(fatReserved)+2*uint64(g.fatSectors) >= uint64(g.total) {
		return g, fmt.Errorf("ESP of %d bytes is too small for FAT32", size)
	}
	g.clusters = (g.total - fatReserved - 2*g.fatSectors) / g.spc
	if g.clusters < fatMinClusters {
		min := int64(fatReserved)*fatSector + 2*((fatMinClusters+2)*4+fatSector) + fatMinClusters*g.clusterBytes()
		return g, fmt.Errorf("ESP of %d MiB is too small: FAT32 needs at least %d clusters, %d MiB", size>>20, fatMinClusters, (min+1<<20-1)>>20)
	}
	if g.clusters > fatMaxClusters {
		return g, fmt.Errorf("ESP of %d bytes is too large for FAT32", size)
	}
	return g, nil
}

// writeFAT32 writes a FAT32 file system holding files at offset base of w.
func writeFAT32(w io.WriterAt, base int64, o fatOptions, files []fatFile) error {
	g, err := fatGeometryFor(o.Size)
	if err != nil {
		return err
	}
	root, all, err := fatTree(files)
	if err != nil {
		return err
	}

	// Directory entries: short names first (they decide how many slots each
	// entry takes), then cluster allocation, then the bytes.
	for _, d := range all {
		if d.dir {
			if err := assignShortNames(d); err != nil {
				return err
			}
		}
	}
	next := uint32(2)
	alloc := func(n *fatNode, bytes int64) {
		n.clusters = uint32((bytes + g.clusterBytes() - 1) / g.clusterBytes())
		if n.clusters == 0 {
			return
		}
		n.cluster = next
		next += n.clusters
	}
	for _, n := range all { // directories first: the root must be cluster 2
		if n.dir {
			slots := 0
			if n == root {
				slots = 1 // the volume label
			} else {
				slots = 2 // "." and ".."
			}
			for _, c := range n.children {
				slots += c.slots
			}
			alloc(n, int64(slots)*32)
		}
	}
	for _, n := range all {
		if !n.dir {
			alloc(n, n.size)
		}
	}
	used := next - 2
	if used > g.clusters {
		need := int64(used-g.clusters) * g.clusterBytes()
		return fmt.Errorf("the ESP contents do not fit in %d MiB (%d MiB more needed): raise the ESP size", o.Size>>20, (need+1<<20-1)>>20)
	}

	stamp := fatTimestamp(o.Time)
	for _, d := range all {
		if !d.dir {
			continue
		}
		buf := make([]byte, int64(d.clusters)*g.clusterBytes())
		var ents [][]byte
		if d == root {
			ents = append(ents, sfnEntry(label11(o.Label), fatAttrVolume, 0, 0, stamp))
		} else {
			parent := d.parent.cluster
			if d.parent == root {
				parent = 0 // ".." names the root as cluster 0, whatever its cluster
			}
			ents = append(ents,
				sfnEntry(dotName("."), fatAttrDir, d.cluster, 0, stamp),
				sfnEntry(dotName(".."), fatAttrDir, parent, 0, stamp))
		}
		for _, c := range d.children {
			sfn := c.sfn
			if c.needsLFN() {
				ents = append(ents, lfnEntries(c.name, sfn)...)
			}
			attr := byte(fatAttrArchive)
			if c.dir {
				attr = fatAttrDir
			}
			size := uint32(c.size)
			if c.dir {
				size = 0
			}
			ents = append(ents, sfnEntry(sfn, attr, c.cluster, size, stamp))
		}
		for i, e := range ents {
			copy(buf[32*i:], e)
		}
		if _, err := w.WriteAt(buf, base+g.clusterOffset(d.cluster)); err != nil {
			return fmt.Errorf("writing ESP: %w", err)
		}
	}
	for _, n := range all {
		if !n.dir && n.size > 0 {
			if err := writeFATFile(w, base+g.clusterOffset(n.cluster), n); err != nil {
				return err
			}
		}
	}

	fat := make([]byte, int64(g.fatSectors)*fatSector)
	binary.LittleEndian.PutUint32(fat[0:], 0x0FFFFFF8) // media descriptor 0xF8
	binary.LittleEndian.PutUint32(fat[4:], fatEOC)
	for _, n := range all {
		for i := uint32(0); i < n.clusters; i++ {
			v := n.cluster + i + 1
			if i == n.clusters-1 {
				v = fatEOC
			}
			binary.LittleEndian.PutUint32(fat[4*(n.cluster+i):], v)
		}
	}
	for i := int64(0); i < 2; i++ {
		if _, err := w.WriteAt(fat, base+(fatReserved+i*int64(g.fatSectors))*fatSector); err != nil {
			return fmt.Errorf("writing ESP: %w", err)
		}
	}

	boot := fatBootSector(g, o)
	info := make([]byte, fatSector)
	binary.LittleEndian.PutUint32(info[0:], 0x41615252)
	binary.LittleEndian.PutUint32(info[484:], 0x61417272)
	binary.LittleEndian.PutUint32(info[488:], g.clusters-used) // free clusters
	binary.LittleEndian.PutUint32(info[492:], next)            // next free cluster hint
	binary.LittleEndian.PutUint32(info[508:], 0xAA550000)
	for _, s := range []struct {
		b      []byte
		sector int64
	}{{boot, 0}, {info, 1}, {boot, 6}, {info, 7}} {
		if _, err := w.WriteAt(s.b, base+s.sector*fatSector); err != nil {
			return fmt.Errorf("writing ESP: %w", err)
		}
	}
	return nil
}

func writeFATFile(w io.WriterAt, off int64, n *fatNode) error {
	f := n.file
	if f.Src == "" {
		_, err := w.WriteAt(f.Data, off)
		return err
	}
	src, err := os.Open(f.Src)
	if err != nil {
		return err
	}
	defer src.Close()
	copied, err := io.Copy(io.NewOffsetWriter(w, off), io.LimitReader(src, n.size+1))
	if err != nil {
		return fmt.Errorf("copying %s to the ESP: %w", f.Src, err)
	}
	if copied != n.size {
		return fmt.Errorf("copying %s to the ESP: file changed size while building", f.Src)
	}
	return nil
}

func fatBootSector(g fatGeometry, o fatOptions) []byte {
	b := make([]byte, fatSector)
	copy(b[0:], []byte{0xEB, 0x58, 0x90}) // jmp to the boot code at 0x5A
	copy(b[3:11], "NODEBOOT")             // OEM name
	binary.LittleEndian.PutUint16(b[11:], fatSector)
	b[13] = byte(g.spc)
	binary.LittleEndian.PutUint16(b[14:], fatReserved)
	b[16] = 2                                 // FATs
	b[21] = 0xF8                              // fixed disk
	binary.LittleEndian.PutUint16(b[24:], 32) // sectors per track (unused, mkfs.fat's value)
	binary.LittleEndian.PutUint16(b[26:], 64) // heads
	binary.LittleEndian.PutUint32(b[28:], o.Hidden)
	binary.LittleEndian.PutUint32(b[32:], g.total)
	binary.LittleEndian.PutUint32(b[36:], g.fatSectors)
	binary.LittleEndian.PutUint32(b[44:], 2) // root directory cluster
	binary.LittleEndian.PutUint16(b[48:], 1) // FSInfo sector
	binary.LittleEndian.PutUint16(b[50:], 6) // backup boot sector
	b[64] = 0x80                             // drive number
	b[66] = 0x29                             // extended boot signature
	binary.LittleEndian.PutUint32(b[67:], o.VolumeID)
	l := label11(o.Label)
	copy(b[71:82], l[:])
	copy(b[82:90], "FAT32   ")
	// Not a BIOS boot sector: halt forever if something jumps here anyway.
	copy(b[90:], []byte{0xFA, 0xF4, 0xEB, 0xFD}) // cli; hlt; jmp hlt
	b[510], b[511] = 0x55, 0xAA
	return b
}

// fatTree builds the directory tree of files, every list sorted by name, and
// returns the root and all nodes in path order.
func fatTree(files []fatFile) (*fatNode, []*fatNode, error) {
	root := &fatNode{dir: true}
	dirs := map[string]*fatNode{"/": root}
	var mkdir func(p string) (*fatNode, error)
	mkdir = func(p string) (*fatNode, error) {
		if d, ok := dirs[p]; ok {
			if !d.dir {
				return nil, fmt.Errorf("ESP path %s is a file", p)
			}
			return d, nil
		}
		parent, err := mkdir(path.Dir(p))
		if err != nil {
			return nil, err
		}
		d := &fatNode{name: path.Base(p), dir: true, parent: parent}
		parent.children = append(parent.children, d)
		dirs[p] = d
		return d, nil
	}
	for i := range files {
		f := &files[i]
		p := path.Clean(f.Path)
		if !strings.HasPrefix(p, "/") || p == "/" {
			return nil, nil, fmt.Errorf("ESP path %q is not an absolute file path", f.Path)
		}
		if _, dup := dirs[p]; dup {
			return nil, nil, fmt.Errorf("ESP path %s given twice", p)
		}
		parent, err := mkdir(path.Dir(p))
		if err != nil {
			return nil, nil, err
		}
		n := &fatNode{name: path.Base(p), parent: parent, file: f, size: int64(len(f.Data))}
		if f.Src != "" {
			st, err := os.Stat(f.Src)
			if err != nil {
				return nil, nil, err
			}
			if !st.Mode().IsRegular() || st.Size() > 0xFFFFFFFF {
				return nil, nil, fmt.Errorf("%s: not a regular file below 4 GiB", f.Src)
			}
			n.size = st.Size()
		}
		parent.children = append(parent.children, n)
		dirs[p] = n
	}
	var all []*fatNode
	var walk func(n *fatNode)
	walk = func(n *fatNode) {
		all = append(all, n)
		sort.Slice(n.children, func(i, j int) bool { return n.children[i].name < n.children[j].name })
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(root)
	return root, all, nil
}

// Short (8.3) names. A name that is a valid upper-case 8.3 name is stored as
// is; any other gets long-name entries and a generated short alias:
// the upper-cased name when only the case differs, else BASE~N.EXT.

const sfnSpecial = "!#$%&'()-@^_`{}~"

func sfnChar(r rune) bool {
	return (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || strings.ContainsRune(sfnSpecial, r)
}

// splitSFN returns the upper-cased, cleaned 8.3 parts of name and whether
// that lost information beyond the case.
func splitSFN(name string) (base, ext string, lossy bool) {
	up := strings.ToUpper(name)
	if i := strings.LastIndexByte(up, '.'); i > 0 {
		base, ext = up[:i], up[i+1:]
	} else {
		base = up
	}
	clean := func(s string, max int) string {
		var b strings.Builder
		for _, r := range s {
			switch {
			case r == ' ' || r == '.':
				lossy = true
			case sfnChar(r):
				b.WriteRune(r)
			default:
				b.WriteByte('_')
				lossy = true
			}
		}
		out := b.String()
		if len(out) > max {
			out, lossy = out[:max], true
		}
		return out
	}
	base, ext = clean(base, 8), clean(ext, 3)
	if base == "" {
		base, lossy = "_", true
	}
	return base, ext, lossy
}

func pack83(base, ext string) [11]byte {
	var n [11]byte
	copy(n[:], fmt.Sprintf("%-8s%-3s", base, ext))
	return n
}

func (n *fatNode) needsLFN() bool {
	base, ext, lossy := splitSFN(n.name)
	want := base
	if ext != "" {
		want += "." + ext
	}
	return lossy || want != n.name
}

func assignShortNames(d *fatNode) error {
	used := map[[11]byte]bool{}
	lower := map[string]bool{}
	for _, c := range d.children {
		l := strings.ToLower(c.name)
		if lower[l] {
			return fmt.Errorf("ESP names %q differ only in case: FAT cannot hold both", c.name)
		}
		lower[l] = true
	}
	for _, c := range d.children {
		if len(utf16.Encode([]rune(c.name))) > 255 {
			return fmt.Errorf("ESP name %q is longer than 255 characters", c.name)
		}
		base, ext, lossy := splitSFN(c.name)
		if !lossy && !used[pack83(base, ext)] {
			c.sfn = pack83(base, ext)
		} else {
			found := false
			for i := 1; i < 1000000 && !found; i++ {
				tail := fmt.Sprintf("~%d", i)
				b := base
				if len(b)+len(tail) > 8 {
					b = b[:8-len(tail)]
				}
				if cand := pack83(b+tail, ext); !used[cand] {
					c.sfn, found = cand, true
				}
			}
			if !found {
				return fmt.Errorf("no free short name for %q", c.name)
			}
		}
		used[c.sfn] = true
		c.slots = 1
		if c.needsLFN() {
			c.slots += (len(utf16.Encode([]rune(c.name))) + 12) / 13
		}
	}
	return nil
}

func sfnChecksum(n [11]byte) byte {
	var s byte
	for _, b := range n {
		s = (s&1)<<7 + s>>1 + b
	}
	return s
}

// lfnEntries returns the long-name entries of name, in on-disk order (last
// part first), each carrying the checksum of the short name they belong to.
func lfnEntries(name string, sfn [11]byte) [][]byte {
	u := utf16.Encode([]rune(name))
	count := (len(u) + 12) / 13
	padded := make([]uint16, count*13)
	for i := range padded {
		switch {
		case i < len(u):
			padded[i] = u[i]
		case i == len(u):
			padded[i] = 0
		default:
			padded[i] = 0xFFFF
		}
	}
	sum := sfnChecksum(sfn)
	var out [][]byte
	for k := count; k >= 1; k-- {
		e := make([]byte, 32)
		e[0] = byte(k)
		if k == count {
			e[0] |= 0x40
		}
		e[11] = fatAttrLFN
		e[13] = sum
		part := padded[(k-1)*13 : k*13]
		offs := []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}
		for i, o := range offs {
			binary.LittleEndian.PutUint16(e[o:], part[i])
		}
		out = append(out, e)
	}
	return out
}

type fatStamp struct{ date, time uint16 }

// fatTimestamp converts t to FAT's local-time fields, clamped to the range
// FAT can hold (1980–2107); the Unix epoch, the default, becomes 1980-01-01.
func fatTimestamp(t time.Time) fatStamp {
	t = t.UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if t.Year() > 2107 {
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	return fatStamp{
		date: uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day()),
		time: uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2),
	}
}

func sfnEntry(name [11]byte, attr byte, cluster, size uint32, ts fatStamp) []byte {
	e := make([]byte, 32)
	copy(e[0:11], name[:])
	e[11] = attr
	binary.LittleEndian.PutUint16(e[14:], ts.time) // created
	binary.LittleEndian.PutUint16(e[16:], ts.date)
	binary.LittleEndian.PutUint16(e[18:], ts.date) // accessed
	binary.LittleEndian.PutUint16(e[20:], uint16(cluster>>16))
	binary.LittleEndian.PutUint16(e[22:], ts.time) // modified
	binary.LittleEndian.PutUint16(e[24:], ts.date)
	binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(e[28:], size)
	return e
}

func dotName(s string) [11]byte {
	var n [11]byte
	copy(n[:], fmt.Sprintf("%-11s", s))
	return n
}

func label11(s string) [11]byte {
	var n [11]byte
	copy(n[:], fmt.Sprintf("%-11.11s", strings.ToUpper(s)))
	return n
}
