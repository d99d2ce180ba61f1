package kernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	if _, err := Default("arm64"); err == nil || !strings.Contains(err.Error(), "--kernel") {
		t.Errorf("Default(arm64) = %v", err)
	}
}
