package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/spec"
)

// gccBuild compiles src into out with gcc (make deps installs it).
func gccBuild(t *testing.T, out, src string, args ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	c := out + ".c"
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(c)
	if b, err := exec.Command("gcc", append([]string{"-o", out, c}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, b)
	}
}

// sharpLike lays out an app the way sharp's prebuilt packages are: the
// addon in one package, the library it needs in another, reached through
// RUNPATH $ORIGIN/../../<package>/lib; plus a test fixture named *.node
// that is not ELF.
func sharpLike(t *testing.T) (app *spec.App, node string) {
	t.Helper()
	dir := t.TempDir()
	node = filepath.Join(dir, "bin", "node")
	gccBuild(t, node, "int main(void) { return 0; }\n")
	src := filepath.Join(dir, "app")
	vips := filepath.Join(src, "node_modules/@img/sharp-libvips-linux-x64/lib")
	gccBuild(t, filepath.Join(vips, "libvips-cpp.so.42"), "int vips_init(void) { return 0; }\n",
		"-shared", "-fPIC", "-Wl,-soname,libvips-cpp.so.42")
	gccBuild(t, filepath.Join(src, "node_modules/@img/sharp-linux-x64/lib/sharp-linux-x64.node"),
		"int vips_init(void);\nint napi_register(void) { return vips_init(); }\n",
		"-shared", "-fPIC", "-L"+vips, "-l:libvips-cpp.so.42", `-Wl,-rpath,$ORIGIN/../../sharp-libvips-linux-x64/lib`)
	fixture := filepath.Join(src, "node_modules/some-lib/test/fixtures/not-an-addon.node")
	if err := os.MkdirAll(filepath.Dir(fixture), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fixture, []byte("fixture\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "index.js"), []byte("require('sharp')\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	files, addons, err := spec.ListFiles(src)
	if err != nil {
		t.Fatal(err)
	}
	return &spec.App{Name: "img", SrcDir: src, Entry: "index.js", Files: files, Addons: addons}, node
}

func TestNativeClosure(t *testing.T) {
	app, node := sharpLike(t)
	proj := &spec.Project{Apps: []spec.App{*app}}
	var log strings.Builder
	logf := func(f string, a ...any) { log.WriteString(strings.TrimSpace(strings.ReplaceAll(f, "%", "")) + "\n") }
	c, err := nativeClosure(proj, node, "amd64", "", logf)
	if err != nil {
		t.Fatalf("nativeClosure: %v", err)
	}
	var libc bool
	for _, f := range c.Files {
		if strings.Contains(f.Target, "node_modules") {
			t.Errorf("the app's own library %s is placed outside the app: %+v", f.Target, f)
		}
		libc = libc || strings.HasPrefix(filepath.Base(f.Target), "libc.so")
	}
	if !libc {
		t.Errorf("closure lacks libc: %+v", c.Files)
	}
	if !strings.Contains(log.String(), "left as plain files") {
		t.Errorf("the skipped fixture is not mentioned: %s", log.String())
	}

	t.Run("missing library", func(t *testing.T) {
		app, node := sharpLike(t)
		if err := os.Remove(filepath.Join(app.SrcDir, "node_modules/@img/sharp-libvips-linux-x64/lib/libvips-cpp.so.42")); err != nil {
			t.Fatal(err)
		}
		files, addons, err := spec.ListFiles(app.SrcDir)
		if err != nil {
			t.Fatal(err)
		}
		app.Files, app.Addons = files, addons
		_, err = nativeClosure(&spec.Project{Apps: []spec.App{*app}}, node, "amd64", "", func(string, ...any) {})
		for _, want := range []string{"app img: package @img/sharp-linux-x64 (node_modules/@img/sharp-linux-x64/lib/sharp-linux-x64.node)", "shared library libvips-cpp.so.42", "not found"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v, want %q", err, want)
			}
		}
	})
	t.Run("library left out of the image", func(t *testing.T) {
		app, node := sharpLike(t)
		var kept []spec.File
		for _, f := range app.Files {
			if !strings.HasSuffix(f.Rel, "libvips-cpp.so.42") {
				kept = append(kept, f)
			}
		}
		app.Files = kept
		_, err := nativeClosure(&spec.Project{Apps: []spec.App{*app}}, node, "amd64", "", func(string, ...any) {})
		if err == nil || !strings.Contains(err.Error(), "leaves out of the image") || !strings.Contains(err.Error(), "libvips-cpp.so.42") {
			t.Errorf("err = %v, want the ignored library named", err)
		}
	})
}

// TestX86AddonInArm64Build: an app whose only addon is an x86-64 build,
// in an arm64 image, is refused naming the package and how to install
// its arm64 prebuild.
func TestX86AddonInArm64Build(t *testing.T) {
	app, node := sharpLike(t)
	_, err := nativeClosure(&spec.Project{Apps: []spec.App{*app}}, node, "arm64", "", func(string, ...any) {})
	if err == nil || !strings.Contains(err.Error(), "@img/sharp-linux-x64") || !strings.Contains(err.Error(), "npm install --os=linux --cpu=arm64") {
		t.Errorf("err = %v", err)
	}
}
