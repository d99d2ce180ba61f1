package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// cpioNames lists an archive's entries and their contents.
func cpioNames(t *testing.T, b []byte) map[string]string {
	t.Helper()
	r := cpio.NewReader(bytes.NewReader(b))
	out := map[string]string{}
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(r)
		out[h.Name] = string(data)
	}
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

// A rebuild after an edit to the app reuses the cached system part
// (not rewritten), and its initramfs is that part followed by an app part
// holding the edit; the manifest's digest is the file's. A damaged part is
// written again rather than copied into an image.
func TestWarmRebuildReusesSystemPart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real image")
	}
	app := copyDir(t, "../../examples/hello")
	build := func(out string) *Result {
		t.Helper()
		var log bytes.Buffer
		res, err := Build(context.Background(), Options{AppDir: app, OutDir: out, Log: &log, Version: "test", Scratch: true})
		if err != nil {
			t.Fatalf("build: %v\n%s", err, log.String())
		}
		return res
	}
	first := build(filepath.Join(t.TempDir(), "out"))
	before, err := os.Stat(first.SystemPart)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "server.js"), append(must(os.ReadFile(filepath.Join(app, "server.js"))), []byte("\n// edited\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	second := build(filepath.Join(t.TempDir(), "out"))
	if second.SystemPart != first.SystemPart {
		t.Fatalf("the rebuild used part %s, the first build %s", second.SystemPart, first.SystemPart)
	}
	after, err := os.Stat(second.SystemPart)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Error("the system part was written again for an app edit")
	}
	if first.Manifest.ImageVersion == second.Manifest.ImageVersion {
		t.Error("the image id did not change with the app")
	}
	checkImage := func(res *Result) {
		t.Helper()
		img := must(os.ReadFile(res.InitrdPath))
		part := must(os.ReadFile(res.SystemPart))
		var meta partMeta
		if err := json.Unmarshal(must(os.ReadFile(filepath.Join(filepath.Dir(res.SystemPart), "meta.json"))), &meta); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(img, part) || int64(len(part)) != meta.Size {
			t.Fatal("the initramfs does not start with the cached system part")
		}
		if s := sha256.Sum256(img); hex.EncodeToString(s[:]) != res.Manifest.Initramfs.SHA256 || int64(len(img)) != res.Manifest.Initramfs.Size {
			t.Errorf("manifest says %s (%d bytes), the file is %x (%d bytes)", res.Manifest.Initramfs.SHA256, res.Manifest.Initramfs.Size, s, len(img))
		}
		sys, apps := cpioNames(t, img[:len(part)]), cpioNames(t, img[len(part):])
		if _, ok := sys["usr/bin/node"]; !ok {
			t.Error("no node in the system part")
		}
		if _, ok := apps["usr/bin/node"]; ok {
			t.Error("node in the app part too")
		}
		if !bytes.HasSuffix([]byte(apps["apps/hello/server.js"]), []byte("// edited\n")) {
			t.Error("the app part lacks the edit")
		}
		if _, ok := apps["etc/nodeboot/runtime.json"]; !ok {
			t.Error("no runtime.json in the app part")
		}
	}
	checkImage(second)

	// Damage the part in place (same size): the next build notices and
	// writes it again.
	f, err := os.OpenFile(second.SystemPart, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("garbage"), 1<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	third := build(filepath.Join(t.TempDir(), "out"))
	if third.Manifest.Initramfs.SHA256 != second.Manifest.Initramfs.SHA256 {
		t.Error("the build after the damage made another image from the same inputs")
	}
	checkImage(third)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
