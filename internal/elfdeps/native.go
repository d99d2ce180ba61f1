package elfdeps

import (
	"debug/elf"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Native is a prebuilt native file of an app that node on the target
// could load: a Node addon (*.node) or a shared library shipped inside
// node_modules (sharp's libvips, next to its addon and found through
// RUNPATH $ORIGIN, or one an addon dlopens).
type Native struct {
	Rel     string // slash-separated, relative to the app dir
	Package string // the npm package it belongs to ("" outside node_modules)
	Addon   bool   // a *.node file, as opposed to a library
}

// Skipped is a file named like a native one that node on the target never
// loads, with the reason.
type Skipped struct {
	Rel, Why string
}

// muslPrefix starts the soname of musl's libc: prebuilds for Alpine
// (node-gyp-build's *.musl.node) need it; node here uses glibc, and
// node-gyp-build picks the glibc prebuild there.
const muslPrefix = "libc.musl-"

// SelectNative picks, among an app's regular files (rels, slash-separated,
// relative to dir), the native files node on the target arch could load:
// every *.node and every shared library (*.so, *.so.N) under node_modules
// that is an ELF shared object of that arch linked against glibc. Files
// so named that are not ELF (test fixtures, docs, a macOS or Windows
// prebuild), ELF files of another arch and musl prebuilds are skipped: node
// never loads them. A package whose every ELF addon is for another system
// is an error: it cannot work on the target, and the fix is to install it
// for the target.
func SelectNative(dir string, rels []string, arch string) ([]Native, []Skipped, error) {
	var (
		use  []Native
		skip []Skipped
		// per package: usable addons, and the other systems its addons are for
		usable  = map[string]int{}
		foreign = map[string][]string{}
	)
	for _, rel := range rels {
		addon := strings.HasSuffix(rel, ".node")
		if !addon && !(inNodeModules(rel) && isSharedLibName(path.Base(rel))) {
			continue
		}
		pkg := PackageOf(rel)
		info, err := readELF(filepath.Join(dir, filepath.FromSlash(rel)))
		switch {
		case errors.Is(err, errNotELF):
			skip = append(skip, Skipped{rel, "not an ELF file, so not a native addon or library"})
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("reading native file %s of %s: %w", rel, packageName(pkg), err)
		}
		a, err := goarch(info.header)
		if err != nil {
			a = info.header.String()
		}
		var other string
		switch {
		case info.osabi != elf.ELFOSABI_NONE && info.osabi != elf.ELFOSABI_LINUX:
			// argon2 ships a FreeBSD x86-64 prebuild beside the Linux ones.
			other = a + " " + strings.ToLower(strings.TrimPrefix(info.osabi.String(), "ELFOSABI_"))
		case a != arch:
			other = a
		case slices.ContainsFunc(info.needed, func(n string) bool { return strings.HasPrefix(n, muslPrefix) }):
			other = a + " musl"
		case info.typ != elf.ET_DYN: // an executable or object file is never dlopen'ed
			skip = append(skip, Skipped{rel, "not a shared object"})
			continue
		}
		if other != "" {
			skip = append(skip, Skipped{rel, "built for " + other + ", never loaded by node on " + arch + " glibc"})
			if addon && !slices.Contains(foreign[pkg], other) {
				foreign[pkg] = append(foreign[pkg], other)
			}
			continue
		}
		if addon {
			usable[pkg]++
		}
		use = append(use, Native{Rel: rel, Package: pkg, Addon: addon})
	}
	var errs []error
	for pkg, others := range foreign {
		if usable[pkg] == 0 {
			errs = append(errs, fmt.Errorf("%s ships native addons only for %s, and the image is %s (glibc): install it for the target (npm install --os=linux --cpu=%s, or npm rebuild on such a machine)",
				packageName(pkg), strings.Join(others, ", "), arch, npmCPU(arch)))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return use, skip, errors.Join(errs...)
}

func npmCPU(arch string) string {
	if arch == "amd64" {
		return "x64"
	}
	return arch
}

func inNodeModules(rel string) bool {
	return strings.HasPrefix(rel, "node_modules/") || strings.Contains(rel, "/node_modules/")
}

// isSharedLibName matches lib.so and lib.so.1.2.3.
func isSharedLibName(name string) bool {
	i := strings.Index(name, ".so")
	if i <= 0 {
		return false
	}
	rest := name[i+len(".so"):]
	if rest == "" {
		return true
	}
	if rest[0] != '.' {
		return false
	}
	for _, c := range rest[1:] {
		if (c < '0' || c > '9') && c != '.' {
			return false
		}
	}
	return true
}

// PackageOf names the npm package a file of an app belongs to: the
// directory after the last node_modules/ of its path ("sharp",
// "@img/sharp-libvips-linux-x64"); "" for the app's own files.
func PackageOf(rel string) string {
	i := strings.LastIndex("/"+rel, "/node_modules/")
	if i < 0 {
		return ""
	}
	rest := ("/" + rel)[i+len("/node_modules/"):]
	parts := strings.SplitN(rest, "/", 3)
	if strings.HasPrefix(parts[0], "@") && len(parts) > 2 {
		return parts[0] + "/" + parts[1]
	}
	if len(parts) > 1 {
		return parts[0]
	}
	return ""
}

func packageName(pkg string) string {
	if pkg == "" {
		return "the app's own code"
	}
	return "package " + pkg
}

// InPackage words an error of a native file of an app so that it names the
// package and the file: "package sharp (node_modules/...): shared library
// libvips-cpp.so.42 needed by ... not found: ...". appDir is the app's
// directory on the build host; hostPath a file below it, else the error is
// returned as it is.
func InPackage(appDir, hostPath string, err error) error {
	rel, ok := RelIn(appDir, hostPath)
	if !ok {
		return err
	}
	return fmt.Errorf("%s (%s): %w", packageName(PackageOf(rel)), rel, err)
}

// RelIn returns p relative to dir (slash-separated) when p lies below dir,
// comparing symlink-resolved paths too. The build uses it for libraries
// the closure found inside an app dir (through $ORIGIN): they are the
// app's own files, which the loader finds there on the node as on the host.
func RelIn(dir, p string) (string, bool) {
	try := func(d, q string) (string, bool) {
		r, err := filepath.Rel(d, q)
		if err != nil || !filepath.IsLocal(r) {
			return "", false
		}
		return filepath.ToSlash(r), true
	}
	if r, ok := try(dir, p); ok {
		return r, true
	}
	rd, err1 := filepath.EvalSymlinks(dir)
	rp, err2 := filepath.EvalSymlinks(p)
	if err1 != nil || err2 != nil {
		return "", false
	}
	return try(rd, rp)
}
