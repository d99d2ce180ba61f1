package disk

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/squashfs"

	"github.com/nodeboot/nodeboot/internal/image"
)

func writeSquashfsFile(t *testing.T, tr *image.Tree, o squashfsOptions) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "root.sqfs")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := writeSquashfs(tr, f, 0, o)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := f.Stat(); st.Size() > n {
		t.Fatalf("wrote %d bytes, reported %d", st.Size(), n)
	}
	return p
}

// TestSquashfsBigTree covers what a node_modules tree brings: a directory
// whose listing passes 64 KiB (the extended directory inode), an inode table
// of many metadata blocks, and siblings whose inode numbers are more than a
// 16-bit delta apart (a new directory header).
func TestSquashfsBigTree(t *testing.T) {
	unsquashfs := needTool(t, "unsquashfs", "squashfs-tools")
	tr := image.NewTree()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tr.AddData("/a", []byte("first"), 0o644))
	const n = 34000
	for i := 0; i < n; i++ {
		must(tr.AddData(fmt.Sprintf("/b/node_modules_package_file_%06d.js", i), []byte(fmt.Sprint(i)), 0o644))
	}
	must(tr.AddData("/c", []byte("last"), 0o644))
	start := time.Now()
	img := writeSquashfsFile(t, tr, squashfsOptions{})
	t.Logf("%d entries in %v", n+4, time.Since(start))

	out, err := exec.Command(unsquashfs, "-lln", "-d", "", img).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v\n%s", err, out)
	}
	if got := strings.Count(string(out), "\n-rw-r--r-- 0/0"); got != n+2 {
		t.Errorf("unsquashfs lists %d files, want %d", got, n+2)
	}
	dest := filepath.Join(t.TempDir(), "x")
	out, err = exec.Command(unsquashfs, "-no-progress", "-d", dest, img, "a", "c", "b/node_modules_package_file_033999.js").CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, out)
	}
	for p, want := range map[string]string{"a": "first", "c": "last", "b/node_modules_package_file_033999.js": "33999"} {
		if got, err := os.ReadFile(filepath.Join(dest, p)); err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", p, got, err, want)
		}
	}
}

// TestSquashfsGoDiskfsReader reads the image with go-diskfs's squashfs reader,
// a second implementation beside unsquashfs.
func TestSquashfsGoDiskfsReader(t *testing.T) {
	f := newFixture(t)
	img := writeSquashfsFile(t, f.tree, squashfsOptions{MTime: 1234})
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	sq, err := squashfs.Read(file.New(fh, true), st.Size(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range f.tree.Entries() {
		if e.Kind != image.KindFile {
			continue
		}
		want := e.Data
		if e.Source != "" {
			want, _ = os.ReadFile(e.Source)
		}
		r, err := sq.OpenFile(strings.TrimPrefix(e.Path, "/"), os.O_RDONLY)
		if err != nil {
			t.Errorf("%s: %v", e.Path, err)
			continue
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes (%v), want %d", e.Path, len(got), err, len(want))
		}
	}
	ents, err := sq.ReadDir("many")
	if err != nil || len(ents) != 300 {
		t.Errorf("many/: %d entries (%v), want 300", len(ents), err)
	}
}

func TestSquashfsEmptyRoot(t *testing.T) {
	unsquashfs := needTool(t, "unsquashfs", "squashfs-tools")
	img := writeSquashfsFile(t, image.NewTree(), squashfsOptions{})
	if out, err := exec.Command(unsquashfs, "-lln", "-d", "", img).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v\n%s", err, out)
	}
}

// TestNodeBinary puts a real node binary (about 100 MB) into an image and
// reads it back; it also reports the sizes and times quoted in the docs.
func TestNodeBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on this host")
	}
	if node, err = filepath.EvalSymlinks(node); err != nil {
		t.Fatal(err)
	}
	unsquashfs := needTool(t, "unsquashfs", "squashfs-tools")
	f := newFixture(t)
	st, err := os.Stat(node)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.tree.AddFile("/usr/bin/node", node, 0o755, st.Size()); err != nil {
		t.Fatal(err)
	}
	o := f.options("node.img")
	o.Size = DefaultSize
	start := time.Now()
	l := writeImage(t, o)
	t.Logf("node %d bytes, tree %d bytes: root fs %d bytes (%.0f%%), slot %d MiB, written in %v",
		st.Size(), f.tree.Size(), l.RootFSSize, 100*float64(l.RootFSSize)/float64(f.tree.Size()), l.RootA.Size>>20, time.Since(start).Round(time.Millisecond))
	checkSquashfs(t, unsquashfs, o.Path, l.RootA.Offset, f.tree, "1970-01-01 00:00")
}
