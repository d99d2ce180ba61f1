// Package initbuild provides cmd/nodeboot-init, the image's PID 1, for the
// target architecture: the binary embedded in the CLI by `make` (so a user
// needs no Go toolchain and no source), or else compiled from source with the
// go command (go test, go install, go run), which keeps tests on the current
// source.
package initbuild

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// Module is nodeboot's module path.
const Module = "github.com/nodeboot/nodeboot"

// SourceDir may be stamped at link time (-X) by the Makefile, so a CLI built
// from a checkout builds the init from that same checkout wherever it runs.
var SourceDir string

// embedded is what the CLI carries (tests replace it).
var embedded fs.FS = embeddedFiles

// Embedded reports whether this CLI carries a prebuilt init for arch.
func Embedded(arch string) bool {
	_, err := fs.Stat(embedded, embeddedName(arch))
	return err == nil
}

// Origin says where Build's init for arch comes from, for the manifest.
func Origin(arch string) string {
	if Embedded(arch) {
		return "embedded in the CLI"
	}
	return "built from source"
}

func embeddedName(arch string) string { return "embedded/nodeboot-init-" + arch }

// Build writes the init for arch into dir and returns the binary's path: the
// embedded one when there is one, else one compiled from source.
func Build(arch, dir string) (string, error) {
	out := filepath.Join(dir, "nodeboot-init-"+arch)
	if b, err := fs.ReadFile(embedded, embeddedName(arch)); err == nil {
		if err := os.WriteFile(out, b, 0o755); err != nil {
			return "", fmt.Errorf("writing the embedded init for %s: %w", arch, err)
		}
		return out, nil
	}
	return compile(arch, out)
}

// compile builds the init from nodeboot's source with the go command.
func compile(arch, out string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("this nodeboot carries no init (PID 1) for %s and building one needs the go command: install nodeboot from npm (npm install -D nodeboot) or build it with make, or install Go", arch)
	}
	src, err := sourceDir(goBin)
	if err != nil {
		return "", err
	}
	// -trimpath and an empty build id make the binary depend only on the
	// source and the toolchain, so images stay reproducible.
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "./cmd/nodeboot-init")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the init for %s in %s: %w\n%s", arch, src, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Source returns the directory of nodeboot's source (see sourceDir).
func Source() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is missing: install Go from https://go.dev/dl or your distribution")
	}
	return sourceDir(goBin)
}

// sourceDir finds nodeboot's source: the released module in the module cache
// when this binary was installed at a version, else the checkout it was built
// from (stamped, or found by walking up from the working directory and the
// executable, which covers `go test` and `go run`).
func sourceDir(goBin string) (string, error) {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Path == Module && isRelease(bi.Main.Version) {
		cmd := exec.Command(goBin, "mod", "download", "-json", Module+"@"+bi.Main.Version)
		cmd.Dir = os.TempDir()
		out, err := cmd.Output()
		var info struct{ Dir, Error string }
		if err == nil && json.Unmarshal(out, &info) == nil && info.Dir != "" {
			return info.Dir, nil
		}
	}
	var starts []string
	if SourceDir != "" {
		starts = append(starts, SourceDir)
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, s := range starts {
		if d, ok := findModuleRoot(s); ok {
			return d, nil
		}
	}
	return "", fmt.Errorf("cannot find nodeboot's source to build the init: run nodeboot from its checkout, build it with `make`, or install it with `go install %s/cmd/nodeboot@VERSION`", Module)
}

func isRelease(v string) bool {
	return strings.HasPrefix(v, "v") && !strings.Contains(v, "devel")
}

func findModuleRoot(dir string) (string, bool) {
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && moduleLine(b) == Module {
			if _, err := os.Stat(filepath.Join(dir, "cmd", "nodeboot-init")); err == nil {
				return dir, true
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func moduleLine(gomod []byte) string {
	for _, l := range strings.Split(string(gomod), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "module ") {
			return strings.Trim(strings.TrimSpace(strings.TrimPrefix(l, "module ")), `"`)
		}
	}
	return ""
}
