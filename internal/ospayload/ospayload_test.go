package ospayload

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/image"
)

// testKey is a fixed key, so the fuzz seeds checked in stay valid.
func testKey(n byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{n}, ed25519.SeedSize))
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func random(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// realImage writes a real disk image (internal/disk, the same writer as
// `nodeboot build --format disk`) with a root tree of a few MiB and returns
// its path, the kernel's bytes and the layout.
func realImage(t testing.TB, rootSize int) (string, []byte, *disk.Layout) {
	t.Helper()
	dir := t.TempDir()
	kernel := random(1<<20+4321, 1)
	copy(kernel[0x202:], "HdrS") // an x86 kernel's boot header: the payload takes its arch
	kp := filepath.Join(dir, "bzImage")
	efi := filepath.Join(dir, "systemd-bootx64.efi")
	if err := os.WriteFile(kp, kernel, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(efi, random(4096, 2), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := image.NewTree()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tr.AddData("/init", []byte("#!/not/a/shell\n"), 0o755))
	big := filepath.Join(dir, "big")
	must(os.WriteFile(big, random(rootSize, 3), 0o644)) // incompressible
	must(tr.AddFile("/usr/bin/node", big, 0o755, int64(rootSize)))
	img := filepath.Join(dir, "disk.img")
	l, err := disk.Write(disk.Options{Path: img, Size: 768 * disk.MiB, Root: tr, Kernel: kp,
		Cmdline: "console=ttyS0 panic=5", SystemdBoot: efi, Seed: "payload-test", Title: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	return img, kernel, l
}

func buildPayload(t testing.TB, img string, o BuildOptions) []byte {
	t.Helper()
	p, err := FromImage(img, o)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	n, err := p.WriteTo(&b)
	if err != nil {
		t.Fatal(err)
	}
	if n != p.Size() {
		t.Fatalf("wrote %d bytes, Size says %d", n, p.Size())
	}
	return b.Bytes()
}

// TestFromImageArch: the payload's arch is its kernel's, and an --arch
// that is not is refused before anything is sent.
func TestFromImageArch(t *testing.T) {
	img, _, _ := realImage(t, 1<<20)
	key := testKey(1)
	if _, err := FromImage(img, BuildOptions{Key: key, Version: 1, Arch: "arm64"}); err == nil || !strings.Contains(err.Error(), "holds an amd64 kernel, not arm64") {
		t.Errorf("an amd64 image as an arm64 update: %v", err)
	}
	for _, arch := range []string{"", "amd64"} {
		p, err := FromImage(img, BuildOptions{Key: key, Version: 1, Arch: arch})
		if err != nil || p.Header.Manifest.Arch != "amd64" {
			t.Errorf("Arch %q: %v", arch, err)
		}
	}
	if got := KernelArch(append(make([]byte, 0x38), "ARM\x64"...)); got != "arm64" {
		t.Errorf("an arm64 Image's magic: %q", got)
	}
	if got := KernelArch(make([]byte, 0x300)); got != "" {
		t.Errorf("not a kernel: %q", got)
	}
}

func TestFromImage(t *testing.T) {
	img, kernel, l := realImage(t, 9<<20+77) // several 4 MiB chunks
	key := testKey(1)
	built := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	stream := buildPayload(t, img, BuildOptions{Key: key, Version: 7, Built: built})
	h, err := Verify(bytes.NewReader(stream), []ed25519.PublicKey{pub(key)})
	if err != nil {
		t.Fatal(err)
	}
	m := h.Manifest
	if m.Version != 7 || m.Arch != "amd64" || m.Target != "uefi" || !m.Built.Equal(built) || m.Title != "hello" {
		t.Errorf("manifest %+v", m)
	}
	if strings.Contains(m.Cmdline, "root=") || !strings.Contains(m.Cmdline, "init=/init") || !strings.Contains(m.Cmdline, "panic=5") {
		t.Errorf("cmdline %q: want the image's without its root", m.Cmdline)
	}
	if m.Kernel.Size != int64(len(kernel)) || m.RootFS.Size != l.RootFSSize {
		t.Errorf("sizes kernel %d rootfs %d, want %d and %d", m.Kernel.Size, m.RootFS.Size, len(kernel), l.RootFSSize)
	}
	// The body is the kernel, then slot A's bytes.
	body := stream[h.Size():]
	if !bytes.Equal(body[:len(kernel)], kernel) {
		t.Error("the body does not start with the kernel")
	}
	f, _ := os.Open(img)
	defer f.Close()
	slot := make([]byte, l.RootFSSize)
	f.ReadAt(slot, l.RootA.Offset)
	if !bytes.Equal(body[len(kernel):], slot) {
		t.Error("the body's root file system is not slot A's squashfs")
	}
	// The same image gives the same id; another version does not change it.
	again := buildPayload(t, img, BuildOptions{Key: key, Version: 8, Built: built})
	h2, _ := ReadHeader(bytes.NewReader(again))
	if h2.Manifest.Image != m.Image {
		t.Errorf("image id %s then %s for the same image", m.Image, h2.Manifest.Image)
	}
	// Resuming: the stream from a body offset is the header and the tail.
	p, _ := FromImage(img, BuildOptions{Key: key, Version: 7, Built: built})
	from := m.BodyOffset(true, 1)
	r, err := p.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	tail, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(tail[h.Size():], body[from:]) {
		t.Error("Open(from) is not the header and the body's tail")
	}
}

// TestDamagedPayloadsRefused flips random bytes of a real payload and cuts
// it at random places, 1000 times: every one must be refused (a damaged
// chunk, header or signature, or an early end).
func TestDamagedPayloadsRefused(t *testing.T) {
	img, _, _ := realImage(t, 300<<10)
	key := testKey(1)
	stream := buildPayload(t, img, BuildOptions{Key: key, Version: 1, ChunkSize: MinChunkSize})
	trusted := []ed25519.PublicKey{pub(key)}
	if _, err := Verify(bytes.NewReader(stream), trusted); err != nil {
		t.Fatal(err)
	}
	hdr, _ := ReadHeader(bytes.NewReader(stream))
	r := rand.New(rand.NewPCG(13, 13))
	n := 1000
	b := bytes.Clone(stream)
	for i := range n {
		var what string
		var err error
		switch i % 4 {
		case 3:
			cut := r.Int64N(int64(len(b)))
			what = fmt.Sprintf("cut at %d", cut)
			_, err = Verify(bytes.NewReader(b[:cut]), trusted)
		default:
			at, x := r.Int64N(int64(len(b))), byte(1)<<r.IntN(8)
			if i%4 == 2 {
				// In the header, where a flip is subtler than in the body.
				at, x = r.Int64N(hdr.Size()), byte(1+r.IntN(255))
			}
			what = fmt.Sprintf("byte %d flipped", at)
			b[at] ^= x
			_, err = Verify(bytes.NewReader(b), trusted)
			b[at] ^= x
		}
		if err == nil {
			t.Fatalf("%s: accepted", what)
		}
	}
	if _, err := Verify(bytes.NewReader(append(bytes.Clone(stream), 0)), trusted); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a byte after the end: %v", err)
	}
}

func smallManifest(t testing.TB, kernel, rootfs []byte) *Manifest {
	t.Helper()
	k, _ := hashSection(bytes.NewReader(kernel), int64(len(kernel)), MinChunkSize)
	r, _ := hashSection(bytes.NewReader(rootfs), int64(len(rootfs)), MinChunkSize)
	return &Manifest{Image: "abc123", Version: 3, Arch: "amd64", Target: "uefi",
		Built: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Title: "t", Cmdline: "console=ttyS0 init=/init",
		ChunkSize: MinChunkSize, Kernel: k, RootFS: r}
}

// smallPayload is a complete, valid payload of a few hundred bytes, for
// the fuzz targets' seeds.
func smallPayload(t testing.TB, key ed25519.PrivateKey) []byte {
	t.Helper()
	kernel, rootfs := []byte("kernel bytes"), bytes.Repeat([]byte("squash"), 30)
	h, err := Sign(smallManifest(t, kernel, rootfs), key)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	h.WriteTo(&b)
	b.Write(kernel)
	b.Write(rootfs)
	return b.Bytes()
}

func TestKeys(t *testing.T) {
	k1, k2, k3, stranger := testKey(1), testKey(2), testKey(3), testKey(9)
	kernel, rootfs := []byte("k"), []byte("r")
	sign := func(key ed25519.PrivateKey, chain ...Endorsement) *Header {
		m := smallManifest(t, kernel, rootfs)
		m.KeyChain = chain
		h, err := Sign(m, key)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	trust1 := []ed25519.PublicKey{pub(k1)}
	for _, c := range []struct {
		name string
		h    *Header
		want error
	}{
		{"signed by the trusted key", sign(k1), nil},
		{"signed by a stranger", sign(stranger), ErrUntrusted},
		{"a new key endorsed by the trusted one", sign(k2, Endorse(k1, pub(k2))), nil},
		{"a chain of two rotations", sign(k3, Endorse(k2, pub(k3)), Endorse(k1, pub(k2))), nil},
		{"endorsed by a stranger", sign(k2, Endorse(stranger, pub(k2))), ErrUntrusted},
		{"a stranger endorsing itself", sign(stranger, Endorse(stranger, pub(stranger))), ErrUntrusted},
	} {
		if _, err := c.h.Verify(trust1); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// An endorsement whose signature is damaged.
	e := Endorse(k1, pub(k2))
	e.Sig = Endorse(k1, pub(k3)).Sig
	if _, err := sign(k2, e).Verify(trust1); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged endorsement: %v", err)
	}
	// A manifest changed after signing.
	h := sign(k1)
	h.Raw = bytes.Replace(h.Raw, []byte(`"version": 3`), []byte(`"version": 4`), 1)
	if _, err := h.Verify(trust1); !errors.Is(err, ErrBadSignature) {
		t.Errorf("changed manifest: %v", err)
	}
	if k, err := ParsePublicKey(EncodeKey(pub(k2)) + "\n"); err != nil || !k.Equal(pub(k2)) {
		t.Errorf("ParsePublicKey: %v", err)
	}
	if _, err := ParsePublicKey("not a key"); err == nil {
		t.Error("ParsePublicKey accepted garbage")
	}
	_, err := sign(stranger).Verify(trust1)
	if err == nil || !strings.Contains(err.Error(), KeyID(pub(stranger))) || !strings.Contains(err.Error(), KeyID(pub(k1))) {
		t.Errorf("the message names neither key: %v", err)
	}
}

func TestParseManifest(t *testing.T) {
	good := smallManifest(t, []byte("k"), bytes.Repeat([]byte("r"), MinChunkSize+1))
	good.MediaType = MediaTypeManifest
	good.SigningKey = EncodeKey(pub(testKey(1)))
	raw, _ := json.Marshal(good)
	if _, err := ParseManifest(raw); err != nil {
		t.Fatal(err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		json.Unmarshal(raw, &m)
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"unknown field", edit(func(m map[string]any) { m["extra"] = 1 }), "unknown field"},
		{"media type", edit(func(m map[string]any) { m["mediaType"] = "x" }), "mediaType"},
		{"version 0", edit(func(m map[string]any) { m["version"] = 0 }), "version 0"},
		{"negative version", edit(func(m map[string]any) { m["version"] = -1 }), "version"},
		{"no arch", edit(func(m map[string]any) { m["arch"] = "" }), "arch"},
		{"arch with a slash", edit(func(m map[string]any) { m["arch"] = "../x" }), "arch"},
		{"cmdline with root", edit(func(m map[string]any) { m["cmdline"] = "root=/dev/sda" }), "root file system"},
		{"cmdline with a newline", edit(func(m map[string]any) { m["cmdline"] = "a\nb" }), "cmdline"},
		{"chunk size not a power of two", edit(func(m map[string]any) { m["chunkSize"] = MinChunkSize + 1 }), "chunkSize"},
		{"chunk size too small", edit(func(m map[string]any) { m["chunkSize"] = 4096 }), "chunkSize"},
		{"too few chunks", edit(func(m map[string]any) { m["rootfs"].(map[string]any)["size"] = 3 * MinChunkSize }), "needs 3"},
		{"rootfs size 0", edit(func(m map[string]any) { m["rootfs"].(map[string]any)["size"] = 0 }), "rootfs size"},
		{"kernel too big", edit(func(m map[string]any) { m["kernel"].(map[string]any)["size"] = MaxKernelSize + 1 }), "kernel size"},
		{"upper-case hash", edit(func(m map[string]any) {
			m["kernel"].(map[string]any)["chunks"] = []string{strings.ToUpper(good.Kernel.Chunks[0])}
		}), "SHA-256"},
		{"no build time", edit(func(m map[string]any) { delete(m, "built") }), "build time"},
		{"bad signing key", edit(func(m map[string]any) { m["signingKey"] = "AAAA" }), "signingKey"},
		{"trailing data", append(bytes.Clone(raw), []byte(" {}")...), "after"},
		{"not JSON", []byte("hello"), "invalid"},
		{"too big", make([]byte, MaxManifestSize+1), "more than"},
	} {
		_, err := ParseManifest(c.b)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an ErrInvalid saying %q", c.name, err, c.want)
		}
	}
}

func TestChunkReaderResume(t *testing.T) {
	kernel := random(MinChunkSize+5, 4)
	rootfs := random(3*MinChunkSize, 5)
	m := smallManifest(t, kernel, rootfs)
	body := append(bytes.Clone(kernel), rootfs...)
	for _, from := range []int64{0, MinChunkSize, int64(len(kernel)), int64(len(kernel)) + 2*MinChunkSize, int64(len(body))} {
		cr, err := NewChunkReader(bytes.NewReader(body[from:]), m, from)
		if err != nil {
			t.Fatalf("from %d: %v", from, err)
		}
		var got []byte
		for {
			c, err := cr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("from %d: %v", from, err)
			}
			if m.BodyOffset(c.RootFS, c.Index) != from+int64(len(got)) {
				t.Fatalf("from %d: chunk at body offset %d, want %d", from, m.BodyOffset(c.RootFS, c.Index), from+int64(len(got)))
			}
			got = append(got, c.Data...)
		}
		if !bytes.Equal(got, body[from:]) {
			t.Errorf("from %d: wrong bytes", from)
		}
	}
	for _, from := range []int64{1, MinChunkSize + 1, int64(len(kernel)) + 1, -1, int64(len(body)) + 1} {
		if _, err := NewChunkReader(bytes.NewReader(nil), m, from); err == nil {
			t.Errorf("from %d: accepted", from)
		}
	}
	// At the end, nothing may follow.
	cr, _ := NewChunkReader(strings.NewReader("x"), m, int64(len(body)))
	if _, err := cr.Next(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a byte after a resumed end: %v", err)
	}
}

// TestFuzzSeeds keeps the checked-in seed of FuzzVerify valid: it is the
// payload smallPayload makes with testKey(1).
func TestFuzzSeeds(t *testing.T) {
	b, err := os.ReadFile("testdata/fuzz/FuzzVerify/valid")
	if err != nil && os.Getenv("NODEBOOT_WRITE_SEEDS") == "" {
		t.Fatal(err)
	}
	want := smallPayload(t, testKey(1))
	if !bytes.Contains(b, []byte(fmt.Sprintf("%q", want))) && os.Getenv("NODEBOOT_WRITE_SEEDS") == "" {
		t.Fatalf("testdata/fuzz/FuzzVerify/valid is stale; regenerate it with NODEBOOT_WRITE_SEEDS=1 go test -run TestFuzzSeeds")
	}
	if os.Getenv("NODEBOOT_WRITE_SEEDS") != "" {
		kernelEnd := int(mustHeader(t, want).Size()) + len("kernel bytes")
		write := func(dir, name string, data []byte) {
			os.MkdirAll(filepath.Join("testdata/fuzz", dir), 0o755)
			os.WriteFile(filepath.Join("testdata/fuzz", dir, name), []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)), 0o644)
		}
		write("FuzzVerify", "valid", want)
		write("FuzzVerify", "truncated", want[:kernelEnd+7])
		flipped := bytes.Clone(want)
		flipped[len(flipped)-3] ^= 0x20
		write("FuzzVerify", "flipped-rootfs", flipped)
		h := mustHeader(t, want)
		write("FuzzParseManifest", "valid", h.Raw)
		write("FuzzParseManifest", "empty-object", []byte("{}"))
		write("FuzzParseManifest", "wrong-chunks", bytes.Replace(h.Raw, []byte(`"size": 12`), []byte(`"size": 123456`), 1))
	}
}

func mustHeader(t testing.TB, b []byte) *Header {
	h, err := ReadHeader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// FuzzVerify runs the streaming verifier over arbitrary streams: it must
// never panic, and the only stream it accepts signed by testKey(1) is the
// one that key signed (the seed "valid").
func FuzzVerify(f *testing.F) {
	valid := smallPayload(f, testKey(1))
	f.Add(valid)
	trusted := []ed25519.PublicKey{pub(testKey(1))}
	validSum := sha256.Sum256(valid)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Verify(bytes.NewReader(b), trusted)
		if err != nil {
			return
		}
		// A signature binds the manifest; the manifest binds every byte.
		if sha256.Sum256(b) != validSum {
			t.Fatalf("accepted a stream that is not the signed one (manifest %s)", h.Raw)
		}
	})
}

// FuzzParseManifest: any bytes give a checked manifest or an ErrInvalid,
// never a panic; what it accepts re-encodes to something it accepts again.
func FuzzParseManifest(f *testing.F) {
	f.Add(mustHeader(f, smallPayload(f, testKey(1))).Raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error without ErrInvalid: %v", err)
			}
			return
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseManifest(again); err != nil {
			t.Fatalf("accepted %q, refused its re-encoding: %v", b, err)
		}
	})
}
