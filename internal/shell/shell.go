// Package shell is the opt-in shell of apps ("shell": true in nodeboot.json,
// issue 17): Debian's busybox-static, taken from the build host's package,
// installed in the image with its applets at /usr/bin/<name> (and /bin a
// link to usr/bin, as on Debian), and the preload script that tells an app
// without it, once, why exec() failed.
//
// The applets are symlinks to Dir/busybox. The sandbox covers Dir with an
// empty directory for every app without the opt-in (spec.SandboxSpec), so
// in its view /bin/sh dangles and spawning it fails with ENOENT, as on an
// image without any shell; an app with the opt-in sees busybox. One copy
// serves every app, and the seccomp and Landlock policies stay the same.
package shell

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
)

const (
	// Dir holds busybox in the image; hidden from apps without the opt-in.
	Dir = "/usr/lib/nodeboot/shell"
	// Busybox is the binary every applet links to.
	Busybox = Dir + "/busybox"
	// Preload is the script apps without a shell get through
	// NODE_OPTIONS=--require (noshell.js).
	Preload = "/usr/lib/nodeboot/noshell.js"
	// Package is the Debian package busybox comes from.
	Package = "busybox-static"
	// License is busybox's.
	License = "GPL-2.0-only"
)

// PreloadJS is the content of Preload.
//
//go:embed noshell.js
var PreloadJS []byte

// PreloadOption is what NODE_OPTIONS gets for an app without a shell.
const PreloadOption = "--require=" + Preload

// hostBusybox is where busybox-static installs it; a variable for tests.
var hostBusybox = "/bin/busybox"

// Box is the build host's busybox-static.
type Box struct {
	Path    string   // on the build host
	Version string   // the Debian package's version
	SHA256  string   // of the binary
	Applets []string // image paths of its applets, /usr/bin/<name>, sorted
}

// Find returns the build host's busybox-static for an image of arch. The
// package is the source (its version and the binary's hash go into the
// image's manifest); a busybox that is not static would need libraries the
// image may lack, and one of another arch would not run there.
func Find(arch string) (*Box, error) {
	const install = "install Debian's busybox-static on the build host (apt-get install busybox-static; make deps does it)"
	if arch != runtime.GOARCH {
		return nil, fmt.Errorf(`"shell": true takes busybox from the build host's %s package, which is for %s, and the image is %s: build this image on a %s host`, Package, runtime.GOARCH, arch, arch)
	}
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version} ${db:Status-Status}", Package).Output()
	if err != nil {
		return nil, fmt.Errorf(`"shell": true needs the %s package, which is not installed (dpkg-query: %v): %s`, Package, err, install)
	}
	version, status, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if status != "installed" || version == "" {
		return nil, fmt.Errorf(`"shell": true needs the %s package, which dpkg says is %q: %s`, Package, status, install)
	}
	f, err := elf.Open(hostBusybox)
	if err != nil {
		return nil, fmt.Errorf("reading %s of %s: %w: %s", hostBusybox, Package, err, install)
	}
	static := true
	for _, p := range f.Progs {
		static = static && p.Type != elf.PT_INTERP
	}
	f.Close()
	if !static {
		return nil, fmt.Errorf("%s is not statically linked, so not %s's: %s", hostBusybox, Package, install)
	}
	sum, err := hashFile(hostBusybox)
	if err != nil {
		return nil, err
	}
	// The applet list comes from the binary itself: what this build of
	// busybox has compiled in.
	list, err := exec.Command(hostBusybox, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("listing the applets of %s: %w", hostBusybox, err)
	}
	return &Box{Path: hostBusybox, Version: version, SHA256: sum, Applets: Applets(list)}, nil
}

// Applets turns busybox's --list-full ("usr/bin/tr", "sbin/ifconfig", ...)
// into the image paths of its links: every applet in /usr/bin, since the
// image has one bin dir (apps get PATH=/usr/bin, and /bin links to it).
// Names that are not plain file names are dropped.
func Applets(listFull []byte) []string {
	seen := map[string]bool{}
	var out []string
	for _, line := range bytes.Split(listFull, []byte("\n")) {
		name := path.Base(strings.TrimSpace(string(line)))
		if name == "" || name == "." || name == "/" || name == ".." || strings.ContainsAny(name, "\x00") || name == "node" || seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, "/usr/bin/"+name)
	}
	sort.Strings(out)
	return out
}

// LinkTarget is what each applet's symlink points at, relative so that it
// resolves inside the image wherever it is mounted.
const LinkTarget = "../lib/nodeboot/shell/busybox"

func hashFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hashing %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
