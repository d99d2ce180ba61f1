package kernel

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// bzHeader is the smallest byte string the x86 boot header readers accept:
// "HdrS", boot protocol 2.15, an init_size and a version string.
func bzHeader(initSize uint32, version string) []byte {
	b := make([]byte, 0x400)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(b[0x260:], initSize)
	binary.LittleEndian.PutUint16(b[0x20e:], 0x100) // version at 0x300
	copy(b[0x300:], version+"\x00")
	return b
}

// FuzzBzImage feeds the bzImage header readers (used on --kernel files and
// on kernels read back out of disk images) arbitrary bytes: no panic, no
// negative or absurd memory estimate, and no version string that is not
// text.
func FuzzBzImage(f *testing.F) {
	f.Add(bzHeader(57<<20, "6.12.1 (builder@host) #1 SMP"))
	f.Add(bzHeader(0xffffffff, "x"))
	f.Add(bzHeader(0, ""))
	f.Add([]byte("MZ"))
	f.Add(make([]byte, 0x264))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		n := InitSize(b)
		m := UEFIMinMemoryMiB(b)
		if (n == 0) != (m == 0) || m < 0 || m > 1<<13 {
			t.Fatalf("InitSize %d gives a UEFI minimum of %d MiB", n, m)
		}
		p := filepath.Join(dir, "bzImage")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, arch := range []string{"amd64", "arm64", "riscv64"} {
			_ = Check(p, arch)
		}
		if v := versionString(p); len(v) > 128 || strings.IndexFunc(v, func(r rune) bool { return r < '!' || r > '~' }) >= 0 {
			t.Fatalf("version %q", v)
		}
	})
}
