package diskformat

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
)

// rawImage writes a sparse raw image of size bytes with random data in a
// few places (the start, the middle, the last sector) and holes between,
// as a GPT disk image has.
func rawImage(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, off := range []int64{0, 1 << 20, size/2 + 4096, size - 512} {
		buf := make([]byte, 512*7)
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		if off+int64(len(buf)) > size {
			buf = buf[:size-off]
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func fileHash(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

func requireQEMUImg(t *testing.T) {
	t.Helper()
	if _, err := FindQEMUImg(); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// TestConvertQEMU converts one raw image to each qemu-img format, has
// qemu-img's own reader check the result (info: the format and the exact
// virtual size; check where the format has one), and converts it back:
// the bytes must be the raw image's.
func TestConvertQEMU(t *testing.T) {
	requireQEMUImg(t)
	const size = 24 << 20
	raw := rawImage(t, size)
	want := fileHash(t, raw)
	for _, f := range []Format{QCOW2, VMDK, VHD} {
		t.Run(string(f), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "disk"+f.Ext())
			if err := Convert(context.Background(), f, raw, out, time.Unix(0, 0)); err != nil {
				t.Fatal(err)
			}
			if got, err := Detect(out); err != nil || got != f {
				t.Errorf("Detect = %q, %v; want %q", got, err, f)
			}
			// -f: qemu-img's probe does not recognise a fixed VHD (its
			// only header is the footer at the end); importers are told.
			info, err := exec.Command("qemu-img", "info", "-f", f.QEMUName(), "--output=json", out).Output()
			if err != nil {
				t.Fatal(err)
			}
			var qi struct {
				Format      string `json:"format"`
				VirtualSize int64  `json:"virtual-size"`
				Format2     struct {
					Data struct {
						CreateType string `json:"create-type"`
					} `json:"data"`
				} `json:"format-specific"`
			}
			if err := json.Unmarshal(info, &qi); err != nil {
				t.Fatal(err)
			}
			if qi.Format != f.QEMUName() || qi.VirtualSize != size {
				t.Errorf("qemu-img info: format %q size %d, want %q %d:\n%s", qi.Format, qi.VirtualSize, f.QEMUName(), size, info)
			}
			switch f {
			case QCOW2, VMDK:
				if out, err := exec.Command("qemu-img", "check", out).CombinedOutput(); err != nil {
					t.Errorf("qemu-img check: %v\n%s", err, out)
				}
				if f == VMDK && qi.Format2.Data.CreateType != "streamOptimized" {
					t.Errorf("VMDK create type %q, want streamOptimized", qi.Format2.Data.CreateType)
				}
			case VHD:
				// qemu-img has no check for VHD: read its footer here.
				checkFixedVHD(t, out, size)
			}
			back := filepath.Join(t.TempDir(), "back.raw")
			if out, err := exec.Command("qemu-img", "convert", "-f", f.QEMUName(), "-O", "raw", out, back).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img convert back: %v\n%s", err, out)
			}
			if got := fileHash(t, back); got != want {
				t.Error("converted back to raw, the bytes differ from the raw image")
			}
		})
	}
}

// checkFixedVHD reads the VHD footer (Microsoft's VHD specification): the
// cookie, the fixed disk type, the current size, and the checksum; the file
// is the raw image followed by the 512-byte footer.
func checkFixedVHD(t *testing.T, p string, size int64) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != size+512 {
		t.Fatalf("VHD is %d bytes, want the raw size + a 512-byte footer = %d", len(b), size+512)
	}
	foot := b[len(b)-512:]
	if string(foot[:8]) != "conectix" {
		t.Fatalf("no VHD footer cookie: %q", foot[:8])
	}
	if typ := binary.BigEndian.Uint32(foot[60:]); typ != 2 {
		t.Errorf("VHD disk type %d, want 2 (fixed)", typ)
	}
	if cur := binary.BigEndian.Uint64(foot[48:]); int64(cur) != size || cur%(1<<20) != 0 {
		t.Errorf("VHD current size %d, want %d, a whole number of MiB", cur, size)
	}
	var sum uint32
	for i, c := range foot {
		if i < 64 || i >= 68 {
			sum += uint32(c)
		}
	}
	if got := binary.BigEndian.Uint32(foot[64:]); got != ^sum {
		t.Errorf("VHD footer checksum %#x, want %#x", got, ^sum)
	}
}

// TestConvertGCE writes GCE's archive and reads it back twice: with Go's
// reader (one member, disk.raw, the raw image's bytes) and with GNU tar.
// The image is smaller than the whole GiB Convert insists on (TestSizeRules),
// so that the test does not gzip gigabytes.
func TestConvertGCE(t *testing.T) {
	const size = 24 << 20
	raw := rawImage(t, size)
	want := fileHash(t, raw)
	out := filepath.Join(t.TempDir(), "disk.tar.gz")
	if err := writeGCE(context.Background(), raw, out, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if got, _ := Detect(out); got != GCE {
		t.Errorf("Detect = %q, want gce", got)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Name != GCEMember || hdr.Size != size || hdr.Format != tar.FormatGNU {
		t.Errorf("member %q size %d format %v, want %q %d GNU", hdr.Name, hdr.Size, hdr.Format, GCEMember, size)
	}
	h := sha256.New()
	if _, err := io.Copy(h, tr); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Error("disk.raw in the archive differs from the raw image")
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("a second member in the archive: %v", err)
	}
	if _, err := exec.LookPath("tar"); err == nil {
		list, err := exec.Command("tar", "-tzf", out).Output()
		if err != nil || strings.TrimSpace(string(list)) != GCEMember {
			t.Errorf("tar -tzf: %q, %v; want %s only", list, err, GCEMember)
		}
	}
	// Reproducible: the same raw image and time give the same archive.
	out2 := filepath.Join(t.TempDir(), "disk.tar.gz")
	if err := writeGCE(context.Background(), raw, out2, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if fileHash(t, out) != fileHash(t, out2) {
		t.Error("two archives of the same image differ")
	}
}

// TestSizeRules: Azure's whole MiB and GCE's whole GiB are refused with
// the --size to pass, before anything is written.
func TestSizeRules(t *testing.T) {
	raw := rawImage(t, 3<<20+512)
	for _, tt := range []struct {
		f    Format
		want string
	}{
		{VHD, "--size 4M"},
		{GCE, "--size 1G"},
	} {
		out := filepath.Join(t.TempDir(), "x")
		err := Convert(context.Background(), tt.f, raw, out, time.Unix(0, 0))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error suggesting %s", tt.f, err, tt.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: output written despite the refusal", tt.f)
		}
	}
	if err := Check(QCOW2, 3<<20+512); err != nil {
		t.Errorf("qcow2 takes any sector multiple: %v", err)
	}
	if err := Check(GCE, 2<<30); err != nil {
		t.Errorf("gce takes 2 GiB: %v", err)
	}
	if err := Check(VHD, 3<<20); err != nil {
		t.Errorf("vhd takes 3 MiB: %v", err)
	}
}

func TestParse(t *testing.T) {
	for _, s := range []string{"qcow2", "vmdk", "vhd", "gce"} {
		if f, ok := Parse(s); !ok || string(f) != s {
			t.Errorf("Parse(%q) = %q, %v", s, f, ok)
		}
	}
	for _, s := range []string{"disk", "initramfs", "vhdx", "QCOW2", ""} {
		if _, ok := Parse(s); ok {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
}
