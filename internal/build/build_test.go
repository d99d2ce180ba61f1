package build

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/elfdeps"
	"github.com/nodeboot/nodeboot/internal/image"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// TestReproducible builds examples/hello twice, into two directories, and
// expects byte-identical kernels, initramfs and manifests.
func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real image")
	}
	app, err := filepath.Abs("../../examples/hello")
	if err != nil {
		t.Fatal(err)
	}
	var outs [2]string
	for i := range outs {
		outs[i] = filepath.Join(t.TempDir(), "out")
		var log bytes.Buffer
		if _, err := Build(context.Background(), Options{AppDir: app, OutDir: outs[i], Compression: image.Zstd, Log: &log, Version: "test"}); err != nil {
			t.Fatalf("build %d: %v\n%s", i, err, log.String())
		}
	}
	for _, f := range []string{"vmlinuz", "initramfs.cpio.zst", "manifest.json"} {
		a, err := os.ReadFile(filepath.Join(outs[0], f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(outs[1], f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds of the same inputs", f)
		}
	}
	m, err := ReadManifest(outs[0])
	if err != nil {
		t.Fatal(err)
	}
	if m.Node.SHA256 == "" || m.Kernel.SHA256 == "" || m.Init.SHA256 == "" || len(m.Libraries) == 0 || len(m.Apps) != 1 {
		t.Errorf("manifest incomplete: %+v", m)
	}
	if m.Initramfs.Uncompressed <= m.Initramfs.Size {
		t.Errorf("sizes: compressed %d, uncompressed %d", m.Initramfs.Size, m.Initramfs.Uncompressed)
	}
}

func TestRelocateHidden(t *testing.T) {
	c := &elfdeps.Closure{
		Interpreter: "/lib64/ld-linux-x86-64.so.2",
		Files: []elfdeps.File{
			{Target: "/lib64/ld-linux-x86-64.so.2"},
			{Target: "/lib/x86_64-linux-gnu/libc.so.6"},
			{Target: "/tmp/build/lib/libfoo.so.1"},
			{Target: "/data/x/libbar.so"},
		},
	}
	relocateHidden(c)
	got := []string{}
	for _, f := range c.Files {
		got = append(got, f.Target)
	}
	want := "/lib64/ld-linux-x86-64.so.2 /lib/x86_64-linux-gnu/libc.so.6 /usr/lib/nodeboot/libfoo.so.1 /usr/lib/nodeboot/libbar.so"
	if strings.Join(got, " ") != want {
		t.Errorf("targets = %v", got)
	}
	if len(c.LibraryPath) != 1 || c.LibraryPath[0] != relocatedLibDir {
		t.Errorf("LibraryPath = %v", c.LibraryPath)
	}
}

func TestEtcFiles(t *testing.T) {
	rt := &spec.Runtime{Hostname: "box", Apps: []spec.RuntimeApp{
		{Name: "web", UID: 1000, GID: 1000, DataDir: "/data/state/web"},
		{Name: "api", UID: 1001, GID: 1001, DataDir: "/data/state/api"},
	}}
	etc := etcFiles(rt)
	for file, want := range map[string]string{
		"/etc/passwd":        "web:x:1000:1000:web:/data/state/web:/nonexistent\napi:x:1001:1001",
		"/etc/group":         "web:x:1000:\napi:x:1001:",
		"/etc/hosts":         "127.0.1.1\tbox\n",
		"/etc/nsswitch.conf": "hosts: files dns",
	} {
		if !strings.Contains(etc[file], want) {
			t.Errorf("%s = %q, want it to contain %q", file, etc[file], want)
		}
	}
}

func TestCmdline(t *testing.T) {
	if got := Cmdline(""); !strings.HasPrefix(got, "console=ttyS0") {
		t.Errorf("Cmdline() = %q", got)
	}
	if got := Cmdline("  quiet "); !strings.HasSuffix(got, " quiet") {
		t.Errorf("Cmdline(quiet) = %q", got)
	}
}

// TestWarnMemory: examples/hello (111 MiB unpacked) boots in run's default
// RAM and gets no warning; an image that will not gets one naming the
// --memory to use.
func TestWarnMemory(t *testing.T) {
	var b bytes.Buffer
	warnMemory(&b, 116635000)
	if b.Len() != 0 {
		t.Errorf("warned for hello: %s", b.String())
	}
	warnMemory(&b, 300<<20)
	if w := b.String(); !strings.Contains(w, "about 1050 MiB") || !strings.Contains(w, "--memory 1088M") || !strings.Contains(w, "512 MiB") {
		t.Errorf("warning: %q", w)
	}
}

// TestDiskLabelContract: spec recognises disk images by the ESP's GPT name
// that the disk writer gives it.
func TestDiskLabelContract(t *testing.T) {
	if spec.DiskESPLabel != disk.LabelESP {
		t.Errorf("spec.DiskESPLabel %q != disk.LabelESP %q", spec.DiskESPLabel, disk.LabelESP)
	}
}

// TestLeaveOutOutput: the -o path is dropped from an app's files wherever
// it lies in the app, even when nothing in it says it is nodeboot's.
func TestLeaveOutOutput(t *testing.T) {
	app := t.TempDir()
	proj := &spec.Project{Apps: []spec.App{{Name: "a", SrcDir: app, Entry: "server.js",
		Files:  []spec.File{{Rel: "dist"}, {Rel: "dist/img"}, {Rel: "dist/img/vmlinuz"}, {Rel: "dist/img2"}, {Rel: "server.js"}},
		Addons: []string{"dist/img/x.node"}}}}
	if err := leaveOutOutput(proj, filepath.Join(app, "dist", "img")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range proj.Apps[0].Files {
		got = append(got, f.Rel)
	}
	if strings.Join(got, " ") != "dist dist/img2 server.js" || len(proj.Apps[0].Addons) != 0 {
		t.Errorf("files %v, addons %v", got, proj.Apps[0].Addons)
	}
	// A directory that held only the output goes with it.
	proj.Apps[0].Files = []spec.File{{Rel: "out"}, {Rel: "out/disk.img"}, {Rel: "server.js"}}
	if err := leaveOutOutput(proj, filepath.Join(app, "out", "disk.img")); err != nil {
		t.Fatal(err)
	}
	if f := proj.Apps[0].Files; len(f) != 1 || f[0].Rel != "server.js" {
		t.Errorf("files %v", f)
	}
	for _, out := range []string{app, filepath.Dir(app)} {
		if err := leaveOutOutput(proj, out); err == nil || !strings.Contains(err.Error(), "holds the app directory") {
			t.Errorf("-o %s: %v", out, err)
		}
	}
}

// TestImageVersionCoversConfig: an image differing only in what the build
// generates from nodeboot.json (here update.healthySeconds, with the app
// in a directory of its own so its files do not change) has another image
// version, so an OS update can tell it from the running image.
func TestImageVersionCoversConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a real image")
	}
	proj := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proj, "web"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"package.json", "server.js"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "hello", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proj, "web", f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	versions := map[string]string{}
	for _, cfg := range []string{
		`{"apps": [{"path": "./web"}]}`,
		`{"apps": [{"path": "./web"}], "update": {"healthySeconds": 45}}`,
		`{"apps": [{"path": "./web"}]}`,
	} {
		if err := os.WriteFile(filepath.Join(proj, "nodeboot.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		out := filepath.Join(t.TempDir(), "out")
		res, err := Build(context.Background(), Options{AppDir: proj, OutDir: out, Compression: image.Zstd, Log: &log, Version: "test"})
		if err != nil {
			t.Fatalf("build: %v\n%s", err, log.String())
		}
		if v, ok := versions[res.Manifest.ImageVersion]; ok && v != cfg {
			t.Errorf("%s and %s build the same image version %s", v, cfg, res.Manifest.ImageVersion)
		}
		versions[res.Manifest.ImageVersion] = cfg
	}
	if len(versions) != 2 {
		t.Errorf("image versions %v: want one per configuration, the same for the same one", versions)
	}
}
