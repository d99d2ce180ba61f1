package elfdeps

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestResolveLdSoConf resolves an addon without RUNPATH against a temp
// root whose library dirs come from ld.so.conf.
func TestResolveLdSoConf(t *testing.T) {
	t.Parallel()
	// Contents: "@lib" is the built library, "@link:X" a symlink to X,
	// anything else a text file.
	const lib = "@lib"
	tests := []struct {
		name        string
		files       map[string]string
		extra       []string
		wantTarget  string
		wantPath    string // inside the root
		wantLibPath []string
	}{
		{
			name: "absolute include glob",
			files: map[string]string{
				"/etc/ld.so.conf":                 "# distro\ninclude /etc/ld.so.conf.d/*.conf\n",
				"/etc/ld.so.conf.d/10-nb.conf":    "# nb\n/opt/nb/lib/\n",
				"/etc/ld.so.conf.d/.hidden.conf":  "/opt/hidden\n",
				"/etc/ld.so.conf.d/README":        "/opt/readme\n",
				"/opt/hidden/libnbdep.so.1":       lib,
				"/opt/readme/libnbdep.so.1":       lib,
				"/opt/nb/lib/libnbdep.so.1":       lib,
				"/usr/lib64/libnbdep.so.1":        lib,
				"/etc/ld.so.conf.d/00-empty.conf": "\n\n",
			},
			wantTarget:  "/opt/nb/lib/libnbdep.so.1",
			wantPath:    "/opt/nb/lib/libnbdep.so.1",
			wantLibPath: []string{"/opt/nb/lib"},
		},
		{
			name: "relative include and absolute symlinks inside the root",
			files: map[string]string{
				"/etc/ld.so.conf":              "include ld.so.conf.d/*.conf",
				"/etc/ld.so.conf.d":            "@link:/etc/conf.real",
				"/etc/conf.real/nb.conf":       "/opt/nb/lib",
				"/opt/nb/lib/libnbdep.so.1":    "@link:/opt/nb/real/libnbdep.so.1.0",
				"/opt/nb/real/libnbdep.so.1.0": lib,
			},
			wantTarget:  "/opt/nb/lib/libnbdep.so.1",
			wantPath:    "/opt/nb/real/libnbdep.so.1.0",
			wantLibPath: []string{"/opt/nb/lib"},
		},
		{
			name: "conf order decides",
			files: map[string]string{
				"/etc/ld.so.conf":             "include /etc/ld.so.conf.d/*.conf\n/opt/c\n",
				"/etc/ld.so.conf.d/20-b.conf": "/opt/b\n",
				"/etc/ld.so.conf.d/10-a.conf": "/opt/a\n",
				"/opt/b/libnbdep.so.1":        lib,
				"/opt/a/libnbdep.so.1":        lib,
				"/opt/c/libnbdep.so.1":        lib,
			},
			wantTarget:  "/opt/a/libnbdep.so.1",
			wantPath:    "/opt/a/libnbdep.so.1",
			wantLibPath: []string{"/opt/a"},
		},
		{
			name: "include cycle, comments and type suffix",
			files: map[string]string{
				"/etc/ld.so.conf":           "include /etc/ld.so.conf # self\n  /opt/nb/lib=libc6  \nhwcap 0 nosegneg\nrelative/dir\n",
				"/opt/nb/lib/libnbdep.so.1": lib,
			},
			wantTarget:  "/opt/nb/lib/libnbdep.so.1",
			wantPath:    "/opt/nb/lib/libnbdep.so.1",
			wantLibPath: []string{"/opt/nb/lib"},
		},
		{
			name: "default dir listed in conf needs no LD_LIBRARY_PATH",
			files: map[string]string{
				"/etc/ld.so.conf":          "/opt/empty\n/usr/lib\n",
				"/usr/lib/libnbdep.so.1":   lib,
				"/usr/lib64/libnbdep.so.1": lib,
			},
			wantTarget: "/usr/lib/libnbdep.so.1",
			wantPath:   "/usr/lib/libnbdep.so.1",
		},
		{
			name: "no ld.so.conf falls back to default dirs",
			files: map[string]string{
				"/usr/lib/libnbdep.so.1":   lib,
				"/usr/lib64/libnbdep.so.1": lib,
			},
			wantTarget: "/usr/lib64/libnbdep.so.1",
			wantPath:   "/usr/lib64/libnbdep.so.1",
		},
		{
			name: "ExtraDirs before ld.so.conf",
			files: map[string]string{
				"/etc/ld.so.conf":            "/opt/nb/lib\n",
				"/opt/nb/lib/libnbdep.so.1":  lib,
				"/opt/extra/libnbdep.so.1":   lib,
				"/opt/extra2/libnbdep.so.1x": lib,
			},
			extra:       []string{"/opt/extra2", "/opt/extra/"},
			wantTarget:  "/opt/extra/libnbdep.so.1",
			wantPath:    "/opt/extra/libnbdep.so.1",
			wantLibPath: []string{"/opt/extra"},
		},
	}

	build := t.TempDir()
	built := filepath.Join(build, "libnbdep.so.1")
	addon := filepath.Join(build, "addon", "nbaddon.node")
	sharedLib(t, built, depSrc, "libnbdep.so.1", true)
	sharedLib(t, addon, addonSrc, "nbaddon.node", true, built)
	libBytes, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(built); err != nil { // only the root may satisfy it
		t.Fatal(err)
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := realPath(t, t.TempDir())
			for p, content := range tt.files {
				host := filepath.Join(root, p)
				if dest, ok := strings.CutPrefix(content, "@link:"); ok {
					if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.Symlink(dest, host); err != nil {
						t.Fatal(err)
					}
					continue
				}
				data := []byte(content)
				if content == lib {
					data = libBytes
				}
				writeFile(t, host, data)
			}

			c, err := Resolve([]string{addon}, Options{Root: root, ExtraDirs: tt.extra})
			if err != nil {
				t.Fatal(err)
			}
			want := File{
				Path:     filepath.Join(root, tt.wantPath),
				Target:   tt.wantTarget,
				Soname:   "libnbdep.so.1",
				NeededBy: addon,
			}
			if len(c.Files) != 1 || c.Files[0] != want {
				t.Errorf("Files = %+v, want [%+v]", c.Files, want)
			}
			if !slices.Equal(c.LibraryPath, tt.wantLibPath) {
				t.Errorf("LibraryPath = %q, want %q", c.LibraryPath, tt.wantLibPath)
			}
		})
	}
}

// TestResolveRpathInheritance checks the DT_RPATH/DT_RUNPATH difference:
// an executable's RPATH serves its dependencies' dependencies and its
// dlopen'ed addons, its RUNPATH does not.
func TestResolveRpathInheritance(t *testing.T) {
	t.Parallel()
	const (
		rpath   = "-Wl,--disable-new-dtags"
		runpath = "-Wl,--enable-new-dtags"
	)
	tests := []struct {
		name string
		// exeLinksA links the executable against liba.so (which needs
		// libnbdep.so); otherwise an addon needing libnbdep.so is resolved
		// after the executable.
		exeLinksA   bool
		exeDtags    string
		libaRunpath bool
		wantMissing string // NeededBy base name; "" means libnbdep.so is found
	}{
		{name: "exe RPATH serves liba's needs", exeLinksA: true, exeDtags: rpath},
		{name: "exe RUNPATH does not", exeLinksA: true, exeDtags: runpath, wantMissing: "liba.so"},
		{name: "RUNPATH on liba disables inherited RPATH", exeLinksA: true, exeDtags: rpath, libaRunpath: true, wantMissing: "liba.so"},
		{name: "exe RPATH serves addons", exeDtags: rpath},
		{name: "exe RUNPATH does not serve addons", exeDtags: runpath, wantMissing: "nbaddon.node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := realPath(t, t.TempDir())
			dep := filepath.Join(dir, "deps", "libnbdep.so")
			liba := filepath.Join(dir, "lib", "liba.so")
			exe := filepath.Join(dir, "nbexe")
			addon := filepath.Join(dir, "addon", "nbaddon.node")
			sharedLib(t, dep, depSrc, "libnbdep.so", true)
			libaArgs := []string{dep}
			if tt.libaRunpath {
				libaArgs = append(libaArgs, runpath, "-Wl,-rpath,$ORIGIN/nowhere")
			}
			sharedLib(t, liba, libaSrc, "liba.so", true, libaArgs...)

			exeArgs := []string{tt.exeDtags, "-Wl,-rpath,$ORIGIN/lib:$ORIGIN/deps", "-Wl,-rpath-link," + filepath.Dir(dep)}
			bins := []string{exe}
			if tt.exeLinksA {
				cc(t, exe, mainSrc, append(exeArgs, liba)...)
			} else {
				cc(t, exe, "int main(void) { return 0; }\n", exeArgs...)
				sharedLib(t, addon, addonSrc, "nbaddon.node", true, dep)
				bins = append(bins, addon)
			}

			c, err := Resolve(bins, Options{})
			if tt.wantMissing != "" {
				var miss *MissingLibraryError
				if !errors.As(err, &miss) {
					t.Fatalf("err = %v, want *MissingLibraryError", err)
				}
				if miss.Soname != "libnbdep.so" || filepath.Base(miss.NeededBy) != tt.wantMissing {
					t.Errorf("missing %s needed by %s, want libnbdep.so needed by %s", miss.Soname, miss.NeededBy, tt.wantMissing)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Interpreter == "" {
				t.Error("no interpreter for a dynamically linked executable")
			}
			if _, ok := findFile(c, c.Interpreter); !ok {
				t.Errorf("interpreter %s not in Files", c.Interpreter)
			}
			if f, ok := findFile(c, dep); !ok || f.Soname != "libnbdep.so" {
				t.Errorf("libnbdep.so not resolved to %s: %+v", dep, c.Files)
			}
			if tt.exeLinksA {
				if f, ok := findFile(c, liba); !ok || f.NeededBy != exe {
					t.Errorf("liba.so not resolved to %s needed by %s: %+v", liba, exe, c.Files)
				}
			}
			for _, f := range c.Files {
				if f.Path == exe || f.Path == addon {
					t.Errorf("binary %s in Files", f.Path)
				}
			}
			checkSortedUnique(t, c)
		})
	}
}

func TestResolveSharedDependencyListedOnce(t *testing.T) {
	t.Parallel()
	dir := realPath(t, t.TempDir())
	dep := filepath.Join(dir, "lib", "libnbdep.so")
	sharedLib(t, dep, depSrc, "libnbdep.so", true)
	var bins []string
	for _, name := range []string{"a.node", "b.node"} {
		p := filepath.Join(dir, name)
		sharedLib(t, p, addonSrc, name, true, dep, "-Wl,-rpath,$ORIGIN/lib")
		bins = append(bins, p)
	}
	// c.node asks for libnbdep.so.1, which at run time is a symlink to the
	// already loaded file: the loader opens it, sees the same file and
	// reuses it, so the image needs the name (a second Target) but not a
	// second copy of the bytes.
	linkTime := filepath.Join(t.TempDir(), "libnbdep.so.1")
	sharedLib(t, linkTime, depSrc, "libnbdep.so.1", true)
	link := filepath.Join(dir, "lib", "libnbdep.so.1")
	if err := os.Symlink("libnbdep.so", link); err != nil {
		t.Fatal(err)
	}
	c3 := filepath.Join(dir, "c.node")
	sharedLib(t, c3, addonSrc, "c.node", true, linkTime, "-Wl,-rpath,$ORIGIN/lib")
	bins = append(bins, c3)

	c, err := Resolve(bins, Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	want := []File{
		{Path: dep, Target: dep, Soname: "libnbdep.so", NeededBy: bins[0]},
		{Path: dep, Target: link, Soname: "libnbdep.so.1", NeededBy: c3},
	}
	if !slices.Equal(c.Files, want) {
		t.Errorf("Files = %+v, want %+v", c.Files, want)
	}
}

func TestResolveArchMismatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := filepath.Join(dir, "a.node")
	b := filepath.Join(dir, "b.node")
	sharedLib(t, a, depSrc, "a.node", true)
	data, _ := otherMachine(t, a)
	writeFile(t, b, data)
	_, err := Resolve([]string{a, b}, Options{Root: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), b) || !strings.Contains(err.Error(), "rebuild") {
		t.Errorf("err = %v, want an architecture mismatch naming %s", err, b)
	}
}

func TestResolveNotELF(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "node")
	writeFile(t, p, []byte("#!/bin/sh\nexec real-node \"$@\"\n"))
	_, err := Resolve([]string{p}, Options{})
	if !errors.Is(err, errNotELF) || !strings.Contains(err.Error(), p) {
		t.Errorf("err = %v, want not-ELF error naming %s", err, p)
	}
}

func FuzzArch(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x7fELF"))
	f.Add(elf32Header())
	f.Add([]byte("#!/bin/sh\n"))
	if self, err := os.Executable(); err == nil {
		if b, err := os.ReadFile(self); err == nil && len(b) > 64 {
			f.Add(b[:64])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if a, err := Arch(p); err == nil && a == "" {
			t.Error("empty arch without error")
		}
	})
}

// FuzzReadELF covers the hand-written PT_DYNAMIC walk, which, unlike the
// rest of the ELF parsing, is not the standard library's.
func FuzzReadELF(f *testing.F) {
	f.Add(elf32Header())
	if b, err := os.ReadFile("/bin/true"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "f")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _ = readELF(p)
	})
}
