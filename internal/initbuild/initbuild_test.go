package initbuild

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// An embedded init is written out as it is, without the go command.
func TestBuildUsesEmbedded(t *testing.T) {
	old := embedded
	t.Cleanup(func() { embedded = old })
	want := []byte("\x7fELF the embedded init")
	embedded = fstest.MapFS{"embedded/nodeboot-init-arm64": {Data: want}}
	t.Setenv("PATH", t.TempDir()) // no go command
	dir := t.TempDir()
	p, err := Build("arm64", dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("wrote %q (%v), want the embedded bytes", got, err)
	}
	if fi, _ := os.Stat(p); fi.Mode()&0o111 == 0 {
		t.Errorf("mode %v: not executable", fi.Mode())
	}
	if !Embedded("arm64") || Embedded("amd64") || Origin("arm64") != "embedded in the CLI" {
		t.Error("Embedded/Origin disagree with what is embedded")
	}
	// No embedded amd64 init and no go command: the error says what to do.
	_, err = Build("amd64", dir)
	if err == nil || !strings.Contains(err.Error(), "npm install -D nodeboot") {
		t.Errorf("Build(amd64) without go = %v", err)
	}
}

// The Makefile's embedded init is the one compile would build: same flags,
// so an image's PID 1 does not depend on how the CLI was built.
func TestMakefileEmbedsCompiledInit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the init twice")
	}
	src, err := Source()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	compiled, err := compile("amd64", filepath.Join(dir, "compiled"))
	if err != nil {
		t.Fatal(err)
	}
	made := filepath.Join(dir, "made")
	cmd := exec.Command("make", "-s", "-C", src, "init-binaries", "INIT_ARCHES=amd64", "INIT_DIR="+dir+"/m")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make init-binaries: %v\n%s", err, out)
	}
	if err := os.Rename(filepath.Join(dir, "m", "nodeboot-init-amd64"), made); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(compiled)
	b, _ := os.ReadFile(made)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("the Makefile's init (%d bytes) differs from the one compiled on demand (%d bytes): align the build flags", len(b), len(a))
	}
}
