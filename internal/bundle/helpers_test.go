package bundle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// ent is one hand-made tar entry, so tests can write what Write never would.
type ent struct {
	name string
	typ  byte
	mode int64
	data string
	link string
}

func file(name, data string) ent { return ent{name: name, typ: tar.TypeReg, mode: 0o644, data: data} }
func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, link string) ent {
	return ent{name: name, typ: tar.TypeSymlink, mode: 0o777, link: link}
}

var goodMeta = Meta{Format: 1, App: "hello", Entry: "server.js", NodeArgs: []string{}, Libraries: []string{}}

func metaEnt(m any) ent {
	if s, ok := m.(string); ok {
		return file(MetaName, s)
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return file(MetaName, string(b))
}

// rawTar is the uncompressed tar of ents.
func rawTar(t testing.TB, ents []ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("writing test tar entry %q: %v", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func compress(t testing.TB, raw []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, append([]zstd.EOption{zstd.WithEncoderConcurrency(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// mk is a bundle of ents: the meta entry is not added.
func mk(t testing.TB, ents ...ent) []byte { return compress(t, rawTar(t, ents)) }

// good is a valid bundle's entries plus extra ones.
func good(extra ...ent) []ent {
	return append([]ent{metaEnt(goodMeta), dir("app/"), file("app/server.js", "console.log(1)\n")}, extra...)
}

// sandbox is a temp dir holding a sentinel file, and the dst path inside
// it Extract should create.
func sandbox(t testing.TB) (parent, dst string) {
	t.Helper()
	parent = t.TempDir()
	if err := os.WriteFile(filepath.Join(parent, "sentinel"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return parent, filepath.Join(parent, "dst")
}

// outsideUntouched fails unless parent holds exactly the sentinel, plus
// dst when dstOK.
func outsideUntouched(t testing.TB, parent string, dstOK bool) {
	t.Helper()
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := "sentinel"
	if dstOK {
		want = "dst sentinel"
	}
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("the directory around dst holds %q, want %q", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(parent, "sentinel")); err != nil || string(b) != "x" {
		t.Fatalf("sentinel changed: %q, %v", b, err)
	}
}

// treeOf describes a tree: path -> "d", "f <mode> <content>", "l <target>".
func treeOf(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			out[rel] = "d " + info.Mode().Perm().String()
		case info.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "l " + l
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "f " + info.Mode().Perm().String() + " " + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keys(m map[string]string) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
