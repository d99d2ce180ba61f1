package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func nodeboot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := Run(context.Background(), args, &out, &out)
	return out.String(), err
}

// assertNoImage checks that a failed build left nothing bootable behind.
func assertNoImage(t *testing.T, out string) {
	t.Helper()
	for _, f := range []string{"initramfs.cpio", "initramfs.cpio.zst", "manifest.json"} {
		if _, err := os.Stat(filepath.Join(out, f)); err == nil {
			t.Errorf("failed build left %s behind", f)
		}
	}
}

const helloJS = "require('http').createServer((q, s) => s.end('hi')).listen(process.env.PORT)\n"

// TestBadInput runs `nodeboot build` on each kind of bad input a user can
// give and checks that the error names what is wrong and what to do.
func TestBadInput(t *testing.T) {
	notKernel := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(notKernel, []byte("this is not a kernel\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	initramfsBuild := t.TempDir()
	if err := os.WriteFile(filepath.Join(initramfsBuild, "manifest.json"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	aFile := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(aFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		files map[string]string
		args  []string // extra flags
		out   string   // -o, default a temp dir
		want  []string // substrings of the error
	}{
		{
			name: "no package.json",
			want: []string{"no package.json", "npm init"},
		},
		{
			name:  "entry file missing",
			files: map[string]string{"package.json": `{"name":"a","main":"server.js"}`},
			want:  []string{"server.js"},
		},
		{
			name:  "unsupported scripts.start",
			files: map[string]string{"package.json": `{"name":"a","scripts":{"start":"nodemon app.js"}}`, "app.js": helloJS},
			want:  []string{"scripts.start", `"node app.js"`},
		},
		{
			name:  "unknown config key",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS, "nodeboot.json": `{"hostnam": "x"}`},
			want:  []string{"nodeboot.json", "hostnam", "unknown key", `"hostname"`},
		},
		{
			name:  "wrong config type",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS, "nodeboot.json": `{"apps":[{"name":"a","path":".","port":"80"}]}`},
			want:  []string{"apps[0].port", "expected"},
		},
		{
			name:  "kernel is not a kernel",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--kernel", notKernel},
			want:  []string{notKernel, "not an x86 Linux kernel"},
		},
		{
			name:  "output dir not writable",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			out:   filepath.Join(aFile, "out"),
			want:  []string{"output directory", filepath.Join(aFile, "out"), "-o"},
		},
		{
			name:  "output dir in a read-only file system",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			out:   "/proc/nodeboot-out",
			want:  []string{"output directory", "/proc/nodeboot-out"},
		},
		{
			name:  "disk image too small",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--format", "disk", "--size", "100M"},
			out:   filepath.Join(t.TempDir(), "a.img"),
			want:  []string{"too small", "--size"},
		},
		{
			name:  "disk image into a directory",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--format", "disk"},
			out:   t.TempDir(),
			want:  []string{"is a directory", "app.img"},
		},
		{
			name:  "--node is not node",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--node", "/bin/true"},
			want:  []string{"--node /bin/true is not node", "--version"},
		},
		{
			name:  "app on the management API's port",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS, "nodeboot.json": `{"apps":[{"path":".","port":9443}]}`},
			want:  []string{"apps[0].port", "management API"},
		},
		{
			name:  "inspector open to the network",
			files: map[string]string{"package.json": `{"name":"a","scripts":{"start":"node --inspect=0.0.0.0:9229 app.js"}}`, "app.js": helloJS},
			want:  []string{"--inspect=0.0.0.0:9229", "allowRemoteInspector"},
		},
		{
			name:  "unknown format",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--format", "floppy"},
			want:  []string{"floppy", "initramfs, disk, qcow2, vmdk, vhd or gce"},
		},
		{
			name:  "--arch mips",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--arch", "mips"},
			want:  []string{"--arch mips", "amd64 or arm64"},
		},
		{
			name:  "--target pi --arch amd64",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--target", "pi", "--arch", "amd64"},
			out:   filepath.Join(t.TempDir(), "pi.img"),
			want:  []string{"--target pi --arch amd64", "arm64", "drop --arch"},
		},
		{
			name:  "--target pi --format qcow2",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--target", "pi", "--format", "qcow2"},
			out:   filepath.Join(t.TempDir(), "pi.qcow2"),
			want:  []string{"--target pi --format qcow2", "--format disk"},
		},
		{
			name:  "--target rpi",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--target", "rpi"},
			out:   filepath.Join(t.TempDir(), "pi.img"),
			want:  []string{"--target rpi", "pi only"},
		},
		{
			name:  "--format vhd into an initramfs build",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--format", "vhd"},
			out:   initramfsBuild,
			want:  []string{"holds an initramfs build", "converted from a disk image", "app.vhd"},
		},
		{
			name:  "--format vhd of a size Azure refuses",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--format", "vhd", "--size", "1000000K"},
			out:   filepath.Join(t.TempDir(), "a.vhd"),
			want:  []string{"whole number of MiB", "--size 977M"},
		},
		{
			name:  "--format gce of a size GCE refuses",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--format", "gce", "--size", "1500M"},
			out:   filepath.Join(t.TempDir(), "a.tar.gz"),
			want:  []string{"whole number of GiB", "--size 2G"},
		},
		{
			name:  "--libraries apt",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--libraries", "apt"},
			want:  []string{`--libraries "apt"`, "host or debian"},
		},
		{
			name:  "--libraries host for another arch",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--libraries", "host", "--arch", "arm64"},
			want:  []string{"--libraries host", "no arm64 Linux libraries", "--libraries debian"},
		},
		{
			name:  "bad compression",
			files: map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS},
			args:  []string{"--compression", "lz4"},
			want:  []string{"lz4", "zstd, gzip or none"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, c.files)
			out := c.out
			if out == "" {
				out = filepath.Join(t.TempDir(), "out")
			}
			args := append([]string{"build", dir, "-o", out}, c.args...)
			log, err := nodeboot(t, args...)
			if err == nil {
				t.Fatalf("build succeeded; log:\n%s", log)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if out == initramfsBuild {
				// The build it refused to replace is as it was.
				if b, err := os.ReadFile(filepath.Join(out, "manifest.json")); err != nil || string(b) != "{}\n" {
					t.Errorf("the initramfs build was touched: %q, %v", b, err)
				}
				return
			}
			assertNoImage(t, out)
			if st, err := os.Stat(out); err == nil && !st.IsDir() {
				t.Errorf("failed build left %s behind", out)
			}
		})
	}
}

// TestEnginesUnsatisfiable asks the npm registry (as npm is configured) for
// a Node no release satisfies: a registry started here, which npm's
// configuration (the environment's npm_config_registry) points at, so the
// test needs no network.
func TestEnginesUnsatisfiable(t *testing.T) {
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/node-linux-") {
			http.NotFound(w, r)
			return
		}
		pkg := strings.TrimPrefix(r.URL.Path, "/")
		fmt.Fprintf(w, `{"name":%q,"versions":{"22.21.1":{"name":%[1]q,"version":"22.21.1","dist":{"tarball":"%s/x.tgz","integrity":"sha512-%s"}}}}`, pkg, "http://"+r.Host, base64.StdEncoding.EncodeToString(make([]byte, 64)))
	}))
	defer reg.Close()
	t.Setenv("npm_config_registry", reg.URL)
	t.Setenv("NPM_CONFIG_REGISTRY", reg.URL)
	dir := t.TempDir()
	write(t, dir, map[string]string{"package.json": `{"name":"a","main":"app.js","engines":{"node":">=999"}}`, "app.js": helloJS})
	out := filepath.Join(t.TempDir(), "out")
	_, err := nodeboot(t, "build", dir, "-o", out)
	if err == nil {
		t.Fatal("build with engines.node >=999 succeeded")
	}
	for _, w := range []string{">=999", "engines.node"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	assertNoImage(t, out)
}

// TestAddonMissingLibrary builds a native addon linked against a library,
// removes the library, and expects an error naming both.
func TestAddonMissingLibrary(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal("gcc is missing (make deps installs it)")
		}
		t.Skip("no gcc")
	}
	dir := t.TempDir()
	lib := t.TempDir()
	write(t, dir, map[string]string{"package.json": `{"name":"a","main":"app.js"}`, "app.js": helloJS})
	write(t, lib, map[string]string{"dep.c": "int nbdep(void) { return 1; }\n", "addon.c": "int nbdep(void);\nint addon(void) { return nbdep(); }\n"})
	addon := filepath.Join(dir, "node_modules", "thing", "build", "Release", "thing.node")
	if err := os.MkdirAll(filepath.Dir(addon), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-shared", "-fPIC", "-Wl,-soname,libnbdep.so.1", "-o", filepath.Join(lib, "libnbdep.so.1"), filepath.Join(lib, "dep.c")},
		{"-shared", "-fPIC", "-o", addon, filepath.Join(lib, "addon.c"), filepath.Join(lib, "libnbdep.so.1"), "-Wl,-rpath," + lib},
	} {
		if out, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc: %v\n%s", err, out)
		}
	}
	if err := os.Remove(filepath.Join(lib, "libnbdep.so.1")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	_, err := nodeboot(t, "build", dir, "-o", out)
	if err == nil {
		t.Fatal("build with a missing addon library succeeded")
	}
	for _, w := range []string{"libnbdep.so.1", "thing.node"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	assertNoImage(t, out)
}

func TestRunWithoutQEMU(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := nodeboot(t, "run", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "apt-get install qemu-system-x86") {
		t.Errorf("run without QEMU: %v; want the install command", err)
	}
}

func TestRunBusyPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = nodeboot(t, "run", t.TempDir(), "-p", strings.TrimPrefix(l.Addr().String(), "127.0.0.1:")+":8080")
	if err == nil || !strings.Contains(err.Error(), "busy") || !strings.Contains(err.Error(), "-p") {
		t.Errorf("run with busy port %d: %v", port, err)
	}
}

func TestRunBadPublish(t *testing.T) {
	for _, p := range []string{"8080", "a:b", "0:80", "80:70000"} {
		_, err := nodeboot(t, "run", t.TempDir(), "-p", p)
		if err == nil || !strings.Contains(err.Error(), "HOST:GUEST") {
			t.Errorf("-p %s: %v", p, err)
		}
	}
}

func TestRunBadBoot(t *testing.T) {
	_, err := nodeboot(t, "run", t.TempDir(), "--boot", "bios")
	if err == nil || !strings.Contains(err.Error(), "want uefi or direct") {
		t.Errorf("--boot bios: %v", err)
	}
	// A file that is not a disk image: direct boot names it and says why.
	img := filepath.Join(t.TempDir(), "junk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("no QEMU: run checks it first")
	}
	_, err = nodeboot(t, "run", img, "--boot", "direct")
	if err == nil || !strings.Contains(err.Error(), "--boot direct") || !strings.Contains(err.Error(), "junk.img") {
		t.Errorf("--boot direct of junk: %v", err)
	}
}

// TestRunCloudFormat: run boots initramfs and disk builds; a cloud format
// is for build, and a GCE archive must be unpacked first.
func TestRunCloudFormat(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("no QEMU: run checks it first")
	}
	_, err := nodeboot(t, "run", t.TempDir(), "--format", "vhd")
	if err == nil || !strings.Contains(err.Error(), "--format vhd is for nodeboot build") || !strings.Contains(err.Error(), "nodeboot run app.vhd") {
		t.Errorf("run --format vhd: %v", err)
	}
	gce := filepath.Join(t.TempDir(), "disk.tar.gz")
	if err := os.WriteFile(gce, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0}, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = nodeboot(t, "run", gce)
	if err == nil || !strings.Contains(err.Error(), "GCE archive") || !strings.Contains(err.Error(), "tar -xzf") {
		t.Errorf("run of a GCE archive: %v", err)
	}
}

func TestMemoryMiB(t *testing.T) {
	for in, want := range map[string]int{"128M": 128, "128": 128, "1G": 1024, "1.5G": 1536, "131072K": 128, "141m": 141} {
		if got, err := memoryMiB(in); err != nil || got != want {
			t.Errorf("memoryMiB(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1M", "lots"} {
		if _, err := memoryMiB(in); err == nil {
			t.Errorf("memoryMiB(%q) gave no error", in)
		}
	}
}

func TestVersionAndCompletion(t *testing.T) {
	out, err := nodeboot(t, "version")
	if err != nil || !strings.HasPrefix(out, "nodeboot ") {
		t.Errorf("version: %q %v", out, err)
	}
	out, err = nodeboot(t, "completion", "bash")
	if err != nil || !strings.Contains(out, "nodeboot") {
		t.Errorf("completion bash: %v", err)
	}
	out, err = nodeboot(t, "build", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, flag := range []string{"--output", "--node", "--kernel", "--config", "--compression"} {
		if !strings.Contains(out, flag) {
			t.Errorf("build --help lacks %s", flag)
		}
	}
}
