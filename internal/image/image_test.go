package image

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

func sampleTree(t *testing.T) *Tree {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "big.bin")
	data := bytes.Repeat([]byte("0123456789abcdef"), 4097) // not a multiple of 4: exercises padding
	if err := os.WriteFile(src, data[:len(data)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	tr := NewTree()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tr.AddFile("/usr/bin/node", src, 0o755, int64(len(data)-3)))
	must(tr.AddData("/etc/hostname", []byte("hello\n"), 0o644))
	must(tr.AddSymlink("/etc/resolv.conf", "../run/resolv.conf"))
	must(tr.AddDir("/tmp", 0o1777, 0, 0))
	must(tr.AddDir("/data/state/app", 0o700, 1000, 1000))
	must(tr.AddData("/apps/a/x", nil, 0o644))
	return tr
}

type readEntry struct {
	mode     cpio.FileMode
	uid, gid int
	link     string
	data     string
	mtime    int64
}

func readCPIO(t *testing.T, r io.Reader) map[string]readEntry {
	t.Helper()
	cr := cpio.NewReader(r)
	out := map[string]readEntry{}
	for {
		h, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(cr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = readEntry{mode: h.Mode, uid: h.Uid, gid: h.Guid, link: h.Linkname, data: string(b), mtime: h.ModTime.Unix()}
	}
	return out
}

func TestCPIORoundTrip(t *testing.T) {
	tr := sampleTree(t)
	var buf bytes.Buffer
	if err := WriteCPIO(tr, &buf, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	got := readCPIO(t, &buf)
	node := got["usr/bin/node"]
	if !node.mode.IsRegular() || node.mode.Perm() != 0o755 || len(node.data) != 16*4097-3 {
		t.Errorf("usr/bin/node: mode %v, %d bytes", node.mode, len(node.data))
	}
	if node.mtime != 1700000000 || node.uid != 0 || node.gid != 0 {
		t.Errorf("usr/bin/node: mtime %d uid %d gid %d; want fixed mtime, root", node.mtime, node.uid, node.gid)
	}
	if g := got["etc/hostname"]; g.data != "hello\n" {
		t.Errorf("etc/hostname = %q", g.data)
	}
	if l := got["etc/resolv.conf"]; l.mode&^cpio.ModePerm != cpio.TypeSymlink || l.link != "../run/resolv.conf" {
		t.Errorf("etc/resolv.conf: mode %v link %q", l.mode, l.link)
	}
	if d := got["tmp"]; !d.mode.IsDir() || d.mode&0o7777 != 0o1777 {
		t.Errorf("tmp: mode %o, want dir 1777", d.mode)
	}
	if d := got["data/state/app"]; d.uid != 1000 || d.gid != 1000 || d.mode&0o777 != 0o700 {
		t.Errorf("data/state/app: %+v", d)
	}
	// Implied parents exist and come before their children.
	for _, p := range []string{".", "usr", "usr/bin", "etc", "data", "data/state", "apps", "apps/a"} {
		if e, ok := got[p]; !ok || !e.mode.IsDir() {
			t.Errorf("parent %q missing or not a dir", p)
		}
	}
	if e, ok := got["apps/a/x"]; !ok || e.data != "" {
		t.Errorf("empty file: %+v %v", e, ok)
	}
}

func TestEntriesSortedParentsFirst(t *testing.T) {
	tr := sampleTree(t)
	seen := map[string]bool{}
	for _, e := range tr.Entries() {
		if e.Path != "/" && !seen[filepath.Dir(e.Path)] {
			t.Errorf("%s comes before its parent", e.Path)
		}
		seen[e.Path] = true
	}
}

func TestPathConflicts(t *testing.T) {
	tr := NewTree()
	if err := tr.AddData("/etc", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tr.AddData("/etc/passwd", []byte("x"), 0o644); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file under a file: err = %v", err)
	}
	if err := tr.AddData("relative", nil, 0o644); err == nil {
		t.Error("relative path accepted")
	}
}

func TestCompressedReproducible(t *testing.T) {
	for _, c := range []Compression{Zstd, Gzip, None} {
		t.Run(string(c), func(t *testing.T) {
			dir := t.TempDir()
			tr := sampleTree(t)
			var sums [2][]byte
			for i := range sums {
				p := filepath.Join(dir, "initrd"+string(rune('a'+i)))
				st, err := WriteInitramfs(tr, p, c, time.Unix(0, 0))
				if err != nil {
					t.Fatal(err)
				}
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(b)) != st.Compressed {
					t.Errorf("stats say %d bytes, file has %d", st.Compressed, len(b))
				}
				sums[i] = b
			}
			if !bytes.Equal(sums[0], sums[1]) {
				t.Fatal("two builds of the same tree differ")
			}
			// And it decompresses to a valid archive.
			var r io.Reader = bytes.NewReader(sums[0])
			switch c {
			case Zstd:
				zr, err := zstd.NewReader(r)
				if err != nil {
					t.Fatal(err)
				}
				defer zr.Close()
				r = zr
			case Gzip:
				gr, err := gzip.NewReader(r)
				if err != nil {
					t.Fatal(err)
				}
				r = gr
			}
			if got := readCPIO(t, r); got["etc/hostname"].data != "hello\n" {
				t.Errorf("round trip through %s lost data", c)
			}
		})
	}
}

func TestWriteInitramfsLeavesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	tr := NewTree()
	if err := tr.AddFile("/x", filepath.Join(dir, "missing"), 0o644, 0); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "initrd")
	if _, err := WriteInitramfs(tr, out, Zstd, time.Unix(0, 0)); err == nil {
		t.Fatal("missing source accepted")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

func TestParseCompression(t *testing.T) {
	for _, s := range []string{"zstd", "gzip", "none"} {
		if _, err := ParseCompression(s); err != nil {
			t.Error(err)
		}
	}
	if _, err := ParseCompression("lz4"); err == nil || !strings.Contains(err.Error(), "zstd, gzip or none") {
		t.Errorf("lz4: %v", err)
	}
}

// TestCPIORefusesFourGiB: newc records sizes in 32 bits; a 4 GiB file
// (sparse here) must be refused by name, not wrapped around into a corrupt
// archive.
func TestCPIORefusesFourGiB(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "model.bin")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxCPIOFile); err != nil {
		t.Fatal(err)
	}
	f.Close()
	tr := NewTree()
	if err := tr.AddFile("/apps/a/model.bin", big, 0o644, MaxCPIOFile); err != nil {
		t.Fatal(err)
	}
	err = WriteCPIO(tr, io.Discard, time.Unix(0, 0))
	if !errors.Is(err, ErrFileTooBig) || !strings.Contains(err.Error(), "/apps/a/model.bin") || !strings.Contains(err.Error(), "4.0 GiB") {
		t.Fatalf("err = %v, want ErrFileTooBig naming /apps/a/model.bin", err)
	}
	out := filepath.Join(dir, "out", "initramfs.cpio")
	os.MkdirAll(filepath.Dir(out), 0o755)
	if _, err := WriteInitramfs(tr, out, None, time.Unix(0, 0)); !errors.Is(err, ErrFileTooBig) {
		t.Fatalf("WriteInitramfs: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}

// TestWriteInitramfsCancelled: a cancelled build (Ctrl-C) stops writing and
// leaves no temporary file.
func TestWriteInitramfsCancelled(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := WriteInitramfsContext(ctx, sampleTree(t), filepath.Join(dir, "initramfs.cpio"), None, time.Unix(0, 0))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}
