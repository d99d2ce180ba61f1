package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/initbuild"
	"github.com/nodeboot/nodeboot/internal/spec"
)

// helloApp copies examples/hello into a temp dir and makes the init build
// find nodeboot's source from anywhere (tests may chdir into the app).
func helloApp(t *testing.T) string {
	t.Helper()
	src, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	old := initbuild.SourceDir
	initbuild.SourceDir = src
	t.Cleanup(func() { initbuild.SourceDir = old })
	dir := t.TempDir()
	for _, f := range []string{"package.json", "server.js"} {
		b, err := os.ReadFile(filepath.Join(src, "examples", "hello", f))
		if err != nil {
			t.Fatal(err)
		}
		write(t, dir, map[string]string{f: string(b)})
	}
	return dir
}

// TestBuildInAppDirStaysFlat is the path a user takes: `cd app && nodeboot
// build`, three times. The default -o out lies inside the app, and each
// build packed the previous image into the next (111 → 238 → 365 MiB).
func TestBuildInAppDirStaysFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds real images")
	}
	app := helloApp(t)
	t.Chdir(app)
	var sizes []int64
	var apps []build.AppInfo
	for i := 0; i < 3; i++ {
		code, stdout, stderr := runCLI(context.Background(), "build")
		if code != ExitOK {
			t.Fatalf("build %d: exit %d\n%s", i, code, stderr)
		}
		if !strings.Contains(stdout, "built out/initramfs.cpio") {
			t.Errorf("stdout: %q", stdout)
		}
		st, err := os.Stat(filepath.Join(app, "out", "initramfs.cpio"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := build.ReadManifest(filepath.Join(app, "out"))
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, st.Size())
		apps = append(apps, m.Apps[0])
	}
	// The app is the same three times. The image may differ by the init,
	// which is built from the source tree and may change in between; a
	// packed previous image would add its 111 MiB.
	if apps[0] != apps[1] || apps[1] != apps[2] || sizes[2]-sizes[0] > 1<<20 || sizes[0]-sizes[2] > 1<<20 {
		t.Errorf("initramfs sizes %v, apps %+v: the output went into the next image", sizes, apps)
	}
	ents, _ := os.ReadDir(app)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), spec.TempPrefix) {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

// TestBuildRefusesOutputs: -o onto a device replaced the device node with a
// file; an output holding the app would be replaced with the app in it.
func TestBuildRefusesOutputs(t *testing.T) {
	app := helloApp(t)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"initramfs onto a device", []string{"build", app, "-o", "/dev/null"}, []string{"/dev/null is a device", "nodeboot write app.img /dev/null"}},
		{"disk onto a device", []string{"build", app, "--format", "disk", "-o", "/dev/null"}, []string{"/dev/null is a device", "nodeboot write"}},
		{"the app dir itself", []string{"build", app, "-o", app}, []string{"holds the app directory", "-o " + filepath.Join(app, "out")}},
		{"a parent of the app", []string{"build", app, "-o", filepath.Dir(app)}, []string{"holds the app directory"}},
		{"a file", []string{"build", app, "-o", filepath.Join(app, "server.js")}, []string{"is a file", "choose a directory"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(context.Background(), tc.args...)
			if code != ExitFailure {
				t.Errorf("exit %d, want %d", code, ExitFailure)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
		})
	}
	if st, err := os.Stat("/dev/null"); err != nil || st.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("/dev/null is no longer a device: %v %v", st.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(app, "server.js")); err != nil {
		t.Errorf("the app lost a file: %v", err)
	}
}

// cancelOn cancels when a line containing marker is written.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	marker string
	cancel context.CancelFunc
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if strings.Contains(c.buf.String(), c.marker) {
		c.cancel()
	}
	return len(p), nil
}

// TestBuildInterrupted: Ctrl-C during a build leaked its temporary files
// (0.3–2 GiB) and could leave a new kernel beside an old initramfs. Now it
// exits 130, removes its work and leaves the previous output whole.
func TestBuildInterrupted(t *testing.T) {
	if testing.Short() {
		t.Skip("builds real images")
	}
	app := helloApp(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	out := filepath.Join(app, "out")
	if code, _, stderr := runCLI(context.Background(), "build", app, "-o", out); code != ExitOK {
		t.Fatalf("first build: %s", stderr)
	}
	before, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
	// A change, so that the interrupted build would write something new.
	write(t, app, map[string]string{"extra.js": "// new\n"})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errw := &cancelOn{marker: "shared libraries", cancel: cancel}
	code := Execute(ctx, []string{"build", app, "-o", out}, io.Discard, errw)
	if code != ExitInterrupted {
		t.Fatalf("exit %d, want %d\n%s", code, ExitInterrupted, errw.buf.String())
	}
	after, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
	if !bytes.Equal(before, after) {
		t.Error("the previous output changed")
	}
	for _, dir := range []string{tmp, app} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if dir == tmp || strings.HasPrefix(e.Name(), spec.TempPrefix) {
				t.Errorf("left behind in %s: %s", dir, e.Name())
			}
		}
	}
}

// TestBuildRefusesFourGiBFile: a file newc cannot record is named before
// anything is written.
func TestBuildRefusesFourGiBFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds real images")
	}
	app := helloApp(t)
	f, err := os.Create(filepath.Join(app, "model.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(4 << 30); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()
	out := filepath.Join(t.TempDir(), "out")
	code, _, stderr := runCLI(context.Background(), "build", app, "-o", out)
	if code != ExitFailure || !strings.Contains(stderr, "model.bin") || !strings.Contains(stderr, "4 GiB") || !strings.Contains(stderr, ".nodebootignore") {
		t.Errorf("exit %d: %s", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("an output was written")
	}
}

// TestRunMemoryDefault: the build's RAM warning speaks of run's default.
func TestRunMemoryDefault(t *testing.T) {
	f := newRun(io.Discard, io.Discard).Flags().Lookup("memory")
	if f == nil {
		t.Fatal("run has no --memory")
	}
	if mib, err := memoryMiB(f.DefValue); err != nil || mib != build.DefaultMemoryMiB {
		t.Errorf("run --memory defaults to %s, build.DefaultMemoryMiB is %d", f.DefValue, build.DefaultMemoryMiB)
	}
}

// TestBuildCtrlC is the user's path: the real binary, a real SIGINT in the
// middle of `nodeboot build`. It must exit 130 and leave no temporary files
// (they were 0.3–2 GiB each time) and the previous output as it was.
func TestBuildCtrlC(t *testing.T) {
	if testing.Short() {
		t.Skip("builds real images")
	}
	app := helloApp(t)
	root := initbuild.SourceDir
	bin := filepath.Join(t.TempDir(), "nodeboot")
	gob := exec.Command("go", "build", "-ldflags", "-X github.com/nodeboot/nodeboot/internal/initbuild.SourceDir="+root, "-o", bin, "./cmd/nodeboot")
	gob.Dir = root
	if out, err := gob.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tmp := t.TempDir()
	nb := func() *exec.Cmd {
		c := exec.Command(bin, "build")
		c.Dir = app
		c.Env = append(os.Environ(), "TMPDIR="+tmp)
		return c
	}
	if out, err := nb().CombinedOutput(); err != nil {
		t.Fatalf("first build: %v\n%s", err, out)
	}
	before, _ := os.ReadFile(filepath.Join(app, "out", "manifest.json"))
	write(t, app, map[string]string{"extra.js": "// a change\n"})

	c := nb()
	stderr, err := c.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "shared libraries") {
			c.Process.Signal(os.Interrupt)
		}
	}
	err = c.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted {
		t.Fatalf("exit: %v, want status %d\n%s", err, ExitInterrupted, log.String())
	}
	if !strings.Contains(log.String(), "interrupted") {
		t.Errorf("stderr does not say interrupted:\n%s", log.String())
	}
	after, _ := os.ReadFile(filepath.Join(app, "out", "manifest.json"))
	if len(before) == 0 || !bytes.Equal(before, after) {
		t.Error("the previous output changed")
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("left behind in TMPDIR: %v", ents)
	}
	ents, _ := os.ReadDir(app)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), spec.TempPrefix) {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}
