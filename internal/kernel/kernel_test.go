package kernel

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	modzip "golang.org/x/mod/zip"

	nodeboot "github.com/nodeboot/nodeboot"
	"github.com/nodeboot/nodeboot/internal/goproxy"
)

func TestDefaultKernel(t *testing.T) {
	k, err := Default("amd64")
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(k.Path, "amd64"); err != nil {
		t.Error(err)
	}
	if !strings.HasPrefix(k.Source, "module:github.com/gokrazy/kernel.amd64@") {
		t.Errorf("source %q", k.Source)
	}
	if k.Version == "" || !strings.Contains(k.Version, ".") {
		t.Errorf("kernel version %q not read from the bzImage header", k.Version)
	}
	// The same file passes as --kernel.
	if _, err := FromFile(k.Path, "amd64"); err != nil {
		t.Error(err)
	}
}

func TestCheckRejects(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "text")
	os.WriteFile(text, []byte("not a kernel"), 0o644)
	big := filepath.Join(dir, "zeros")
	os.WriteFile(big, make([]byte, 4096), 0o644)
	for _, c := range []struct{ path, arch, want string }{
		{text, "amd64", "not an x86 Linux kernel"},
		{big, "amd64", "not an x86 Linux kernel"},
		{big, "arm64", "not an arm64"},
		{filepath.Join(dir, "missing"), "amd64", "no such file"},
		{big, "riscv64", "unsupported architecture"},
	} {
		err := Check(c.path, c.arch)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Check(%s, %s) = %v, want %q", filepath.Base(c.path), c.arch, err, c.want)
		}
	}
	if _, err := Default("mips"); err == nil || !strings.Contains(err.Error(), "amd64 or arm64") {
		t.Errorf("Default(mips) = %v", err)
	}
	// The pinned arm64 kernel is an arm64 Image.
	if k, err := Default("arm64"); err != nil || Check(k.Path, "arm64") != nil || !strings.Contains(k.Source, "kernel.arm64") {
		t.Errorf("Default(arm64) = %+v, %v", k, err)
	}
}

func TestUEFIMinMemory(t *testing.T) {
	k, err := Default("amd64")
	if err != nil {
		t.Skip(err)
	}
	b, err := os.ReadFile(k.Path)
	if err != nil {
		t.Fatal(err)
	}
	// The pinned kernel: init_size 0x3670000 (54.4 MiB), measured to need
	// 141 MiB under OVMF and to fail at 140 MiB.
	if n := InitSize(b); n < 40<<20 || n > 200<<20 {
		t.Fatalf("init_size %#x: not a plausible kernel", n)
	}
	if got := UEFIMinMemoryMiB(b); InitSize(b) == 0x3670000 && got != 141 {
		t.Errorf("UEFIMinMemoryMiB = %d, want the measured 141", got)
	}
	if UEFIMinMemoryMiB([]byte("not a kernel")) != 0 || InitSize(make([]byte, 0x300)) != 0 {
		t.Error("a non-kernel got an estimate")
	}
}

func TestResolveNames(t *testing.T) {
	if _, err := Resolve(context.Background(), NameVM, "arm64", io.Discard); err == nil || !strings.Contains(err.Error(), "amd64 only") {
		t.Errorf("nodeboot-vm on arm64: err = %v", err)
	}
	k, err := Resolve(context.Background(), NameGokrazy, "amd64", io.Discard)
	if err != nil || !strings.HasPrefix(k.Source, "module:github.com/gokrazy/kernel.amd64@") || k.Built != nil {
		t.Errorf("gokrazy: %+v, %v", k, err)
	}
	// Anything else is a path, checked as one.
	if _, err := Resolve(context.Background(), "nodeboot-arm", "amd64", io.Discard); err == nil || !strings.Contains(err.Error(), "nodeboot-arm") {
		t.Errorf("unknown name: err = %v", err)
	}
}

// The default kernel comes without the go command, from the proxy GOPROXY
// names, and a damaged cached copy is fetched again rather than booted.
func TestDefaultWithoutGoRefetchesCorruptCache(t *testing.T) {
	real, err := Default("amd64")
	if err != nil {
		t.Skip(err)
	}
	mod, _ := ModulePath("amd64")
	m, _, err := goproxy.Pinned(nodeboot.GoMod, nodeboot.GoSum, mod)
	if err != nil {
		t.Fatal(err)
	}
	// A local proxy serving the module re-zipped from the verified copy:
	// the same content, so the same h1: hash.
	var z bytes.Buffer
	if err := modzip.CreateFromDir(&z, m, filepath.Dir(real.Path)); err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !strings.HasSuffix(r.URL.Path, ".zip") {
			http.NotFound(w, r)
			return
		}
		w.Write(z.Bytes())
	}))
	defer srv.Close()
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
	t.Setenv("GOPROXY", srv.URL)
	t.Setenv("GOPRIVATE", "")
	t.Setenv("GONOPROXY", "")
	t.Setenv("PATH", t.TempDir()) // no go command

	k, err := Default("amd64")
	if err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 {
		t.Fatalf("%d requests to the proxy, want 1", hits.Load())
	}
	os.Chmod(k.Path, 0o644)
	if err := os.Truncate(k.Path, 4096); err != nil {
		t.Fatal(err)
	}
	k2, err := Default("amd64")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(real.Path)
	b, _ := os.ReadFile(k2.Path)
	if hits.Load() != 2 || !bytes.Equal(a, b) {
		t.Errorf("a truncated cached kernel was not fetched again (%d requests, %d bytes)", hits.Load(), len(b))
	}
}

// TestArm64Version reads the release from an arm64 Image's banner (its
// header has no version field): in the first block, across the boundary
// of two read blocks, and not from a "Linux version " without a release.
func TestArm64Version(t *testing.T) {
	for name, at := range map[string]int{"early": 0x10000, "across blocks": 1<<20 - 20, "late": 3<<20 + 7} {
		img := make([]byte, 4<<20)
		binary.LittleEndian.PutUint32(img[0x38:], 0x644d5241)
		copy(img[0x1000:], "Linux version %s (%s@%s)\x00")
		copy(img[at:], "Linux version 6.12.47-v8 (builder@host) (gcc 12) #1 SMP PREEMPT\n\x00")
		p := filepath.Join(t.TempDir(), "Image")
		if err := os.WriteFile(p, img, 0o600); err != nil {
			t.Fatal(err)
		}
		if v := versionString(p); v != "6.12.47-v8" {
			t.Errorf("%s: version %q, want 6.12.47-v8", name, v)
		}
	}
}

// TestPiKernelVersion: the pinned Pi kernel's release reaches the build's
// manifest through Kernel.Version.
func TestPiKernelVersion(t *testing.T) {
	p, err := PiContext(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Kernel.Version; !strings.Contains(v, ".") || v[0] < '0' || v[0] > '9' {
		t.Errorf("Pi kernel version %q", v)
	}
	k, err := Default("arm64")
	if err != nil {
		t.Fatal(err)
	}
	if v := k.Version; !strings.Contains(v, ".") || v[0] < '0' || v[0] > '9' {
		t.Errorf("arm64 kernel version %q", v)
	}
}
