package elfdeps

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// header holds the ELF identification fields the dynamic loader compares
// before it accepts a candidate file.
type header struct {
	class   elf.Class
	data    elf.Data
	machine elf.Machine
	typ     elf.Type
	osabi   elf.OSABI // EI_OSABI: a FreeBSD prebuild says so here
}

// sameArch is the loader's acceptance test: a library of another class,
// byte order or machine is skipped, not fatal, so a multilib host with
// 32-bit copies earlier in the path still works.
func (h header) sameArch(o header) bool {
	return h.class == o.class && h.data == o.data && h.machine == o.machine
}

func (h header) String() string {
	if a, err := goarch(h); err == nil {
		return a
	}
	return fmt.Sprintf("%v/%v/%v", h.machine, h.class, h.data)
}

// errNotELF marks files that are not ELF at all, as opposed to ELF files
// for another machine.
var errNotELF = errors.New("not an ELF file")

// readHeader parses only the fixed-size start of the ELF header by hand:
// it is all Arch and candidate checks need, and it cannot be tricked into
// large allocations by corrupt section tables.
func readHeader(r io.ReaderAt) (header, error) {
	var b [20]byte
	n, err := r.ReadAt(b[:], 0)
	if n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			return header{}, fmt.Errorf("%w: file too short", errNotELF)
		}
		return header{}, err
	}
	if string(b[:4]) != elf.ELFMAG {
		return header{}, fmt.Errorf("%w: bad magic %q", errNotELF, b[:4])
	}
	h := header{class: elf.Class(b[elf.EI_CLASS]), data: elf.Data(b[elf.EI_DATA]), osabi: elf.OSABI(b[elf.EI_OSABI])}
	if h.class != elf.ELFCLASS32 && h.class != elf.ELFCLASS64 {
		return header{}, fmt.Errorf("%w: unknown class %v", errNotELF, h.class)
	}
	var bo binary.ByteOrder
	switch h.data {
	case elf.ELFDATA2LSB:
		bo = binary.LittleEndian
	case elf.ELFDATA2MSB:
		bo = binary.BigEndian
	default:
		return header{}, fmt.Errorf("%w: unknown byte order %v", errNotELF, h.data)
	}
	if v := elf.Version(b[elf.EI_VERSION]); v != elf.EV_CURRENT {
		return header{}, fmt.Errorf("%w: unknown version %v", errNotELF, v)
	}
	h.typ = elf.Type(bo.Uint16(b[16:]))
	h.machine = elf.Machine(bo.Uint16(b[18:]))
	return h, nil
}

// Arch returns the ELF machine of a file as a GOARCH name ("amd64",
// "arm64"), or an error naming the file if it is not ELF or its machine
// has no GOARCH equivalent.
func Arch(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading ELF header: %w", err)
	}
	defer f.Close()
	h, err := readHeader(f)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	a, err := goarch(h)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

func goarch(h header) (string, error) {
	is64 := h.class == elf.ELFCLASS64
	le := h.data == elf.ELFDATA2LSB
	switch h.machine {
	case elf.EM_X86_64:
		if is64 {
			return "amd64", nil
		}
	case elf.EM_386:
		if !is64 {
			return "386", nil
		}
	case elf.EM_AARCH64:
		if is64 && le {
			return "arm64", nil
		}
	case elf.EM_ARM:
		if !is64 && le {
			return "arm", nil
		}
	case elf.EM_RISCV:
		if is64 {
			return "riscv64", nil
		}
	case elf.EM_PPC64:
		if le {
			return "ppc64le", nil
		}
		return "ppc64", nil
	case elf.EM_S390:
		if is64 {
			return "s390x", nil
		}
	case elf.EM_LOONGARCH:
		if is64 {
			return "loong64", nil
		}
	case elf.EM_MIPS:
		switch {
		case is64 && le:
			return "mips64le", nil
		case is64:
			return "mips64", nil
		case le:
			return "mipsle", nil
		default:
			return "mips", nil
		}
	}
	return "", fmt.Errorf("ELF machine %v (%v, %v) has no GOARCH equivalent", h.machine, h.class, h.data)
}

// triplet is the Debian multiarch directory name, which is where Debian
// and Ubuntu keep libraries and what their glibc searches first.
func triplet(h header) string {
	a, err := goarch(h)
	if err != nil {
		return ""
	}
	switch a {
	case "amd64":
		return "x86_64-linux-gnu"
	case "386":
		return "i386-linux-gnu"
	case "arm64":
		return "aarch64-linux-gnu"
	case "arm":
		return "arm-linux-gnueabihf"
	case "riscv64":
		return "riscv64-linux-gnu"
	case "ppc64le":
		return "powerpc64le-linux-gnu"
	case "ppc64":
		return "powerpc64-linux-gnu"
	case "s390x":
		return "s390x-linux-gnu"
	case "loong64":
		return "loongarch64-linux-gnu"
	case "mips64le":
		return "mips64el-linux-gnuabi64"
	case "mips64":
		return "mips64-linux-gnuabi64"
	case "mipsle":
		return "mipsel-linux-gnu"
	case "mips":
		return "mips-linux-gnu"
	}
	return ""
}

// platform is the $PLATFORM value. The real loader takes it from the
// kernel's AT_PLATFORM, which may name a CPU generation the build host
// cannot predict for the target, so only the baseline name is used.
func platform(h header) string {
	a, _ := goarch(h)
	switch a {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i686"
	case "arm":
		return "v7l"
	}
	return ""
}

// elfInfo is what the loader reads from an object to continue the walk.
type elfInfo struct {
	header
	interp   string
	soname   string
	needed   []string
	rpath    string
	runpath  string
	nodeflib bool
}

// Limits guard against corrupt files asking for absurd allocations; real
// string tables stay well below them (node's is a few MiB).
const (
	maxInterp  = 4096
	maxDynamic = 1 << 20
	maxStrtab  = 256 << 20
)

func readELF(path string) (*elfInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := readHeader(f)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, err
	}
	rd := &segReader{ef: ef, size: uint64(fi.Size())}
	info := &elfInfo{header: h}
	var dyn *elf.Prog
	for _, p := range ef.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			b, err := rd.prog(p, maxInterp)
			if err != nil {
				return nil, fmt.Errorf("reading PT_INTERP: %w", err)
			}
			if i := bytes.IndexByte(b, 0); i >= 0 {
				b = b[:i]
			}
			info.interp = string(b)
		case elf.PT_DYNAMIC:
			dyn = p
		}
	}
	if dyn != nil {
		if err := rd.dynamic(dyn, info); err != nil {
			return nil, fmt.Errorf("reading dynamic segment: %w", err)
		}
	}
	return info, nil
}

// segReader reads segment contents, checking sizes against the file
// first: headers of a corrupt file may claim anything, and the buffer is
// allocated before the read could fail.
type segReader struct {
	ef   *elf.File
	size uint64 // of the file
}

func (rd *segReader) prog(p *elf.Prog, limit uint64) ([]byte, error) {
	if p.Filesz > limit {
		return nil, fmt.Errorf("%v segment of %d bytes is implausibly large", p.Type, p.Filesz)
	}
	if p.Off > rd.size || p.Filesz > rd.size-p.Off {
		return nil, fmt.Errorf("%v segment extends past the end of the file", p.Type)
	}
	b := make([]byte, p.Filesz)
	if _, err := p.ReadAt(b, 0); err != nil && !(errors.Is(err, io.EOF) && len(b) == 0) {
		return nil, err
	}
	return b, nil
}

// dynamic walks PT_DYNAMIC rather than the .dynamic section because
// that is what the loader uses; section headers are optional and may be
// stripped, and missing them must not silently drop dependencies.
func (rd *segReader) dynamic(dyn *elf.Prog, info *elfInfo) error {
	ef := rd.ef
	data, err := rd.prog(dyn, maxDynamic)
	if err != nil {
		return err
	}
	entSize := 8
	if ef.Class == elf.ELFCLASS64 {
		entSize = 16
	}
	var (
		strtab, strsz                      uint64
		haveStrtab                         bool
		needed                             []uint64
		soname, rpath, runpath             uint64
		haveSoname, haveRpath, haveRunpath bool
	)
loop:
	for off := 0; off+entSize <= len(data); off += entSize {
		var tag, val uint64
		if entSize == 8 {
			tag = uint64(ef.ByteOrder.Uint32(data[off:]))
			val = uint64(ef.ByteOrder.Uint32(data[off+4:]))
		} else {
			tag = ef.ByteOrder.Uint64(data[off:])
			val = ef.ByteOrder.Uint64(data[off+8:])
		}
		// Later duplicates win for single-valued tags, as in the loader's
		// l_info table.
		switch elf.DynTag(tag) {
		case elf.DT_NULL:
			break loop
		case elf.DT_NEEDED:
			needed = append(needed, val)
		case elf.DT_SONAME:
			soname, haveSoname = val, true
		case elf.DT_RPATH:
			rpath, haveRpath = val, true
		case elf.DT_RUNPATH:
			runpath, haveRunpath = val, true
		case elf.DT_STRTAB:
			strtab, haveStrtab = val, true
		case elf.DT_STRSZ:
			strsz = val
		case elf.DT_FLAGS_1:
			info.nodeflib = elf.DynFlag1(val)&elf.DF_1_NODEFLIB != 0
		}
	}
	if len(needed) == 0 && !haveSoname && !haveRpath && !haveRunpath {
		return nil
	}
	if !haveStrtab {
		return errors.New("DT_STRTAB missing")
	}
	str, err := rd.vaddr(strtab, strsz)
	if err != nil {
		return fmt.Errorf("reading DT_STRTAB: %w", err)
	}
	get := func(off uint64) (string, error) {
		if off >= uint64(len(str)) {
			return "", fmt.Errorf("string offset %#x outside DT_STRTAB of %d bytes", off, len(str))
		}
		s := str[off:]
		i := bytes.IndexByte(s, 0)
		if i < 0 {
			return "", fmt.Errorf("unterminated string at DT_STRTAB offset %#x", off)
		}
		return string(s[:i]), nil
	}
	for _, off := range needed {
		s, err := get(off)
		if err != nil {
			return fmt.Errorf("DT_NEEDED: %w", err)
		}
		info.needed = append(info.needed, s)
	}
	if haveSoname {
		if info.soname, err = get(soname); err != nil {
			return fmt.Errorf("DT_SONAME: %w", err)
		}
	}
	// The loader ignores DT_RPATH entirely when DT_RUNPATH is present.
	if haveRunpath {
		if info.runpath, err = get(runpath); err != nil {
			return fmt.Errorf("DT_RUNPATH: %w", err)
		}
	} else if haveRpath {
		if info.rpath, err = get(rpath); err != nil {
			return fmt.Errorf("DT_RPATH: %w", err)
		}
	}
	return nil
}

// vaddr reads size bytes at a virtual address, which is how dynamic
// entries refer to the string table.
func (rd *segReader) vaddr(addr, size uint64) ([]byte, error) {
	if size > maxStrtab {
		return nil, fmt.Errorf("%d bytes is implausibly large", size)
	}
	for _, p := range rd.ef.Progs {
		if p.Type != elf.PT_LOAD || addr < p.Vaddr || addr-p.Vaddr >= p.Filesz {
			continue
		}
		off := addr - p.Vaddr
		if size > p.Filesz-off {
			return nil, fmt.Errorf("address %#x+%d extends past its PT_LOAD segment", addr, size)
		}
		if p.Off > rd.size || off > rd.size-p.Off || size > rd.size-p.Off-off {
			return nil, fmt.Errorf("address %#x+%d lies past the end of the file", addr, size)
		}
		b := make([]byte, size)
		if _, err := p.ReadAt(b, int64(off)); err != nil && !(errors.Is(err, io.EOF) && size == 0) {
			return nil, err
		}
		return b, nil
	}
	return nil, fmt.Errorf("address %#x is not in any PT_LOAD segment", addr)
}
