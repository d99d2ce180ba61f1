package kernelbuild

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestProfilesMerge(t *testing.T) {
	vm, err := ProfileConfig("vm")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := ProfileConfig("pc")
	if err != nil {
		t.Fatal(err)
	}
	want := func(c *Config, name, val string) {
		t.Helper()
		for _, o := range c.Options {
			if o.Name == name {
				if o.Value != val {
					t.Errorf("%s: %s=%s, want %s", c.Profile, name, o.Value, val)
				}
				return
			}
		}
		t.Errorf("%s: %s not requested", c.Profile, name)
	}
	// What the issue names, per profile.
	for _, c := range []*Config{vm, pc} {
		for _, n := range []string{"CONFIG_MEMCG", "CONFIG_CFS_BANDWIDTH", "CONFIG_CGROUP_PIDS", "CONFIG_SECCOMP_FILTER",
			"CONFIG_SECURITY_LANDLOCK", "CONFIG_SQUASHFS_ZSTD", "CONFIG_SQUASHFS_LZ4", "CONFIG_EXT4_FS", "CONFIG_VFAT_FS",
			"CONFIG_DEVTMPFS", "CONFIG_VIRTIO_BLK", "CONFIG_PVH", "CONFIG_EFI_STUB", "CONFIG_I6300ESB_WDT", "CONFIG_EFIVAR_FS"} {
			want(c, n, "y")
		}
		want(c, "CONFIG_MODULES", "n")
		want(c, "CONFIG_DEBUG_INFO", "n")
	}
	want(pc, "CONFIG_BLK_DEV_NVME", "y")
	want(pc, "CONFIG_R8169", "y")
	want(vm, "CONFIG_LOCALVERSION", `"-nodeboot-vm"`)
	want(pc, "CONFIG_LOCALVERSION", `"-nodeboot-pc"`)
	if vm.SHA256() == pc.SHA256() {
		t.Error("vm and pc have the same config hash")
	}
	if bytes.Contains(vm.Text, []byte("NVME")) {
		t.Error("the vm profile asks for NVMe")
	}
}

func TestUnknownProfile(t *testing.T) {
	_, err := ProfileConfig("arm")
	if !errors.Is(err, ErrUnknownProfile) || !strings.Contains(err.Error(), "pc, vm") {
		t.Fatalf("err = %v, want unknown profile naming pc, vm", err)
	}
	_, err = Build(context.Background(), Options{Profile: "tiny", CacheDir: t.TempDir()})
	if !errors.Is(err, ErrUnknownProfile) {
		t.Fatalf("Build: err = %v", err)
	}
}

func TestParseConfigRefusesBadLines(t *testing.T) {
	for _, in := range []string{"VIRTIO=y", "CONFIG_X", "CONFIG_X=", "CONFIG_X=n", "CONFIG_ X=y"} {
		if _, err := ParseConfig("f.config", []byte("# ok\n"+in+"\n")); err == nil || !strings.Contains(err.Error(), "f.config:2") {
			t.Errorf("%q: err = %v, want one naming f.config:2", in, err)
		}
	}
	opts, err := ParseConfig("f", []byte("# comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\n"))
	if err != nil || len(opts) != 3 || opts[1].Value != "n" || opts[2].Value != `"x y"` {
		t.Fatalf("opts = %+v, err %v", opts, err)
	}
}

func TestMergeConflict(t *testing.T) {
	_, err := Merge([]Fragment{{"a.config", []byte("CONFIG_X=y\n")}, {"b.config", []byte("# CONFIG_X is not set\n")}})
	if err == nil || !strings.Contains(err.Error(), "b.config:1") || !strings.Contains(err.Error(), "a.config:1") {
		t.Fatalf("err = %v", err)
	}
}

func TestDropped(t *testing.T) {
	c, err := Merge([]Fragment{{"vm.config", []byte("# virtio disks\nCONFIG_VIRTIO_BLK=y\nCONFIG_PCI=y\n# CONFIG_MODULES is not set\nCONFIG_LSM=\"landlock\"\n")}})
	if err != nil {
		t.Fatal(err)
	}
	// What olddefconfig writes when VIRTIO_BLK's dependency (BLK_DEV) is
	// off: the line is gone.
	final := "CONFIG_PCI=y\nCONFIG_MODULES=y\nCONFIG_LSM=\"landlock,yama\"\n"
	d, err := c.Dropped([]byte(final))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(d, "\n")
	for _, w := range []string{
		"CONFIG_VIRTIO_BLK=y (vm.config:2) is not set",
		"CONFIG_MODULES=not set (vm.config:4) is y",
		`CONFIG_LSM="landlock" (vm.config:5) is "landlock,yama"`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("Dropped = %q, want %q", got, w)
		}
	}
	if len(d) != 3 {
		t.Errorf("Dropped = %q, want 3", d)
	}
	if d, _ := c.Dropped([]byte("CONFIG_PCI=y\nCONFIG_VIRTIO_BLK=y\n# CONFIG_MODULES is not set\nCONFIG_LSM=\"landlock\"\n")); len(d) != 0 {
		t.Errorf("Dropped of a matching config = %q", d)
	}
}

func TestCheckTools(t *testing.T) {
	err := CheckTools(func(name string) (string, error) {
		if name == "flex" || name == "bison" {
			return "", exec.ErrNotFound
		}
		return "/usr/bin/" + name, nil
	})
	if err == nil || !strings.Contains(err.Error(), "flex, bison") || !strings.Contains(err.Error(), "apt-get install flex bison") {
		t.Fatalf("err = %v", err)
	}
}

func TestMissingSource(t *testing.T) {
	_, err := FindSource(t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "apt-get install linux-source") {
		t.Fatalf("err = %v, want one saying to install linux-source", err)
	}
}

func TestSourceNotFromPackage(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "linux-source-6.1.tar.xz"), nil, 0o644)
	defer swapDpkg(func(pkg string) (string, error) {
		return "", errors.New("dpkg-query: no packages found matching " + pkg)
	})()
	_, err := FindSource(dir)
	if err == nil || !strings.Contains(err.Error(), "not from an installed linux-source-6.1 package") {
		t.Fatalf("err = %v", err)
	}
}

func TestFindSourceNewest(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"6.1", "6.12", "6.9"} {
		os.WriteFile(filepath.Join(dir, "linux-source-"+v+".tar.xz"), nil, 0o644)
	}
	defer swapDpkg(func(pkg string) (string, error) { return pkg + "-1", nil })()
	s, err := FindSource(dir)
	if err != nil || s.Package != "linux-source-6.12" || s.Version != "linux-source-6.12-1" {
		t.Fatalf("FindSource = %+v, %v", s, err)
	}
}

func swapDpkg(f func(string) (string, error)) func() {
	old := dpkgVersion
	dpkgVersion = f
	return func() { dpkgVersion = old }
}

// fakeSource writes a real (tiny) linux-source tarball: the build unpacks
// it with tar as it would Debian's.
func fakeSource(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree", "linux-source-6.1")
	os.MkdirAll(tree, 0o755)
	os.WriteFile(filepath.Join(tree, "Makefile"), []byte("# kernel\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "COPYING"), []byte("GPL-2.0\n"), 0o644)
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	if out, err := exec.Command("tar", "-cJf", filepath.Join(src, "linux-source-6.1.tar.xz"), "-C", filepath.Join(dir, "tree"), "linux-source-6.1").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	return src
}

// fakeMake plays the kernel's make: allnoconfig writes the requested options
// (less drop), bzImage writes a kernel.
type fakeMake struct {
	calls []string
	drop  string
}

func (f *fakeMake) run(ctx context.Context, dir string, args []string, out io.Writer) error {
	var objDir, allconfig string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "O="); ok {
			objDir = v
		}
		if v, ok := strings.CutPrefix(a, "KCONFIG_ALLCONFIG="); ok {
			allconfig = v
		}
	}
	target := args[len(args)-1]
	f.calls = append(f.calls, target)
	if _, err := os.Stat(filepath.Join(dir, "Makefile")); err != nil {
		return err
	}
	switch target {
	case "allnoconfig":
		b, err := os.ReadFile(allconfig)
		if err != nil {
			return err
		}
		var final []string
		for _, l := range strings.Split(string(b), "\n") {
			if f.drop == "" || !strings.HasPrefix(l, f.drop+"=") {
				final = append(final, l)
			}
		}
		return os.WriteFile(filepath.Join(objDir, ".config"), []byte(strings.Join(final, "\n")), 0o644)
	case "olddefconfig":
		return nil
	case "bzImage":
		io.WriteString(out, "  CC      kernel/fork.o\n  CC      kernel/exit.o\n  LD      vmlinux\n")
		os.MkdirAll(filepath.Join(objDir, "arch/x86/boot"), 0o755)
		return os.WriteFile(filepath.Join(objDir, "arch/x86/boot/bzImage"), []byte("kernel"), 0o644)
	}
	return errors.New("unexpected target " + target)
}

func TestBuildCaches(t *testing.T) {
	defer swapDpkg(func(string) (string, error) { return "6.1.192-3", nil })()
	src, cache := fakeSource(t), t.TempDir()
	fm := &fakeMake{}
	var log, prog bytes.Buffer
	o := Options{Profile: "vm", CacheDir: cache, SrcDir: src, Jobs: 2, Log: &log, Progress: &prog, make: fm.run}
	r, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(fm.calls, " ") != "allnoconfig olddefconfig bzImage" {
		t.Errorf("make calls = %v", fm.calls)
	}
	if r.Cached || r.SourceVersion != "6.1.192-3" || r.SourcePackage != "linux-source-6.1" || len(r.ConfigSHA256) != 64 {
		t.Errorf("result = %+v", r)
	}
	if b, err := os.ReadFile(r.Path); err != nil || string(b) != "kernel" {
		t.Errorf("bzImage: %q, %v", b, err)
	}
	if b, err := os.ReadFile(r.License); err != nil || !strings.Contains(string(b), "GPL") {
		t.Errorf("license: %q, %v", b, err)
	}
	if !strings.Contains(filepath.Base(filepath.Dir(r.Path)), "6.1.192-3-vm-"+r.ConfigSHA256[:16]) {
		t.Errorf("cached at %s, want a dir named by version, profile and config hash", r.Path)
	}
	if !strings.Contains(prog.String(), "kernel vm: 3 steps") {
		t.Errorf("progress = %q", prog.String())
	}

	// Again: from the cache, make not run.
	fm.calls = nil
	r2, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !r2.Cached || len(fm.calls) != 0 || r2.Path != r.Path || r2.ConfigSHA256 != r.ConfigSHA256 {
		t.Errorf("second build: %+v, make %v", r2, fm.calls)
	}

	// A new source version is a new build, and the progress has a total.
	defer swapDpkg(func(string) (string, error) { return "6.1.192-4", nil })()
	prog.Reset()
	r3, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if r3.Cached || r3.Path == r.Path || len(fm.calls) != 3 {
		t.Errorf("new source version: %+v, make %v", r3, fm.calls)
	}
	if !strings.Contains(prog.String(), "100%") && !strings.Contains(prog.String(), "99%") {
		t.Errorf("progress with a known total = %q", prog.String())
	}
}

func TestBuildNamesDroppedOption(t *testing.T) {
	defer swapDpkg(func(string) (string, error) { return "6.1.192-3", nil })()
	fm := &fakeMake{drop: "CONFIG_CFS_BANDWIDTH"}
	_, err := Build(context.Background(), Options{Profile: "vm", CacheDir: t.TempDir(), SrcDir: fakeSource(t), make: fm.run})
	if err == nil || !strings.Contains(err.Error(), "CONFIG_CFS_BANDWIDTH=y (sandbox.config:") || !strings.Contains(err.Error(), "1 requested option") {
		t.Fatalf("err = %v, want one naming CONFIG_CFS_BANDWIDTH and its fragment", err)
	}
	if strings.Contains(strings.Join(fm.calls, " "), "bzImage") {
		t.Error("compiled a kernel whose config lost an option")
	}
}

// A failed build's step count is not a total: only a build that succeeded
// records it, and a count past the recorded total shows no percentage.
func TestProgressRecordsOnlySuccess(t *testing.T) {
	file := filepath.Join(t.TempDir(), "vm.steps")
	var out bytes.Buffer
	p := newProgress(&out, "vm", file)
	io.WriteString(p, "  CC      kernel/fork.o\n  CC      kernel/exit.o\n")
	p.done(false)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("a failed build recorded its steps: %v", err)
	}
	p.done(true)
	if b, err := os.ReadFile(file); err != nil || string(b) != "2" {
		t.Fatalf("recorded %q, %v", b, err)
	}
	out.Reset()
	p = newProgress(&out, "vm", file)
	io.WriteString(p, "  CC      a.o\n  CC      b.o\n  CC      c.o\n")
	p.done(true)
	if strings.Contains(out.String(), "%") || !strings.Contains(out.String(), "3 steps") {
		t.Fatalf("past the total: %q", out.String())
	}
}
