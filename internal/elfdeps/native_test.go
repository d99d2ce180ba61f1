package elfdeps

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// withMachine copies an ELF file and rewrites its e_machine, giving a real
// ELF shared object of another architecture without a cross compiler.
func withMachine(t *testing.T, src, dst string, machine uint16) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b[18], b[19] = byte(machine), byte(machine>>8) // little-endian x86-64 header
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeText(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSelectNative(t *testing.T) {
	dir := t.TempDir()
	nm := filepath.Join(dir, "node_modules")
	// A plain addon, as node-gyp builds it.
	sharedLib(t, filepath.Join(nm, "plain/build/Release/plain.node"), addonSrc, "plain.node", true)
	// A test fixture and a doc named *.node that are not ELF: not addons.
	writeText(t, filepath.Join(nm, "fixtures/test/data/broken.node"), "not an addon\n")
	writeText(t, filepath.Join(dir, "docs/example.node"), "# a markdown file\n")
	// node-gyp-build style prebuilds: the glibc x64 one is used, the arm64
	// and musl ones are never loaded here.
	multi := filepath.Join(nm, "@scope/multi/prebuilds")
	sharedLib(t, filepath.Join(multi, "linux-x64/multi.glibc.node"), addonSrc, "multi.node", true)
	withMachine(t, filepath.Join(multi, "linux-x64/multi.glibc.node"), filepath.Join(multi, "linux-arm64/multi.glibc.node"), 183) // EM_AARCH64
	freebsd, err := os.ReadFile(filepath.Join(multi, "linux-x64/multi.glibc.node"))
	if err != nil {
		t.Fatal(err)
	}
	freebsd[7] = 9 // EI_OSABI: FreeBSD, as argon2's freebsd-x64 prebuild
	writeText(t, filepath.Join(multi, "freebsd-x64/multi.glibc.node"), string(freebsd))
	musl := filepath.Join(dir, "musl")
	sharedLib(t, filepath.Join(musl, "libc.musl-x86_64.so.1"), "int x;\n", "libc.musl-x86_64.so.1", true)
	sharedLib(t, filepath.Join(multi, "linux-x64/multi.musl.node"), addonSrc, "multi.node", true, "-L"+musl, "-Wl,--no-as-needed", "-l:libc.musl-x86_64.so.1")
	// A package whose only addon is for another arch: an error.
	withMachine(t, filepath.Join(nm, "plain/build/Release/plain.node"), filepath.Join(nm, "armonly/build/Release/armonly.node"), 183)
	// A shared library shipped in node_modules (sharp's libvips), and a
	// library-named file that is a linker script (text).
	sharedLib(t, filepath.Join(nm, "@img/libvips/lib/libvips.so.42"), "int vips(void) { return 1; }\n", "libvips.so.42", true)
	writeText(t, filepath.Join(nm, "@img/libvips/lib/libvips.so"), "INPUT(libvips.so.42)\n")
	// A .so outside node_modules is the app's business, not checked.
	writeText(t, filepath.Join(dir, "lib/helper.so"), "text")

	var rels []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && !strings.HasPrefix(p, musl) {
			r, _ := filepath.Rel(dir, p)
			rels = append(rels, filepath.ToSlash(r))
		}
		return nil
	})
	use, skipped, err := SelectNative(dir, rels, "amd64")
	if err == nil || !strings.Contains(err.Error(), "package armonly ships native addons only for arm64, and the image is amd64") {
		t.Errorf("err = %v, want the arm64-only package refused by name", err)
	}
	got := map[string]string{}
	for _, n := range use {
		got[n.Rel] = n.Package
	}
	want := map[string]string{
		"node_modules/plain/build/Release/plain.node":                    "plain",
		"node_modules/@scope/multi/prebuilds/linux-x64/multi.glibc.node": "@scope/multi",
		"node_modules/@img/libvips/lib/libvips.so.42":                    "@img/libvips",
	}
	if len(got) != len(want) {
		t.Errorf("used %v, want %v", got, want)
	}
	for rel, pkg := range want {
		if got[rel] != pkg {
			t.Errorf("used[%s] = %q, want %q (all: %v)", rel, got[rel], pkg, got)
		}
	}
	why := map[string]string{}
	for _, s := range skipped {
		why[s.Rel] = s.Why
	}
	for rel, w := range map[string]string{
		"node_modules/fixtures/test/data/broken.node":                      "not an ELF file",
		"docs/example.node":                                                "not an ELF file",
		"node_modules/@scope/multi/prebuilds/linux-arm64/multi.glibc.node": "built for arm64",
		"node_modules/@scope/multi/prebuilds/linux-x64/multi.musl.node":    "built for amd64 musl",
		"node_modules/@scope/multi/prebuilds/freebsd-x64/multi.glibc.node": "built for amd64 freebsd",
		"node_modules/@img/libvips/lib/libvips.so":                         "not an ELF file",
	} {
		if !strings.Contains(why[rel], w) {
			t.Errorf("skipped[%s] = %q, want %q", rel, why[rel], w)
		}
	}
	if _, ok := why["lib/helper.so"]; ok {
		t.Errorf("a library outside node_modules was looked at")
	}
}

func TestPackageOf(t *testing.T) {
	for rel, want := range map[string]string{
		"node_modules/sharp/lib/index.js":                                  "sharp",
		"node_modules/@img/sharp-linux-x64/lib/sharp-linux-x64.node":       "@img/sharp-linux-x64",
		"node_modules/a/node_modules/@s/b/build/Release/b.node":            "@s/b",
		"node_modules/a/node_modules/c/x.node":                             "c",
		"lib/own.node":                                                     "",
		"node_modules/x.node":                                              "",
		"vendor/node_modules/argon2/prebuilds/linux-x64/argon2.glibc.node": "argon2",
	} {
		if got := PackageOf(rel); got != want {
			t.Errorf("PackageOf(%q) = %q, want %q", rel, got, want)
		}
	}
}
