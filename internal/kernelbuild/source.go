package kernelbuild

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Source is Debian's kernel source as the linux-source package installs it:
// one tarball in /usr/src.
type Source struct {
	Tarball string // /usr/src/linux-source-6.1.tar.xz
	Package string // linux-source-6.1
	Version string // the package version, 6.1.192-3
}

// installHint is what a machine without the source or the tools needs.
const installHint = "apt-get install linux-source build-essential flex bison bc libelf-dev zstd"

// FindSource locates the newest linux-source tarball under dir (/usr/src)
// and asks dpkg which package version installed it: a rebuild after
// `apt-get upgrade` picks up Debian's security fixes.
func FindSource(dir string) (*Source, error) {
	matches, _ := filepath.Glob(filepath.Join(dir, "linux-source-*.tar.xz"))
	if len(matches) == 0 {
		return nil, fmt.Errorf("no Linux source in %s (linux-source-*.tar.xz): nodeboot builds its kernel from Debian's kernel source; install it with `%s`, or use --kernel gokrazy", dir, installHint)
	}
	// linux-source-6.1 sorts before linux-source-6.12 by version, not by
	// string; compare the numbers.
	sort.Slice(matches, func(i, j int) bool { return versionLess(seriesOf(matches[i]), seriesOf(matches[j])) })
	tb := matches[len(matches)-1]
	pkg := "linux-source-" + seriesOf(tb)
	version, err := dpkgVersion(pkg)
	if errors.Is(err, exec.ErrNotFound) {
		return nil, fmt.Errorf("asking dpkg for the version of %s: %w (nodeboot kernel build needs a Debian-based host)", pkg, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s is not from an installed %s package (%v): install it with `apt-get install linux-source` so that its version is known", tb, pkg, err)
	}
	return &Source{Tarball: tb, Package: pkg, Version: version}, nil
}

// dpkgVersion asks dpkg for an installed package's version; tests replace it.
var dpkgVersion = func(pkg string) (string, error) {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		if msg := strings.TrimSpace(string(stderrOf(err))); msg != "" {
			return "", fmt.Errorf("%w: %s", err, msg)
		}
		return "", err
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return "", fmt.Errorf("dpkg knows %s but not as installed", pkg)
	}
	return v, nil
}

func stderrOf(err error) []byte {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.Stderr
	}
	return nil
}

// seriesOf returns "6.1" for /usr/src/linux-source-6.1.tar.xz.
func seriesOf(p string) string {
	return strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "linux-source-"), ".tar.xz")
}

func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		var x, y int
		fmt.Sscan(as[i], &x)
		fmt.Sscan(bs[i], &y)
		if x != y {
			return x < y
		}
	}
	return len(as) < len(bs)
}

// tool is a program (or header) the kernel build needs and the Debian
// package that provides it.
type tool struct{ name, pkg string }

var tools = []tool{
	{"make", "make"}, {"gcc", "gcc"}, {"ld", "binutils"}, {"flex", "flex"},
	{"bison", "bison"}, {"bc", "bc"}, {"perl", "perl"}, {"xz", "xz-utils"},
	{"zstd", "zstd"}, {"tar", "tar"},
	// objtool, which checks every object of an x86-64 kernel, links libelf.
	{"/usr/include/gelf.h", "libelf-dev"},
}

// CheckTools names every missing build tool with its package, so that one
// apt-get line fixes them all.
func CheckTools(lookPath func(string) (string, error)) error {
	var missing, pkgs []string
	for _, t := range tools {
		var err error
		if strings.HasPrefix(t.name, "/") {
			_, err = os.Stat(t.name)
		} else {
			_, err = lookPath(t.name)
		}
		if err != nil {
			missing = append(missing, t.name)
			pkgs = append(pkgs, t.pkg)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("building the kernel needs %s: install them with `apt-get install %s`", strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	return nil
}
