package disk

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/nodeboot/nodeboot/internal/image"
)

// fuzzImage writes one small, valid disk image for FuzzReadBoot and returns
// its path and the byte ranges worth damaging: the GPT, the ESP's boot
// sector and FAT, and the clusters that hold loader.conf and the entries.
func fuzzImage(tb testing.TB) (string, [][2]int64) {
	tb.Helper()
	dir := tb.TempDir()
	kernel := filepath.Join(dir, "bzImage")
	efi := filepath.Join(dir, "systemd-bootx64.efi")
	if err := os.WriteFile(kernel, random(64<<10, 7), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(efi, random(4<<10, 8), 0o600); err != nil {
		tb.Fatal(err)
	}
	tr := image.NewTree()
	if err := tr.AddData("/init", []byte("#!/not/a/shell\n"), 0o755); err != nil {
		tb.Fatal(err)
	}
	img := filepath.Join(dir, "fuzz.img")
	l, err := Write(Options{Path: img, Size: 768 * MiB, Root: tr, Kernel: kernel,
		Cmdline: "console=ttyS0", SystemdBoot: efi, Seed: "fuzz"})
	if err != nil {
		tb.Fatal(err)
	}
	// Where the ESP keeps loader.conf's text: found by its content, not by
	// re-deriving the FAT layout here.
	esp := make([]byte, 8<<20)
	f, err := os.Open(img)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	n, _ := f.ReadAt(esp, l.ESP.Offset)
	esp = esp[:n]
	ranges := [][2]int64{{0, 34 * 512}, {l.ESP.Offset, 64 << 10}}
	if i := bytes.Index(esp, []byte("default nodeboot")); i >= 0 {
		start := max(int64(i)-16<<10, 0)
		ranges = append(ranges, [2]int64{l.ESP.Offset + start, 64 << 10})
	} else {
		tb.Fatal("loader.conf's text not found in the ESP's first 8 MiB")
	}
	return img, ranges
}

// FuzzReadBoot damages a real image's partition table and ESP and reads
// it back as `run --boot direct` does: whatever the bytes, ReadBoot must
// return a boot entry or an error, never panic or hang.
func FuzzReadBoot(f *testing.F) {
	img, ranges := fuzzImage(f)
	if _, err := ReadBoot(img); err != nil {
		f.Fatalf("the undamaged image: %v", err)
	}
	f.Add(uint8(0), uint32(512), []byte("EFI PART"))
	f.Add(uint8(0), uint32(1024), bytes.Repeat([]byte{0xff}, 128))
	f.Add(uint8(1), uint32(11), []byte{0, 0, 0})
	f.Add(uint8(1), uint32(0x20), []byte{0xff, 0xff, 0xff, 0xff})
	f.Add(uint8(2), uint32(16<<10), []byte("default ../../x\n"))
	f.Add(uint8(2), uint32(0), bytes.Repeat([]byte{0}, 4096))
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { fh.Close() })
	f.Fuzz(func(t *testing.T, region uint8, off uint32, patch []byte) {
		r := ranges[int(region)%len(ranges)]
		at := r[0] + int64(off)%r[1]
		if len(patch) > 4096 {
			patch = patch[:4096]
		}
		orig := make([]byte, len(patch))
		if _, err := fh.ReadAt(orig, at); err != nil {
			t.Fatal(err)
		}
		if _, err := fh.WriteAt(patch, at); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := fh.WriteAt(orig, at); err != nil {
				t.Fatal(err)
			}
		}()
		b, err := ReadBoot(img)
		if err == nil && (b.Entry == nil || b.Entry.Linux == "") {
			t.Fatalf("ReadBoot returned no error but no usable entry: %+v", b.Entry)
		}
	})
}

func TestReadLayout(t *testing.T) {
	f := newFixture(t)
	o := f.options("layout.img")
	want := writeImage(t, o)
	got, err := ReadLayout(o.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != want.Size || got.ESP != want.ESP || got.RootA != want.RootA || got.RootB != want.RootB || got.Data != want.Data {
		t.Errorf("ReadLayout:\n got %+v\nwant %+v", got, want)
	}
	other := filepath.Join(t.TempDir(), "zeros.img")
	if err := os.WriteFile(other, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLayout(other); err == nil {
		t.Error("a disk of zeros has a layout")
	}
}
