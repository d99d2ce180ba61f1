package bundle

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// layerFiles is a small app tree with a dependency dir, a symlink and an
// executable.
func layerFiles(t testing.TB) []File {
	t.Helper()
	dir := t.TempDir()
	mk := func(rel, data string, mode os.FileMode) File {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		return File{Rel: rel, Src: p, Mode: mode}
	}
	return []File{
		mk("index.js", "console.log(1)\n", 0o644),
		mk("a-b.js", "x\n", 0o644),
		{Rel: "lib", Mode: os.ModeDir | 0o755},
		mk("lib/x.js", "y\n", 0o644),
		{Rel: "node_modules", Mode: os.ModeDir | 0o755},
		{Rel: "node_modules/dep", Mode: os.ModeDir | 0o755},
		mk("node_modules/dep/index.js", "z\n", 0o644),
		mk("node_modules/dep/cli", "#!/usr/bin/env node\n", 0o755),
		{Rel: "node_modules/alias", Mode: os.ModeSymlink | 0o777, Link: "dep"},
		mk("package.json", `{"main":"index.js"}`, 0o644),
	}
}

func layerOf(t testing.TB, files []File) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteLayer(&b, files); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestAssembleMatchesWrite: layers of any partition of an app's files
// assemble into the bytes Write makes of them all.
func TestAssembleMatchesWrite(t *testing.T) {
	files := layerFiles(t)
	meta := Meta{App: "shop", Entry: "index.js"}
	var want bytes.Buffer
	if err := Write(&want, meta, files); err != nil {
		t.Fatal(err)
	}
	for _, split := range []func(File) int{
		func(f File) int { return 0 },
		func(f File) int {
			if strings.HasPrefix(f.Rel, "node_modules") {
				return 0
			}
			return 1
		},
		func(f File) int { return len(f.Rel) % 3 },
	} {
		parts := make([][]File, 3)
		for _, f := range files {
			i := split(f)
			parts[i] = append(parts[i], f)
		}
		var rs []io.Reader
		for _, p := range parts {
			if len(p) > 0 {
				rs = append(rs, bytes.NewReader(layerOf(t, p)))
			}
		}
		var got bytes.Buffer
		if err := Assemble(&got, meta, ModTime(), rs); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("assembled from %d layers: %d bytes, Write made %d", len(rs), got.Len(), want.Len())
		}
	}
}

func TestAssembleRefuses(t *testing.T) {
	files := layerFiles(t)
	meta := Meta{App: "shop", Entry: "index.js"}
	all := layerOf(t, files)
	for name, c := range map[string]struct {
		meta   Meta
		layers [][]byte
	}{
		"overlap":        {meta, [][]byte{all, layerOf(t, files[:1])}},
		"no entry":       {meta, [][]byte{layerOf(t, files[4:9])}},
		"not zstd":       {meta, [][]byte{[]byte("hello")}},
		"bad meta":       {Meta{App: "Bad", Entry: "index.js"}, [][]byte{all}},
		"trailing bytes": {meta, [][]byte{append(append([]byte(nil), all...), 1, 2, 3)}},
	} {
		var rs []io.Reader
		for _, l := range c.layers {
			rs = append(rs, bytes.NewReader(l))
		}
		err := Assemble(io.Discard, c.meta, time.Unix(0, 0), rs)
		if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsafe) {
			t.Errorf("%s: %v, want ErrInvalid or ErrUnsafe", name, err)
		}
	}
}

func FuzzAssemble(f *testing.F) {
	files := layerFiles(f)
	f.Add(layerOf(f, files[:5]), layerOf(f, files[5:]))
	if os.Getenv("NODEBOOT_WRITE_SEEDS") == "1" {
		p := filepath.Join("testdata", "fuzz", "FuzzAssemble", "layers")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(layerOf(f, files[:5])))+")\n[]byte("+strconv.Quote(string(layerOf(f, files[5:])))+")\n"), 0o644)
	}
	meta := Meta{App: "shop", Entry: "index.js"}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var out bytes.Buffer
		err := Assemble(&out, meta, time.Unix(0, 0), []io.Reader{bytes.NewReader(a), bytes.NewReader(b)})
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsafe) {
				t.Fatalf("error wraps neither ErrInvalid nor ErrUnsafe: %v", err)
			}
			return
		}
		// What assembles is a bundle the node's extractor reads the
		// metadata of (the rest it judges itself).
		dst := filepath.Join(t.TempDir(), "x")
		if _, err := Extract(bytes.NewReader(out.Bytes()), dst, Limits{}); err != nil && !errors.Is(err, ErrUnsafe) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooBig) {
			t.Fatalf("assembled bundle: %v", err)
		}
	})
}
