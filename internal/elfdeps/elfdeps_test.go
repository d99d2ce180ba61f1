package elfdeps

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const (
	// getenv keeps a libc dependency under --as-needed when linked
	// normally, and stays an undefined symbol under -nostdlib.
	depSrc   = "char *getenv(const char *);\nint nbdep(void) { return getenv(\"NBDEP\") != 0; }\n"
	addonSrc = "int nbdep(void);\nint nbaddon(void) { return nbdep(); }\n"
	mainSrc  = "int nbmain(void);\nint main(void) { return nbmain() == 0; }\n"
	libaSrc  = "int nbdep(void);\nint nbmain(void) { return nbdep(); }\n"
)

func needGCC(t *testing.T) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found")
	}
	return gcc
}

// cc compiles src with gcc into out; args are extra gcc arguments placed
// after the source so that libraries given as files link in.
func cc(t *testing.T, out, src string, args ...string) {
	t.Helper()
	gcc := needGCC(t)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	srcFile := out + ".c"
	if err := os.WriteFile(srcFile, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(gcc, append([]string{"-o", out, srcFile}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc %v: %v\n%s", cmd.Args, err, b)
	}
	if err := os.Remove(srcFile); err != nil {
		t.Fatal(err)
	}
}

// sharedLib builds a shared object with the given soname. nostdlib keeps
// it free of a libc dependency so it resolves inside an empty test root.
func sharedLib(t *testing.T, out, src, soname string, nostdlib bool, args ...string) {
	t.Helper()
	a := []string{"-shared", "-fPIC", "-Wl,-soname," + soname}
	if nostdlib {
		a = append(a, "-nostdlib")
	}
	cc(t, out, src, append(a, args...)...)
}

func realPath(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func findFile(c *Closure, target string) (File, bool) {
	for _, f := range c.Files {
		if f.Target == target {
			return f, true
		}
	}
	return File{}, false
}

func checkSortedUnique(t *testing.T, c *Closure) {
	t.Helper()
	for i := 1; i < len(c.Files); i++ {
		if c.Files[i-1].Target >= c.Files[i].Target {
			t.Errorf("Files not sorted/unique by Target: %q before %q", c.Files[i-1].Target, c.Files[i].Target)
		}
	}
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// elf32Header is a minimal ELF32 i386 shared-object header: enough for the
// loader (and Arch) to classify the file without anything behind it.
func elf32Header() []byte {
	b := make([]byte, 52)
	copy(b, elf.ELFMAG)
	b[elf.EI_CLASS] = byte(elf.ELFCLASS32)
	b[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	b[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	binary.LittleEndian.PutUint16(b[16:], uint16(elf.ET_DYN))
	binary.LittleEndian.PutUint16(b[18:], uint16(elf.EM_386))
	binary.LittleEndian.PutUint32(b[20:], uint32(elf.EV_CURRENT))
	return b
}

// otherMachine returns a copy of an ELF file with e_machine changed to an
// architecture other than the host's, keeping everything else valid.
func otherMachine(t *testing.T, src string) ([]byte, string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	m, arch := elf.EM_AARCH64, "arm64"
	if runtime.GOARCH == "arm64" {
		m, arch = elf.EM_X86_64, "amd64"
	}
	binary.LittleEndian.PutUint16(b[18:], uint16(m))
	return b, arch
}

func TestArch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "elf32"), elf32Header())
	writeFile(t, filepath.Join(dir, "script"), []byte("#!/bin/sh\necho hi\n"))
	writeFile(t, filepath.Join(dir, "empty"), nil)
	writeFile(t, filepath.Join(dir, "magic-only"), []byte(elf.ELFMAG))

	fixed := func(name string) func(*testing.T) (string, string) {
		return func(*testing.T) (string, string) { return filepath.Join(dir, name), "" }
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T) (path, want string)
		want    string
		wantErr bool
	}{
		{name: "32-bit header", setup: fixed("elf32"), want: "386"},
		{name: "shell script", setup: fixed("script"), wantErr: true},
		{name: "empty file", setup: fixed("empty"), wantErr: true},
		{name: "truncated header", setup: fixed("magic-only"), wantErr: true},
		{name: "missing file", setup: fixed("nope"), wantErr: true},
		{
			name: "host-built library",
			setup: func(t *testing.T) (string, string) {
				p := filepath.Join(t.TempDir(), "libnbdep.so")
				sharedLib(t, p, depSrc, "libnbdep.so", true)
				return p, runtime.GOARCH
			},
		},
		{
			name: "library patched to another machine",
			setup: func(t *testing.T) (string, string) {
				p := filepath.Join(t.TempDir(), "libnbdep.so")
				sharedLib(t, p, depSrc, "libnbdep.so", true)
				b, arch := otherMachine(t, p)
				writeFile(t, p, b)
				return p, arch
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, want := tt.setup(t)
			if want == "" {
				want = tt.want
			}
			got, err := Arch(p)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Arch(%s) = %q, want error", p, got)
				}
				if !strings.Contains(err.Error(), p) {
					t.Errorf("error %q does not name the file %s", err, p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("Arch = %q, want %q", got, want)
			}
		})
	}
}

func TestResolveHostNode(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found")
	}
	if _, err := Arch(node); err != nil {
		t.Skipf("node is not an ELF binary (a wrapper script?): %v", err)
	}
	wantInterp := map[string]string{
		"amd64": "/lib64/ld-linux-x86-64.so.2",
		"arm64": "/lib/ld-linux-aarch64.so.1",
	}[runtime.GOARCH]
	if wantInterp == "" {
		t.Skipf("no expectations for %s", runtime.GOARCH)
	}

	c, err := Resolve([]string{node}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Interpreter != wantInterp {
		t.Errorf("Interpreter = %q, want %q", c.Interpreter, wantInterp)
	}
	interp, ok := findFile(c, wantInterp)
	if !ok {
		t.Fatalf("interpreter %s not in Files: %+v", wantInterp, c.Files)
	}
	if interp.Soname != "" {
		t.Errorf("interpreter Soname = %q, want empty", interp.Soname)
	}
	for _, soname := range []string{"libc.so.6", "libstdc++.so.6"} {
		if !slices.ContainsFunc(c.Files, func(f File) bool {
			return f.Soname == soname && filepath.Base(f.Target) == soname
		}) {
			t.Errorf("%s not in closure: %+v", soname, c.Files)
		}
	}
	nodeReal := realPath(t, node)
	for _, f := range c.Files {
		fi, err := os.Stat(f.Path)
		if err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: Path %s is not a regular file: %v", f.Target, f.Path, err)
		}
		if f.Path == nodeReal {
			t.Errorf("node itself is in Files as %s", f.Target)
		}
		// node lists the loader in DT_NEEDED; it must match the interpreter
		// by soname instead of adding a second copy.
		if f.Path == interp.Path && f.Target != wantInterp {
			t.Errorf("interpreter copied again as %s", f.Target)
		}
	}
	checkSortedUnique(t, c)
}

// TestResolveAddonOrigin builds an addon the way node-gyp does, with its
// vendored library next to it, and resolves against the real host root.
func TestResolveAddonOrigin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		rpath string
		dtags string
	}{
		{name: "RUNPATH $ORIGIN", rpath: "$ORIGIN/lib", dtags: "--enable-new-dtags"},
		{name: "RUNPATH ${ORIGIN}", rpath: "${ORIGIN}/lib", dtags: "--enable-new-dtags"},
		{name: "RPATH $ORIGIN", rpath: "$ORIGIN/lib", dtags: "--disable-new-dtags"},
		{name: "RUNPATH with missing dir first", rpath: "$ORIGIN/nowhere:$ORIGIN/../build/lib", dtags: "--enable-new-dtags"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(realPath(t, t.TempDir()), "build")
			lib := filepath.Join(dir, "lib", "libnbdep.so")
			addon := filepath.Join(dir, "nbaddon.node")
			sharedLib(t, lib, depSrc, "libnbdep.so", false)
			sharedLib(t, addon, addonSrc, "nbaddon.node", false,
				"-L"+filepath.Dir(lib), "-lnbdep", "-Wl,"+tt.dtags, "-Wl,-rpath,"+tt.rpath)

			c, err := Resolve([]string{addon}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			want := File{Path: lib, Target: lib, Soname: "libnbdep.so", NeededBy: addon}
			if got, _ := findFile(c, lib); got != want {
				t.Errorf("libnbdep: got %+v, want %+v (closure %+v)", got, want, c.Files)
			}
			if !slices.ContainsFunc(c.Files, func(f File) bool { return f.Soname == "libc.so.6" }) {
				t.Errorf("libc.so.6 missing from %+v", c.Files)
			}
			if _, ok := findFile(c, addon); ok {
				t.Errorf("the addon itself is in Files")
			}
			if c.Interpreter != "" {
				t.Errorf("Interpreter = %q for an addon-only closure", c.Interpreter)
			}
			checkSortedUnique(t, c)

			if err := os.Remove(lib); err != nil {
				t.Fatal(err)
			}
			_, err = Resolve([]string{addon}, Options{})
			var miss *MissingLibraryError
			if !errors.As(err, &miss) {
				t.Fatalf("after removing libnbdep.so: err = %v, want *MissingLibraryError", err)
			}
			if miss.Soname != "libnbdep.so" || miss.NeededBy != addon {
				t.Errorf("MissingLibraryError = %+v", miss)
			}
			for _, s := range []string{"libnbdep.so", addon, "$ORIGIN"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if !slices.Contains(miss.Searched, filepath.Dir(lib)) {
				t.Errorf("Searched %q lacks %s", miss.Searched, filepath.Dir(lib))
			}
		})
	}
}

// TestResolveSkipsUnusable puts a decoy with the right name earlier in the
// RUNPATH than the real library.
func TestResolveSkipsUnusable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		decoy  func(t *testing.T, p, real string)
		reason string
	}{
		{
			name:   "32-bit ELF",
			decoy:  func(t *testing.T, p, _ string) { writeFile(t, p, elf32Header()) },
			reason: "386",
		},
		{
			name: "other machine",
			decoy: func(t *testing.T, p, real string) {
				b, _ := otherMachine(t, real)
				writeFile(t, p, b)
			},
			reason: "built for",
		},
		{
			name:   "linker script",
			decoy:  func(t *testing.T, p, _ string) { writeFile(t, p, []byte("INPUT(libnbdep.so.1)\n")) },
			reason: "not an ELF file",
		},
		{
			name: "executable",
			decoy: func(t *testing.T, p, real string) {
				b, err := os.ReadFile(real)
				if err != nil {
					t.Fatal(err)
				}
				binary.LittleEndian.PutUint16(b[16:], uint16(elf.ET_EXEC))
				writeFile(t, p, b)
			},
			reason: "ET_EXEC",
		},
		{
			name: "directory",
			decoy: func(t *testing.T, p, _ string) {
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
			},
			reason: "not a regular file",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := realPath(t, t.TempDir())
			lib := filepath.Join(dir, "lib", "libnbdep.so")
			decoy := filepath.Join(dir, "decoy", "libnbdep.so")
			addon := filepath.Join(dir, "nbaddon.node")
			sharedLib(t, lib, depSrc, "libnbdep.so", true)
			sharedLib(t, addon, addonSrc, "nbaddon.node", true,
				"-L"+filepath.Dir(lib), "-lnbdep", "-Wl,-rpath,$ORIGIN/decoy:$ORIGIN/lib")
			tt.decoy(t, decoy, lib)

			opts := Options{Root: t.TempDir()} // empty: only $ORIGIN can satisfy it
			c, err := Resolve([]string{addon}, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Files) != 1 || c.Files[0].Target != lib || c.Files[0].Path != lib {
				t.Fatalf("Files = %+v, want only %s", c.Files, lib)
			}

			if err := os.Remove(lib); err != nil {
				t.Fatal(err)
			}
			_, err = Resolve([]string{addon}, opts)
			var miss *MissingLibraryError
			if !errors.As(err, &miss) {
				t.Fatalf("err = %v, want *MissingLibraryError", err)
			}
			if len(miss.Rejected) != 1 || !strings.Contains(miss.Rejected[0], decoy) || !strings.Contains(miss.Rejected[0], tt.reason) {
				t.Errorf("Rejected = %q, want the decoy %s with %q", miss.Rejected, decoy, tt.reason)
			}
		})
	}
}
