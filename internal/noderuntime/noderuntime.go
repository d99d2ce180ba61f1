// Package noderuntime chooses and obtains the node binary that goes into an
// image: the host's node when it fits, a binary the user points at, or an
// official build fetched from the npm registry's node-linux-<arch> packages
// (which carry nodejs.org's Linux binaries as bin/node), verified and cached.
package noderuntime

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/Masterminds/semver/v3"

	"github.com/nodeboot/nodeboot/internal/filedigest"
)

// Request says which node an image needs.
type Request struct {
	Arch string // GOARCH of the target: "amd64" or "arm64"
	// Flag is the --node flag: "" (none), a version spec like "22" / "22.21"
	// / "22.21.1" / "v22.21.1", or a path to a node binary.
	Flag string
	// Engines is package.json engines.node, a semver range ("" = any).
	Engines string
	// CacheDir holds downloaded binaries; "" = os.UserCacheDir()/nodeboot/node.
	CacheDir string
	// Registry overrides the npm registry base URL; "" = ask npm (`npm
	// config get registry`), then NPM_CONFIG_REGISTRY.
	Registry string
	Log      io.Writer // progress messages (may be nil or io.Discard)
}

// Runtime is the chosen node binary.
type Runtime struct {
	Path      string // host path of the node binary to copy into the image
	Version   string // e.g. "22.21.1" (no v), or "unknown"
	Source    string // "host", "path", or "npm:<package>@<version>"
	SHA256    string // hex sha256 of the binary
	Integrity string // the registry's integrity string for npm-fetched ones
	License   string // path of node's LICENSE file if known, "" if not
}

// UnknownVersion is Runtime.Version when a --node binary's version could not
// be determined (a foreign-arch binary outside any package directory).
const UnknownVersion = "unknown"

// Resolve picks the node binary for req, downloading it if needed.
func Resolve(ctx context.Context, req Request) (*Runtime, error) {
	log := req.Log
	if log == nil {
		log = io.Discard
	}
	pkg, err := packageFor(req.Arch)
	if err != nil {
		return nil, err
	}
	engines, err := ParseEngines(req.Engines)
	if err != nil {
		return nil, fmt.Errorf("%w: fix package.json", err)
	}
	enginesRaw := strings.TrimSpace(req.Engines)

	flag := strings.TrimSpace(req.Flag)
	if flag != "" {
		if isPathFlag(flag) {
			return resolvePath(ctx, flag, req.Arch, engines, enginesRaw, log)
		}
		spec, err := ParseSpec(flag)
		if err != nil {
			return nil, fmt.Errorf("--node %q is neither a node binary nor a version (like 22, 22.21 or 22.21.1): %w", req.Flag, err)
		}
		return resolveRegistry(ctx, req, pkg, spec, engines, enginesRaw, log)
	}

	if rt, err := resolveHost(ctx, req.Arch, engines, enginesRaw, log); err != nil {
		return nil, err
	} else if rt != nil {
		return rt, nil
	}
	return resolveRegistry(ctx, req, pkg, nil, engines, enginesRaw, log)
}

// isPathFlag decides whether --node names a file. A separator makes it a
// path. A bare word that parses as a version is a version even if a file of
// that name happens to sit in the working directory ("./22" still reaches the
// file); any other existing file is a path, so `--node node` works.
func isPathFlag(flag string) bool {
	if strings.ContainsRune(flag, '/') || strings.ContainsRune(flag, filepath.Separator) {
		return true
	}
	if _, err := ParseSpec(flag); err == nil {
		return false
	}
	fi, err := os.Stat(flag)
	return err == nil && !fi.IsDir()
}

// hostCanRun reports whether binaries for arch run on this machine, i.e.
// whether we may execute them to ask their version.
func hostCanRun(arch string) bool {
	return runtime.GOOS == "linux" && runtime.GOARCH == arch
}

// resolvePath handles --node /path/to/node.
func resolvePath(ctx context.Context, p, arch string, engines *semver.Constraints, enginesRaw string, log io.Writer) (*Runtime, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, fmt.Errorf("--node %s: %w", p, err)
	}
	// Resolve symlinks (node_modules/.bin/node, /usr/bin/node -> ...) so the
	// image gets the real file and we can find the package around it.
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("--node %s: %w", p, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("--node %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("--node %s is not a regular file", p)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return nil, fmt.Errorf("--node %s is not executable: chmod +x it or pass another binary", p)
	}
	if err := checkELF(real, arch); err != nil {
		return nil, fmt.Errorf("--node %s: %w", p, err)
	}

	version := UnknownVersion
	if hostCanRun(arch) {
		// A binary this host can run is asked. When that fails it is not
		// node (or not a working one), and a version found on disk beside
		// it would be a guess about some other file.
		v, err := runVersion(ctx, real)
		if err != nil {
			return nil, fmt.Errorf("--node %s is not node: %w; pass a node binary, e.g. --node \"$(command -v node)\", or a version such as 22", p, err)
		}
		version = v
	} else if v, ok := versionOnDisk(real); ok {
		version = v
	}
	if version == UnknownVersion {
		fmt.Fprintf(log, "node: version of %s is unknown; engines.node cannot be checked\n", real)
	} else if engines != nil {
		v, err := parseNodeVersion(version)
		if err != nil {
			return nil, fmt.Errorf("--node %s reports version %q: %w", p, version, err)
		}
		if !engines.Check(v) {
			return nil, fmt.Errorf("--node %s is node %s, which does not satisfy engines.node %q: pass another node or change engines.node", p, version, enginesRaw)
		}
	}
	sum, err := sha256File(real)
	if err != nil {
		return nil, fmt.Errorf("--node %s: %w", p, err)
	}
	fmt.Fprintf(log, "node: using %s (node %s)\n", real, version)
	return &Runtime{Path: real, Version: version, Source: "path", SHA256: sum, License: findLicense(real)}, nil
}

// resolveHost returns the host's node if it can go into the image, nil (and
// a log line saying why) if the registry should be used instead.
func resolveHost(ctx context.Context, arch string, engines *semver.Constraints, enginesRaw string, log io.Writer) (*Runtime, error) {
	if !hostCanRun(arch) {
		fmt.Fprintf(log, "node: host is %s/%s, image is linux/%s; fetching node from the registry\n", runtime.GOOS, runtime.GOARCH, arch)
		return nil, nil
	}
	lp, err := exec.LookPath("node")
	if err != nil {
		fmt.Fprintf(log, "node: no node on PATH; fetching node from the registry\n")
		return nil, nil
	}
	version, real, err := probeHostNode(ctx, lp)
	if err != nil {
		fmt.Fprintf(log, "node: cannot use host node %s (%v); fetching node from the registry\n", lp, err)
		return nil, nil
	}
	if err := checkELF(real, arch); err != nil {
		fmt.Fprintf(log, "node: cannot use host node %s: %v; fetching node from the registry\n", real, err)
		return nil, nil
	}
	v, err := parseNodeVersion(version)
	if err != nil {
		fmt.Fprintf(log, "node: host node %s reports version %q; fetching node from the registry\n", real, version)
		return nil, nil
	}
	if engines != nil && !engines.Check(v) {
		fmt.Fprintf(log, "node: host node %s does not satisfy engines.node %q; fetching node from the registry\n", version, enginesRaw)
		return nil, nil
	}
	sum, err := sha256File(real)
	if err != nil {
		return nil, fmt.Errorf("host node: %w", err)
	}
	fmt.Fprintf(log, "node: using host node %s (%s)\n", version, real)
	return &Runtime{Path: real, Version: version, Source: "host", SHA256: sum, License: findLicense(real)}, nil
}

// probeKind names the remembered answer of probeHostNode.
const probeKind = "node version"

// probeHostNode asks node for its version and its real executable path. The
// `node` on PATH is often a version-manager shim (a script, or a launcher
// binary) that would be useless in the image; process.execPath is the binary
// that actually runs. Falls back to plain `node -v` if -p is unavailable.
//
// Starting node takes a good part of a warm rebuild, so the answer is
// remembered (internal/filedigest) when `node` on PATH is the node binary
// itself (execPath is its own resolved path): then the version depends on
// its bytes alone, and any change to them changes the file's identity. A
// launcher (whose answer depends on the project it runs in) is asked
// every time.
func probeHostNode(ctx context.Context, lp string) (version, real string, err error) {
	resolved, rerr := filepath.EvalSymlinks(lp)
	if rerr == nil {
		if v, ok := filedigest.Recall(resolved, probeKind); ok {
			return v, resolved, nil
		}
	}
	defer func() {
		if err == nil && rerr == nil && real == resolved {
			filedigest.Remember(resolved, probeKind, version)
		}
	}()
	out, err := runNode(ctx, lp, "-p", `process.version + "\n" + process.execPath`)
	if err == nil {
		if v, p, ok := strings.Cut(strings.TrimSpace(out), "\n"); ok && filepath.IsAbs(strings.TrimSpace(p)) {
			version, real = strings.TrimPrefix(strings.TrimSpace(v), "v"), strings.TrimSpace(p)
		}
	}
	if real == "" {
		if version, err = runVersion(ctx, lp); err != nil {
			return "", "", err
		}
		if real, err = filepath.EvalSymlinks(lp); err != nil {
			return "", "", err
		}
	}
	if real, err = filepath.EvalSymlinks(real); err != nil {
		return "", "", err
	}
	return version, real, nil
}

// runVersion runs `<bin> --version` and returns the version without the
// "v". Node prints exactly "vX.Y.Z"; anything else is not node.
func runVersion(ctx context.Context, bin string) (string, error) {
	out, err := runNode(ctx, bin, "--version")
	if err != nil {
		return "", err
	}
	line := strings.TrimSpace(out)
	v, ok := strings.CutPrefix(line, "v")
	if _, err := semver.StrictNewVersion(v); !ok || err != nil {
		return "", fmt.Errorf("%s --version printed %q, not node's vX.Y.Z", bin, line)
	}
	return v, nil
}

func runNode(ctx context.Context, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	// NODE_OPTIONS could make node fail or print extra output before our
	// answer; it is about the app, not about identifying the binary.
	cmd.Env = append(os.Environ(), "NODE_OPTIONS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// elfMachine is the ELF e_machine each supported GOARCH needs.
var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64,
	"arm64": elf.EM_AARCH64,
}

var goarchOf = map[elf.Machine]string{
	elf.EM_X86_64:  "amd64",
	elf.EM_AARCH64: "arm64",
	elf.EM_386:     "386",
	elf.EM_ARM:     "arm",
	elf.EM_RISCV:   "riscv64",
	elf.EM_PPC64:   "ppc64",
	elf.EM_S390:    "s390x",
}

// checkELF verifies p is a 64-bit ELF executable for arch, so a wrong binary
// fails the build instead of the boot.
func checkELF(p, arch string) error {
	want, ok := elfMachine[arch]
	if !ok {
		return fmt.Errorf("unsupported arch %q", arch)
	}
	f, err := elf.Open(p)
	if err != nil {
		return fmt.Errorf("not an ELF executable (is it a script or a macOS/Windows binary?): %w", err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("ELF file of type %s is not an executable", f.Type)
	}
	if f.Machine != want || f.Class != elf.ELFCLASS64 {
		got := goarchOf[f.Machine]
		if got == "" {
			got = f.Machine.String()
		}
		if f.Class != elf.ELFCLASS64 {
			got += " " + f.Class.String()
		}
		return fmt.Errorf("binary is for %s, but the image is %s", got, arch)
	}
	return nil
}

// versionOnDisk finds the version of a binary we may not run, from the
// layout it was installed with: nodeboot's cache (meta.json beside it), an
// npm node-linux-* package (<pkg>/bin/node + <pkg>/package.json) or an
// official nodejs.org tarball (<prefix>/bin/node +
// <prefix>/include/node/node_version.h).
func versionOnDisk(bin string) (string, bool) {
	binDir := filepath.Dir(bin)
	// A binary in nodeboot's own cache (someone passing --node at it).
	if data, err := os.ReadFile(filepath.Join(binDir, metaFile)); err == nil && filepath.Base(bin) == "node" {
		var m cacheMeta
		if json.Unmarshal(data, &m) == nil {
			if _, err := parseNodeVersion(m.Version); err == nil {
				return m.Version, true
			}
		}
	}
	if filepath.Base(binDir) != "bin" {
		return "", false
	}
	prefix := filepath.Dir(binDir)
	if data, err := os.ReadFile(filepath.Join(prefix, "package.json")); err == nil {
		var pj struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		}
		// Only packages that are node itself: a project's own package.json
		// above a bin/ dir says nothing about the binary.
		if json.Unmarshal(data, &pj) == nil && (pj.Name == "node" || strings.HasPrefix(pj.Name, "node-linux-")) {
			if _, err := parseNodeVersion(pj.Version); err == nil {
				return strings.TrimPrefix(pj.Version, "v"), true
			}
		}
	}
	if data, err := os.ReadFile(filepath.Join(prefix, "include", "node", "node_version.h")); err == nil {
		if v, ok := parseNodeVersionH(data); ok {
			return v, true
		}
	}
	return "", false
}

var versionDefine = regexp.MustCompile(`(?m)^#define NODE_(MAJOR|MINOR|PATCH)_VERSION (\d+)\s*$`)

func parseNodeVersionH(data []byte) (string, bool) {
	parts := map[string]string{}
	for _, m := range versionDefine.FindAllSubmatch(data, -1) {
		parts[string(m[1])] = string(m[2])
	}
	if len(parts) != 3 {
		return "", false
	}
	return parts["MAJOR"] + "." + parts["MINOR"] + "." + parts["PATCH"], true
}

// findLicense looks for node's license where the usual installs put it:
// next to bin/ in npm packages and nodejs.org tarballs, under share/doc in
// distribution packages (Debian ships it as share/doc/nodejs/LICENSE).
func findLicense(bin string) string {
	prefix := filepath.Dir(filepath.Dir(bin))
	for _, c := range []string{
		"LICENSE",
		"share/doc/node/LICENSE",
		"share/doc/nodejs/LICENSE",
		"share/licenses/nodejs/LICENSE",
	} {
		p := filepath.Join(prefix, filepath.FromSlash(c))
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// resolveRegistry obtains a release of pkg selected by spec (nil = any) and
// engines, from the cache when possible.
func resolveRegistry(ctx context.Context, req Request, pkg string, spec *Spec, engines *semver.Constraints, enginesRaw string, log io.Writer) (*Runtime, error) {
	root := req.CacheDir
	if root == "" {
		var err error
		if root, err = defaultCacheDir(); err != nil {
			return nil, err
		}
	}
	// An exact version needs no registry round trip when cached: builds are
	// reproducible and work offline.
	if spec != nil && spec.Exact() {
		if rt := lookupCache(root, spec.String(), req.Arch, log); rt != nil {
			if err := checkEngines(rt, engines, enginesRaw, spec); err != nil {
				return nil, err
			}
			fmt.Fprintf(log, "node: using cached %s (%s)\n", rt.Source, rt.Path)
			return rt, nil
		}
	}

	var reg Registry
	var err error
	if req.Registry != "" {
		reg, err = normalizeRegistry(req.Registry, "the registry setting")
	} else {
		reg, err = FindRegistry(ctx)
	}
	if err != nil {
		return nil, err
	}
	pk, err := FetchPackument(ctx, reg, pkg)
	if err != nil {
		if ctx.Err() == nil {
			if rt := newestCached(root, req.Arch, spec, engines); rt != nil {
				fmt.Fprintf(log, "node: %v\nnode: offline; using the newest matching cached node %s\n", err, rt.Version)
				return rt, nil
			}
		}
		return nil, err
	}
	rel, err := pk.Select(spec, engines, enginesRaw)
	if err != nil {
		return nil, err
	}
	version := rel.Version.String()
	if rt := lookupCache(root, version, req.Arch, log); rt != nil {
		if rel.Integrity == "" || rt.Integrity == rel.Integrity {
			fmt.Fprintf(log, "node: using cached %s (%s)\n", rt.Source, rt.Path)
			return rt, nil
		}
		// Published versions are immutable, so this means the cache came
		// from a different registry; trust the current one and refetch.
		fmt.Fprintf(log, "node: cached %s has integrity %s but %s lists %s; downloading again\n", rt.Source, rt.Integrity, reg.URL, rel.Integrity)
	}
	fmt.Fprintf(log, "node: downloading %s@%s from %s\n", pkg, version, reg)
	rt, err := install(func(dir string) (*extracted, string, error) {
		return download(ctx, rel, dir)
	}, root, rel, req.Arch)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "node: cached %s at %s\n", rt.Source, rt.Path)
	return rt, nil
}

// checkEngines re-checks a cache hit for an exact --node against
// engines.node, the check Select does for registry answers.
func checkEngines(rt *Runtime, engines *semver.Constraints, enginesRaw string, spec *Spec) error {
	if engines == nil {
		return nil
	}
	v, err := parseNodeVersion(rt.Version)
	if err != nil {
		return fmt.Errorf("cached node %s: %w", rt.Path, err)
	}
	if !engines.Check(v) {
		return fmt.Errorf("--node %s does not satisfy engines.node %q: change --node or engines.node", spec, enginesRaw)
	}
	return nil
}
