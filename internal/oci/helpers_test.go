package oci

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/bundle"
	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/ospayload"
	"github.com/nodeboot/nodeboot/internal/spec"
)

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

func put(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// testApp writes a real app dir: package.json, its code, and a
// node_modules of depBytes incompressible bytes.
func testApp(t testing.TB, depBytes int) string {
	t.Helper()
	dir := t.TempDir()
	put(t, filepath.Join(dir, "package.json"), []byte(`{"name":"shop","version":"1.0.0","main":"index.js"}`))
	put(t, filepath.Join(dir, "index.js"), []byte("require('http').createServer((q, s) => s.end('v1\\n')).listen(process.env.PORT)\n"))
	put(t, filepath.Join(dir, "lib", "util.js"), []byte("module.exports = 1\n"))
	put(t, filepath.Join(dir, "node_modules", "dep", "package.json"), []byte(`{"name":"dep","main":"index.js"}`))
	put(t, filepath.Join(dir, "node_modules", "dep", "index.js"), []byte("module.exports = 2\n"))
	put(t, filepath.Join(dir, "node_modules", "dep", "blob.bin"), random(depBytes, 7))
	if err := os.Symlink("dep", filepath.Join(dir, "node_modules", "alias")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// appInput reads an app dir as `nodeboot push` does.
func appInput(t testing.TB, dir string) AppInput {
	t.Helper()
	p, err := spec.Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	a := &p.Apps[0]
	return AppInput{
		Meta:  bundle.Meta{Format: bundle.Format, App: a.Name, Entry: a.Entry, NodeArgs: a.NodeArgs, Engines: a.Engines},
		Files: bundle.FromSpec(a.SrcDir, a.Files),
	}
}

// plainBundle is what `nodeboot deploy` would send for the app.
func plainBundle(t testing.TB, in AppInput) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := bundle.Write(&b, in.Meta, in.Files); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// osPayload makes a real OS update payload from a real disk image.
func osPayload(t testing.TB, key ed25519.PrivateKey, rootSize int) *ospayload.Payload {
	t.Helper()
	dir := t.TempDir()
	kp := filepath.Join(dir, "bzImage")
	efi := filepath.Join(dir, "systemd-bootx64.efi")
	put(t, kp, random(1<<20+4321, 1))
	put(t, efi, random(4096, 2))
	tr := image.NewTree()
	if err := tr.AddData("/init", []byte("#!/not/a/shell\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	put(t, big, random(rootSize, 3))
	if err := tr.AddFile("/usr/bin/node", big, 0o755, int64(rootSize)); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.img")
	if _, err := disk.Write(disk.Options{Path: img, Size: 768 * disk.MiB, Root: tr, Kernel: kp,
		Cmdline: "console=ttyS0 panic=5", SystemdBoot: efi, Seed: "oci-test", Title: "shop"}); err != nil {
		t.Fatal(err)
	}
	p, err := ospayload.FromImage(img, ospayload.BuildOptions{Key: key, Version: 42})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return c
}

func mustRef(t testing.TB, s string) Ref {
	t.Helper()
	r, err := ParseRef(s, false)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
