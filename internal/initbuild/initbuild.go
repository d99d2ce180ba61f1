// Package initbuild compiles cmd/nodeboot-init, the image's PID 1, for the
// target architecture with the Go toolchain. Building it on demand (instead of
// shipping a binary per architecture inside the CLI) keeps the CLI small and
// the init exactly in step with the CLI's source.
package initbuild

import (
	"bytes"
	"encoding/json"
	"fmt"
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

// Build compiles the init for arch into dir and returns the binary's path.
func Build(arch, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("building the init (PID 1) needs the go command: install Go from https://go.dev/dl or your distribution")
	}
	src, err := sourceDir(goBin)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "nodeboot-init-"+arch)
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
