package bundle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/nodeboot/nodeboot/internal/spec"
)

// sampleApp makes an app dir with what real apps have: nested dirs, an
// executable, a group-writable file, relative symlinks to a file and a dir,
// an empty dir.
func sampleApp(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(d, "package.json"), []byte(`{"name":"hello","main":"server.js"}`), 0o644))
	must(os.WriteFile(filepath.Join(d, "server.js"), []byte("require('http')\n"), 0o664))
	must(os.MkdirAll(filepath.Join(d, "node_modules", "dep", "lib"), 0o755))
	must(os.MkdirAll(filepath.Join(d, "node_modules", ".bin"), 0o755))
	must(os.MkdirAll(filepath.Join(d, "empty"), 0o700))
	must(os.WriteFile(filepath.Join(d, "node_modules", "dep", "lib", "index.js"), []byte("module.exports=1\n"), 0o644))
	must(os.WriteFile(filepath.Join(d, "node_modules", "dep", "cli.js"), []byte("#!/usr/bin/env node\n"), 0o775))
	// Modes as written, whatever the umask of the test run.
	for rel, mode := range map[string]os.FileMode{"package.json": 0o644, "server.js": 0o664, "empty": 0o700,
		"node_modules/dep/lib/index.js": 0o644, "node_modules/dep/cli.js": 0o775} {
		must(os.Chmod(filepath.Join(d, rel), mode))
	}
	must(os.Symlink("../dep/cli.js", filepath.Join(d, "node_modules", ".bin", "dep")))
	must(os.Symlink("node_modules/dep/lib", filepath.Join(d, "lib")))
	return d
}

func writeSample(t testing.TB, appDir string) []byte {
	t.Helper()
	files, _, err := spec.ListFiles(appDir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	meta := Meta{App: "hello", Entry: "server.js", NodeArgs: []string{"--enable-source-maps"}, Engines: ">=20", Libraries: []string{"libz.so.1"}}
	if err := Write(&buf, meta, FromSpec(appDir, files)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	app := sampleApp(t)
	data := writeSample(t, app)
	parent, dst := sandbox(t)
	meta, err := Extract(bytes.NewReader(data), dst, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := Meta{Format: 1, App: "hello", Entry: "server.js", NodeArgs: []string{"--enable-source-maps"}, Engines: ">=20", Libraries: []string{"libz.so.1"}}
	if !reflect.DeepEqual(meta, want) {
		t.Errorf("meta = %+v, want %+v", meta, want)
	}
	got := treeOf(t, dst)
	src := treeOf(t, app)
	// What the node should see: the same tree, code read-only (0644 or
	// 0755 by the executable bit) and every dir 0755.
	wantTree := map[string]string{}
	for k, v := range src {
		switch {
		case strings.HasPrefix(v, "d "):
			v = "d -rwxr-xr-x"
		case strings.HasPrefix(v, "f -rwxrwxr-x"):
			v = "f -rwxr-xr-x" + strings.TrimPrefix(v, "f -rwxrwxr-x")
		case strings.HasPrefix(v, "f -rw-rw-r--"):
			v = "f -rw-r--r--" + strings.TrimPrefix(v, "f -rw-rw-r--")
		}
		wantTree[k] = v
	}
	if !reflect.DeepEqual(got, wantTree) {
		t.Errorf("extracted tree differs:\n got  %q\n want %q", got, wantTree)
		for _, k := range keys(wantTree) {
			if got[k] != wantTree[k] {
				t.Errorf("%s: got %q, want %q", k, got[k], wantTree[k])
			}
		}
	}
	outsideUntouched(t, parent, true)
}

func TestReproducible(t *testing.T) {
	app := sampleApp(t)
	a := writeSample(t, app)
	// Touching the sources must not change the bundle.
	if err := os.Chtimes(filepath.Join(app, "server.js"), time.Unix(12345, 0), time.Unix(12345, 0)); err != nil {
		t.Fatal(err)
	}
	b := writeSample(t, app)
	if !bytes.Equal(a, b) {
		t.Fatalf("two bundles of the same app differ (%d and %d bytes)", len(a), len(b))
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	c := writeSample(t, app)
	if bytes.Equal(a, c) {
		t.Fatal("SOURCE_DATE_EPOCH did not change the bundle")
	}
	zr, err := zstd.NewReader(bytes.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.ModTime.Unix() != 1700000000 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: mtime %v uid %d gid %d uname %q gname %q", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		names = append(names, h.Name)
	}
	if names[0] != MetaName || names[1] != "app/" {
		t.Errorf("entries start %q, want %s then app/", names[:2], MetaName)
	}
	for i := 2; i < len(names)-1; i++ {
		if names[i] >= names[i+1] {
			t.Errorf("entries not sorted: %q before %q", names[i], names[i+1])
		}
	}
}

func TestWriteRejects(t *testing.T) {
	app := sampleApp(t)
	srv := filepath.Join(app, "server.js")
	cases := []struct {
		name  string
		meta  Meta
		files []File
		want  string
	}{
		{"bad app name", Meta{App: "Hello_World", Entry: "server.js"}, []File{{Rel: "server.js", Src: srv, Mode: 0o644}}, "not a valid app name"},
		{"missing entry", Meta{App: "hello", Entry: "main.js"}, []File{{Rel: "server.js", Src: srv, Mode: 0o644}}, "not among the app's files"},
		{"escaping link", Meta{App: "hello", Entry: "server.js"}, []File{{Rel: "server.js", Src: srv, Mode: 0o644}, {Rel: "x", Mode: os.ModeSymlink, Link: "../../etc"}}, "leaves the app directory"},
		{"dotdot path", Meta{App: "hello", Entry: "server.js"}, []File{{Rel: "server.js", Src: srv, Mode: 0o644}, {Rel: "../x", Src: srv, Mode: 0o644}}, `".." component`},
		{"twice", Meta{App: "hello", Entry: "server.js"}, []File{{Rel: "server.js", Src: srv, Mode: 0o644}, {Rel: "server.js", Src: srv, Mode: 0o644}}, "listed twice"},
		{"fifo", Meta{App: "hello", Entry: "server.js"}, []File{{Rel: "server.js", Src: srv, Mode: 0o644}, {Rel: "p", Mode: os.ModeNamedPipe}}, "not a regular file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Write(io.Discard, c.meta, c.files)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Write: %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// rejectCases are bundles Extract must refuse, each for its own reason.
func rejectCases(t testing.TB, parent string) []struct {
	name string
	data []byte
	lim  Limits
	want error
	msg  string
} {
	long := "app/" + strings.Repeat("d/", 2100) + "f"
	abs := filepath.Join(parent, "abs-evil")
	meta := func(m Meta) ent { return metaEnt(m) }
	withEntry := func(e string) Meta { m := goodMeta; m.Entry = e; return m }
	type tc = struct {
		name string
		data []byte
		lim  Limits
		want error
		msg  string
	}
	return []tc{
		{"absolute path", mk(t, good(file(abs, "x"))...), Limits{}, ErrUnsafe, "absolute path"},
		{"dotdot", mk(t, good(file("app/../evil", "x"))...), Limits{}, ErrUnsafe, `".." component`},
		{"deep dotdot", mk(t, good(file("app/a/../../evil", "x"))...), Limits{}, ErrUnsafe, `".." component`},
		{"dotdot dir", mk(t, good(dir("app/../evil/"))...), Limits{}, ErrUnsafe, `".." component`},
		{"not under app", mk(t, good(file("evil", "x"))...), Limits{}, ErrUnsafe, "not under app/"},
		{"second meta", mk(t, good(metaEnt(goodMeta))...), Limits{}, ErrUnsafe, "not under app/"},
		{"not canonical", mk(t, good(file("app/./x", "x"))...), Limits{}, ErrUnsafe, "canonical"},
		{"symlink absolute", mk(t, good(symlink("app/etc", "/etc"))...), Limits{}, ErrUnsafe, "absolute target"},
		{"symlink leaves", mk(t, good(symlink("app/up", "../../evil"))...), Limits{}, ErrUnsafe, "leaves app/"},
		{"symlink to app's parent", mk(t, good(symlink("app/up", ".."))...), Limits{}, ErrUnsafe, "leaves app/"},
		{"symlink through a symlink", mk(t, good(dir("app/d/"), symlink("app/d/up", ".."), symlink("app/e", "d/up/.."))...), Limits{}, ErrUnsafe, "resolved through"},
		{"symlink loop", mk(t, good(symlink("app/a", "b"), symlink("app/b", "a"))...), Limits{}, ErrUnsafe, "loops"},
		{"symlink as parent", mk(t, good(dir("app/sub/"), symlink("app/l", "sub"), file("app/l/x", "x"))...), Limits{}, ErrUnsafe, "a symlink of the bundle"},
		{"symlink as parent dir", mk(t, good(symlink("app/l", "."), dir("app/l/x/"))...), Limits{}, ErrUnsafe, "a symlink of the bundle"},
		{"file over symlink", mk(t, good(symlink("app/l", "server.js"), file("app/l", "x"))...), Limits{}, ErrUnsafe, "appears twice"},
		{"hard link", mk(t, good(ent{name: "app/h", typ: tar.TypeLink, link: "app/server.js"})...), Limits{}, ErrUnsafe, "hard link"},
		{"char device", mk(t, good(ent{name: "app/c", typ: tar.TypeChar, mode: 0o644})...), Limits{}, ErrUnsafe, "device node"},
		{"block device", mk(t, good(ent{name: "app/b", typ: tar.TypeBlock, mode: 0o644})...), Limits{}, ErrUnsafe, "device node"},
		{"fifo", mk(t, good(ent{name: "app/p", typ: tar.TypeFifo, mode: 0o644})...), Limits{}, ErrUnsafe, "FIFO"},
		{"other type", mk(t, good(ent{name: "app/c", typ: tar.TypeCont, mode: 0o644})...), Limits{}, ErrUnsafe, "unsupported tar type"},
		{"setuid", mk(t, good(ent{name: "app/s", typ: tar.TypeReg, mode: 0o4755})...), Limits{}, ErrUnsafe, "setuid"},
		{"setgid dir", mk(t, good(ent{name: "app/g/", typ: tar.TypeDir, mode: 0o2755})...), Limits{}, ErrUnsafe, "setgid"},
		{"sticky", mk(t, good(ent{name: "app/t/", typ: tar.TypeDir, mode: 0o1777})...), Limits{}, ErrUnsafe, "sticky"},
		{"duplicate file", mk(t, good(file("app/server.js", "again"))...), Limits{}, ErrUnsafe, "appears twice"},
		{"duplicate app dir", mk(t, good(dir("app/"))...), Limits{}, ErrUnsafe, "appears twice"},
		{"dir over file", mk(t, good(dir("app/server.js/"))...), Limits{}, ErrUnsafe, "appears twice"},
		{"file under file", mk(t, good(file("app/server.js/x", "x"))...), Limits{}, ErrInvalid, "a file"},
		{"too many entries", mk(t, good(file("app/a", ""), file("app/b", ""), file("app/c", ""))...), Limits{MaxEntries: 5}, ErrTooBig, "more than 5 entries"},
		{"too many bytes", mk(t, good(file("app/a", strings.Repeat("a", 60)), file("app/b", strings.Repeat("b", 60)))...), Limits{MaxBytes: 100}, ErrTooBig, "more than 100 bytes"},
		{"file too big", mk(t, good(file("app/a", strings.Repeat("a", 11)))...), Limits{MaxFile: 10}, ErrTooBig, "more than the 10 allowed"},
		{"path too long", mk(t, good(file(long, "x"))...), Limits{}, ErrUnsafe, "longer than 4096"},
		{"path component too long", mk(t, good(file("app/"+strings.Repeat("n", 256), "x"))...), Limits{}, ErrUnsafe, "component longer than 255"},
		{"paths too many to track", mk(t, good(file("app/a", ""), file("app/b/c", ""))...), Limits{MaxPathBytes: 100}, ErrTooBig, "paths take more than 100 bytes"},
		{"symlink target too long", mk(t, good(symlink("app/l", strings.Repeat("a/", 2100)))...), Limits{}, ErrUnsafe, "longer than 4096"},
		{"no meta", mk(t, dir("app/"), file("app/server.js", "x")), Limits{}, ErrInvalid, "not the file " + MetaName},
		{"meta is a dir", mk(t, dir(MetaName+"/"), file("app/server.js", "x")), Limits{}, ErrInvalid, "not the file"},
		{"empty archive", mk(t), Limits{}, ErrInvalid, "empty archive"},
		{"meta unknown field", mk(t, metaEnt(`{"format":1,"app":"hello","entry":"server.js","colour":"red"}`), file("app/server.js", "x")), Limits{}, ErrInvalid, "unknown field"},
		{"meta not json", mk(t, metaEnt(`format=1`), file("app/server.js", "x")), Limits{}, ErrInvalid, MetaName},
		{"meta trailing data", mk(t, metaEnt(`{"format":1,"app":"hello","entry":"server.js"} {}`), file("app/server.js", "x")), Limits{}, ErrInvalid, "after the JSON object"},
		{"meta format 2", mk(t, metaEnt(`{"format":2,"app":"hello","entry":"server.js"}`), file("app/server.js", "x")), Limits{}, ErrInvalid, "format 2"},
		{"meta bad app", mk(t, metaEnt(`{"format":1,"app":"../etc","entry":"server.js"}`), file("app/server.js", "x")), Limits{}, ErrInvalid, "not a valid app name"},
		{"meta absolute entry", mk(t, meta(withEntry("/etc/passwd")), file("app/server.js", "x")), Limits{}, ErrInvalid, "absolute path"},
		{"meta dotdot entry", mk(t, meta(withEntry("../x.js")), file("app/server.js", "x")), Limits{}, ErrInvalid, `".." component`},
		{"meta bad library", mk(t, metaEnt(`{"format":1,"app":"hello","entry":"server.js","libraries":["/lib/x.so"]}`), file("app/server.js", "x")), Limits{}, ErrInvalid, "not a soname"},
		{"meta too big", mk(t, metaEnt(strings.Repeat(" ", maxMetaSize+1)), file("app/server.js", "x")), Limits{}, ErrTooBig, MetaName},
		{"entry missing", mk(t, meta(withEntry("main.js")), dir("app/"), file("app/server.js", "x")), Limits{}, ErrInvalid, `entry point "main.js"`},
		{"entry is a dir", mk(t, meta(withEntry("lib")), dir("app/"), file("app/server.js", "x"), dir("app/lib/")), Limits{}, ErrInvalid, `entry point "lib"`},
		{"entry dangling link", mk(t, meta(withEntry("main.js")), dir("app/"), symlink("app/main.js", "gone.js")), Limits{}, ErrInvalid, `entry point "main.js"`},
		{"not zstd", []byte("hello, this is not a bundle"), Limits{}, ErrInvalid, "zstd"},
		{"zstd but not tar", compress(t, []byte(strings.Repeat("not a tar ", 100))), Limits{}, ErrInvalid, "not a zstd-compressed tar"},
		{"truncated", mk(t, good()...)[:40], Limits{}, ErrInvalid, "not a zstd-compressed tar"},
		{"data after the tar", compress(t, append(rawTar(t, good()), "trailing"...)), Limits{}, ErrInvalid, "after the end of the tar"},
		{"garbage after the zstd stream", append(mk(t, good()...), "garbage"...), Limits{}, ErrInvalid, ""},
		{"huge zstd window", hugeWindow(rawTar(t, good()), 30), Limits{}, ErrInvalid, "window"},
	}
}

// hugeWindow wraps raw in a zstd frame that declares a window of 2^log
// bytes (our encoder would shrink it to fit the input): one raw block.
func hugeWindow(raw []byte, log int) []byte {
	out := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte(log-10) << 3}
	bh := uint32(len(raw))<<3 | 1 // last block, raw
	out = append(out, byte(bh), byte(bh>>8), byte(bh>>16))
	return append(out, raw...)
}

func TestExtractRejects(t *testing.T) {
	for _, c := range rejectCases(t, t.TempDir()) {
		t.Run(c.name, func(t *testing.T) {
			parent, dst := sandbox(t)
			// Rebuild cases that name a path in their own sandbox.
			data := c.data
			if c.name == "absolute path" {
				data = mk(t, good(file(filepath.Join(parent, "abs-evil"), "x"))...)
			}
			_, err := Extract(bytes.NewReader(data), dst, c.lim)
			if !errors.Is(err, c.want) {
				t.Fatalf("Extract: %v, want an error wrapping %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Extract: %v, want it to say %q", err, c.msg)
			}
			if _, err := os.Lstat(dst); !os.IsNotExist(err) {
				t.Errorf("dst left behind after a rejection: %v", err)
			}
			outsideUntouched(t, parent, false)
			if _, err := os.Lstat(filepath.Join(filepath.Dir(parent), "evil")); err == nil {
				t.Error("something was written next to the sandbox")
			}
		})
	}
}

func TestExtractAcceptsGood(t *testing.T) {
	cases := map[string][]ent{
		"parents implied":          {metaEnt(goodMeta), file("app/server.js", "x"), file("app/a/b/c.js", "y")},
		"dir after implied":        good(file("app/a/b.js", "y"), dir("app/a/")),
		"link to dir inside":       good(dir("app/lib/"), symlink("app/l", "lib"), symlink("app/lib/self", "../lib")),
		"entry through a link":     {metaEnt(Meta{Format: 1, App: "hello", Entry: "main.js"}), dir("app/"), file("app/server.js", "x"), symlink("app/main.js", "server.js")},
		"padding after the tar":    {},
		"group-writable is fine":   good(ent{name: "app/w.js", typ: tar.TypeReg, mode: 0o777}),
		"dangling link in the app": good(symlink("app/later", "not-yet")),
	}
	for name, ents := range cases {
		t.Run(name, func(t *testing.T) {
			data := mk(t, ents...)
			if name == "padding after the tar" {
				data = compress(t, append(rawTar(t, good()), make([]byte, 9216)...))
			}
			parent, dst := sandbox(t)
			if _, err := Extract(bytes.NewReader(data), dst, Limits{}); err != nil {
				t.Fatal(err)
			}
			outsideUntouched(t, parent, true)
			if name == "group-writable is fine" {
				st, err := os.Stat(filepath.Join(dst, "w.js"))
				if err != nil || st.Mode().Perm() != 0o755 {
					t.Errorf("w.js: %v %v, want mode 0755", st.Mode(), err)
				}
			}
		})
	}
}

func TestExtractDstMustNotExist(t *testing.T) {
	parent, dst := sandbox(t)
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(bytes.NewReader(mk(t, good()...)), dst, Limits{}); !errors.Is(err, os.ErrExist) {
		t.Fatalf("Extract into an existing dir: %v, want ErrExist", err)
	}
	if _, err := os.Stat(filepath.Join(dst, "keep")); err != nil {
		t.Errorf("an existing dst was touched: %v", err)
	}
	outsideUntouched(t, parent, true)
}

// lazyBundle streams a bundle made by gen through a pipe, so a test can
// offer gigabytes without making them; it counts what was consumed.
func lazyBundle(t *testing.T, gen func(tw *tar.Writer) error) (io.Reader, func() int64) {
	pr, pw := io.Pipe()
	var produced atomic.Int64
	go func() {
		zw, err := zstd.NewWriter(pw, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		tw := tar.NewWriter(&countWriter{w: zw, n: &produced})
		err = gen(tw)
		if err == nil {
			err = tw.Close()
		}
		if err == nil {
			err = zw.Close()
		}
		pw.CloseWithError(err)
	}()
	t.Cleanup(func() { pr.CloseWithError(errors.New("test over")) })
	return pr, produced.Load
}

type countWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func writeEnt(tw *tar.Writer, e ent) error {
	h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.data))}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := tw.Write([]byte(e.data))
	return err
}

func TestBomb(t *testing.T) {
	const huge = 64 << 30 // 64 GiB of zeros, a few MB compressed
	r, produced := lazyBundle(t, func(tw *tar.Writer) error {
		if err := writeEnt(tw, metaEnt(goodMeta)); err != nil {
			return err
		}
		if err := writeEnt(tw, file("app/server.js", "x")); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: "app/zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: huge}); err != nil {
			return err
		}
		zeros := make([]byte, 1<<20)
		for i := 0; i < huge>>20; i++ {
			if _, err := tw.Write(zeros); err != nil {
				return err
			}
		}
		return nil
	})
	parent, dst := sandbox(t)
	_, err := Extract(r, dst, Limits{})
	if !errors.Is(err, ErrTooBig) {
		t.Fatalf("Extract of a bomb: %v, want ErrTooBig", err)
	}
	// The refusal comes from the header: far less than the file was read.
	if n := produced(); n > 256<<20 {
		t.Errorf("%d bytes of the bomb were consumed before the refusal", n)
	}
	outsideUntouched(t, parent, false)
}

func TestBombManySmallFiles(t *testing.T) {
	// Under MaxFile each, together over MaxBytes: refused at the header of
	// the file that crosses the line, before its bytes are written.
	r, _ := lazyBundle(t, func(tw *tar.Writer) error {
		if err := writeEnt(tw, metaEnt(goodMeta)); err != nil {
			return err
		}
		if err := writeEnt(tw, file("app/server.js", "x")); err != nil {
			return err
		}
		chunk := make([]byte, 64<<10)
		for i := 0; ; i++ {
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("app/f%d", i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(chunk))}); err != nil {
				return err
			}
			if _, err := tw.Write(chunk); err != nil {
				return err
			}
		}
	})
	parent, dst := sandbox(t)
	_, err := Extract(r, dst, Limits{MaxBytes: 1 << 20, MaxFile: 1 << 20})
	if !errors.Is(err, ErrTooBig) || !strings.Contains(err.Error(), "bytes unpacked") {
		t.Fatalf("Extract: %v, want ErrTooBig for the unpacked size", err)
	}
	outsideUntouched(t, parent, false)
}

func TestMillionEntries(t *testing.T) {
	if testing.Short() {
		t.Skip("makes 100 000 directories")
	}
	var entries atomic.Int64
	r, _ := lazyBundle(t, func(tw *tar.Writer) error {
		if err := writeEnt(tw, metaEnt(goodMeta)); err != nil {
			return err
		}
		if err := writeEnt(tw, file("app/server.js", "x")); err != nil {
			return err
		}
		for i := 0; i < 1_000_000; i++ {
			if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("app/%07d/", i), Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				return err
			}
			entries.Add(1)
		}
		return nil
	})
	parent, dst := sandbox(t)
	_, err := Extract(r, dst, Limits{})
	if !errors.Is(err, ErrTooBig) || !strings.Contains(err.Error(), "more than 100000 entries") {
		t.Fatalf("Extract: %v, want ErrTooBig at 100000 entries", err)
	}
	// The pipe holds a little more than what was read; far from all of it.
	if n := entries.Load(); n >= 1_000_000 {
		t.Errorf("all %d entries were consumed", n)
	}
	outsideUntouched(t, parent, false)
}

func TestAppNameAgreesWithSpec(t *testing.T) {
	names := []string{"hello", "a", "a1", "a-b", "a--b", "my-app-2", "1app", "-a", "a-", "Hello", "a_b", "a.b", "",
		"root", "nobody", "rooty", strings.Repeat("a", 32), strings.Repeat("a", 33), "ä", "a b", "../x"}
	for _, n := range names {
		q, _ := json.Marshal(n)
		_, specErr := spec.ParseConfig([]byte(`{"apps":[{"name":`+string(q)+`,"path":"x"}]}`), "nodeboot.json")
		ourErr := CheckAppName(n)
		if (specErr == nil) != (ourErr == nil) {
			t.Errorf("%q: spec says %v, bundle says %v", n, specErr, ourErr)
		}
	}
}

func TestLinkEscapes(t *testing.T) {
	cases := []struct {
		links map[string]string
		rel   string
		want  bool
	}{
		{map[string]string{"a": "b"}, "a", false},
		{map[string]string{"a": ".."}, "a", true},
		{map[string]string{"d/up": "..", "e": "d/up/.."}, "e", true},
		{map[string]string{"d/up": "..", "e": "d/up/x"}, "e", false},
		{map[string]string{"a": "b", "b": "a"}, "a", true},
		{map[string]string{"a": "x/../../y"}, "a", true},
		{map[string]string{"x/l": "../y"}, "x/l", false},
		{map[string]string{"l": "/etc"}, "l", true},
	}
	for _, c := range cases {
		if got := linkEscapes(c.links, c.rel); got != c.want {
			t.Errorf("linkEscapes(%v, %q) = %v, want %v", c.links, c.rel, got, c.want)
		}
	}
}

// fuzzSeeds are FuzzExtract's seeds, small valid and hostile bundles; the
// same are checked in under testdata/fuzz/FuzzExtract (TestFuzzCorpus).
func fuzzSeeds(t testing.TB) map[string][]byte {
	seeds := map[string][]byte{
		"sample": writeSample(t, sampleApp(t)),
		"good":   mk(t, good()...),
		// The raw tar too, so the fuzzer also explores tar headers
		// directly once it learns to wrap them.
		"raw-tar": rawTar(t, good(symlink("app/l", "server.js"))),
	}
	for _, c := range rejectCases(t, "/nonexistent") {
		if len(c.data) < 4<<10 {
			seeds[strings.ReplaceAll(c.name, " ", "-")] = c.data
		}
	}
	return seeds
}

// TestFuzzCorpus keeps the checked-in corpus equal to fuzzSeeds in name
// (the bytes differ with the zstd encoder's version); with
// NODEBOOT_WRITE_CORPUS=1 it writes it.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzExtract")
	for name, data := range fuzzSeeds(t) {
		p := filepath.Join(dir, name)
		if os.Getenv("NODEBOOT_WRITE_CORPUS") == "1" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("seed %s is not checked in: %v; run NODEBOOT_WRITE_CORPUS=1 go test -run TestFuzzCorpus ./internal/bundle", name, err)
		}
	}
}

// fuzzBase is where FuzzExtract's runs extract: a tmpfs, so that each
// run's syncfs(2) is free instead of flushing the host's disk (which made
// the fuzzer crawl at a few runs a second). make fuzz sets TMPDIR=/dev/shm;
// without it, /dev/shm is used when it is a tmpfs.
func fuzzBase(f *testing.F) string {
	if onTmpfs(os.TempDir()) {
		return f.TempDir()
	}
	if onTmpfs("/dev/shm") {
		d, err := os.MkdirTemp("/dev/shm", "nodeboot-fuzz-")
		if err == nil {
			f.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	f.Logf("no tmpfs for the extractions (set TMPDIR to one): fuzzing runs at disk speed")
	return f.TempDir()
}

func FuzzExtract(f *testing.F) {
	for _, data := range fuzzSeeds(f) {
		f.Add(data)
	}
	base := fuzzBase(f)
	lim := Limits{MaxEntries: 200, MaxBytes: 1 << 20, MaxFile: 256 << 10}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent, err := os.MkdirTemp(base, "run-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(parent)
		if err := os.WriteFile(filepath.Join(parent, "sentinel"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(parent, "dst")
		meta, err := Extract(bytes.NewReader(data), dst, lim)
		if err != nil {
			if _, serr := os.Lstat(dst); !os.IsNotExist(serr) {
				t.Fatalf("dst left after %v", err)
			}
			outsideUntouched(t, parent, false)
			return
		}
		outsideUntouched(t, parent, true)
		if meta.check() != nil {
			t.Fatalf("accepted a bad meta %+v", meta)
		}
		// Every link the tree holds stays inside, resolved through the others.
		links := map[string]string{}
		for rel, d := range treeOf(t, dst) {
			if strings.HasPrefix(d, "l ") {
				links[filepath.ToSlash(rel)] = strings.TrimPrefix(d, "l ")
			}
		}
		for rel := range links {
			if linkEscapes(links, rel) {
				t.Fatalf("accepted the escaping link %s -> %s", rel, links[rel])
			}
		}
	})
}

func TestHugeWindowHelper(t *testing.T) {
	// The frame hugeWindow makes is valid zstd when the window is allowed,
	// so the rejection above is about the window and nothing else.
	raw := rawTar(t, good())
	zr, err := zstd.NewReader(bytes.NewReader(hugeWindow(raw, 20)))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("hugeWindow(raw, 20) does not decode to raw: %v", err)
	}
}
