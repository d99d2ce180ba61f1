package debian

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/klauspost/compress/gzip"
	"github.com/ulikunitz/xz"
)

// testArchive is a Debian archive served by the test: dists/<suite>/InRelease
// (clearsigned by key), main/binary-<arch>/Packages.xz, and pool/ .debs.
type testArchive struct {
	t     *testing.T
	srv   *httptest.Server
	key   *openpgp.Entity
	files map[string][]byte
	mu    sync.Mutex
	hits  map[string]int
	// tamper, when set, changes what is served for a path.
	tamper map[string][]byte
}

type testPkg struct {
	name, version, arch, depends, provides string
	files                                  map[string]string // path → content; "->target" makes a symlink
}

func newKey(t *testing.T, name string) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@example.org", nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// keyringFile writes the public part of keys as a binary keyring, as Debian
// ships /usr/share/keyrings/debian-archive-keyring.gpg.
func keyringFile(t *testing.T, keys ...*openpgp.Entity) string {
	t.Helper()
	var buf bytes.Buffer
	for _, k := range keys {
		if err := k.Serialize(&buf); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "keyring.gpg")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// buildDeb writes a .deb: debian-binary, control.tar.gz, data.tar.xz.
func buildDeb(t *testing.T, p testPkg) []byte {
	t.Helper()
	var ctl bytes.Buffer
	gz := gzip.NewWriter(&ctl)
	tw := tar.NewWriter(gz)
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: t <t@example.org>\nDescription: test\n", p.name, p.version, p.arch)
	tw.WriteHeader(&tar.Header{Name: "./control", Mode: 0o644, Size: int64(len(control)), Typeflag: tar.TypeReg})
	tw.Write([]byte(control))
	tw.Close()
	gz.Close()

	var data bytes.Buffer
	xw, err := xz.NewWriter(&data)
	if err != nil {
		t.Fatal(err)
	}
	tw = tar.NewWriter(xw)
	names := make([]string, 0, len(p.files))
	for n := range p.files {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	for _, n := range names {
		for d := filepath.Dir(n); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	dl := make([]string, 0, len(dirs))
	for d := range dirs {
		dl = append(dl, d)
	}
	sort.Strings(dl)
	tw.WriteHeader(&tar.Header{Name: "./", Mode: 0o755, Typeflag: tar.TypeDir})
	for _, d := range dl {
		tw.WriteHeader(&tar.Header{Name: "./" + d + "/", Mode: 0o755, Typeflag: tar.TypeDir})
	}
	// Regular files first, then links, as dpkg-deb writes a hard link
	// after its target.
	sort.SliceStable(names, func(i, j int) bool {
		return !strings.HasPrefix(p.files[names[i]], "=>") && strings.HasPrefix(p.files[names[j]], "=>")
	})
	for _, n := range names {
		c := p.files[n]
		switch {
		case strings.HasPrefix(c, "->"):
			tw.WriteHeader(&tar.Header{Name: "./" + n, Linkname: c[2:], Mode: 0o777, Typeflag: tar.TypeSymlink})
		case strings.HasPrefix(c, "=>"):
			tw.WriteHeader(&tar.Header{Name: "./" + n, Linkname: c[2:], Typeflag: tar.TypeLink})
		default:
			tw.WriteHeader(&tar.Header{Name: "./" + n, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg})
			tw.Write([]byte(c))
		}
	}
	tw.Close()
	xw.Close()

	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	member := func(name string, b []byte) {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(b))
		ar.Write(b)
		if len(b)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	member("debian-binary", []byte("2.0\n"))
	member("control.tar.gz", ctl.Bytes())
	member("data.tar.xz", data.Bytes())
	return ar.Bytes()
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// newTestArchive serves suite "testsuite" with Origin origin for arm64.
func newTestArchive(t *testing.T, key *openpgp.Entity, origin string, pkgs []testPkg) *testArchive {
	t.Helper()
	ta := &testArchive{t: t, key: key, files: map[string][]byte{}, hits: map[string]int{}, tamper: map[string][]byte{}}
	var packages strings.Builder
	for _, p := range pkgs {
		deb := buildDeb(t, p)
		fn := fmt.Sprintf("pool/main/%c/%s/%s_%s_%s.deb", p.name[0], p.name, p.name, p.version, p.arch)
		ta.files[fn] = deb
		fmt.Fprintf(&packages, "Package: %s\nVersion: %s\nArchitecture: %s\n", p.name, p.version, p.arch)
		if p.depends != "" {
			fmt.Fprintf(&packages, "Depends: %s\n", p.depends)
		}
		if p.provides != "" {
			fmt.Fprintf(&packages, "Provides: %s\n", p.provides)
		}
		fmt.Fprintf(&packages, "Description: test package\n with a continuation\n .\n and a paragraph\nFilename: %s\nSize: %d\nSHA256: %s\n\n", fn, len(deb), sha(deb))
	}
	var pxz bytes.Buffer
	xw, _ := xz.NewWriter(&pxz)
	xw.Write([]byte(packages.String()))
	xw.Close()
	ta.files["dists/testsuite/main/binary-arm64/Packages.xz"] = pxz.Bytes()
	release := fmt.Sprintf("Origin: %s\nLabel: %s\nSuite: testing\nCodename: testsuite\nDate: Sat, 01 Jan 2000 00:00:00 UTC\nArchitectures: amd64 arm64\nComponents: main contrib\nDescription: test\nSHA256:\n %s %d main/binary-arm64/Packages.xz\n %s %d main/binary-arm64/Packages\n",
		origin, origin, sha(pxz.Bytes()), pxz.Len(), sha([]byte(packages.String())), len(packages.String()))
	var signed bytes.Buffer
	w, err := clearsign.Encode(&signed, key.PrivateKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(release))
	w.Close()
	ta.files["dists/testsuite/InRelease"] = signed.Bytes()
	ta.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/debian/")
		ta.mu.Lock()
		ta.hits[p]++
		b, ok := ta.tamper[p]
		if !ok {
			b, ok = ta.files[p]
		}
		ta.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(ta.srv.Close)
	return ta
}

func (ta *testArchive) debHits() int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	n := 0
	for p, c := range ta.hits {
		if strings.HasSuffix(p, ".deb") {
			n += c
		}
	}
	return n
}

func (ta *testArchive) archive(t *testing.T, keyring string) *Archive {
	t.Helper()
	a := &Archive{URL: ta.srv.URL + "/debian", Suite: "testsuite", CacheDir: filepath.Join(t.TempDir(), "cache"), From: "the test"}
	if keyring != "" {
		kr, err := LoadKeyring(keyring)
		if err != nil {
			t.Fatal(err)
		}
		a.Keyring, a.KeyringPath = kr, keyring
	}
	return a
}

var libPkgs = []testPkg{
	{name: "libc6", version: "2.36-9+deb12u1", arch: "arm64", depends: "libgcc-s1", files: map[string]string{
		"usr/lib/aarch64-linux-gnu/libc.so.6":             "libc",
		"usr/lib/ld-linux-aarch64.so.1":                   "->aarch64-linux-gnu/ld-linux-aarch64.so.1",
		"usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1": "ld",
	}},
	{name: "libgcc-s1", version: "12.2.0-14", arch: "arm64", depends: "gcc-12-base (= 12.2.0-14), libc6 (>= 2.35)", files: map[string]string{
		"usr/lib/aarch64-linux-gnu/libgcc_s.so.1": "gcc_s",
	}},
	{name: "gcc-12-base", version: "12.2.0-14", arch: "arm64", files: map[string]string{"usr/share/doc/gcc-12-base/copyright": "GPL"}},
	{name: "libstdc++6", version: "12.2.0-14", arch: "arm64", depends: "gcc-12-base (= 12.2.0-14), libc6 (>= 2.36), libgcc-s1 (>= 4.2) | libgcc1:any", files: map[string]string{
		"usr/lib/aarch64-linux-gnu/libstdc++.so.6.0.30": "stdc++",
		"usr/lib/aarch64-linux-gnu/libstdc++.so.6":      "->libstdc++.so.6.0.30",
		"usr/lib/aarch64-linux-gnu/libstdc++-copy.so":   "=>usr/lib/aarch64-linux-gnu/libstdc++.so.6.0.30",
	}},
	{name: "tzdata", version: "2024a-0+deb12u1", arch: "all", provides: "tzdata-bookworm", files: map[string]string{"usr/share/zoneinfo/UTC": "TZif"}},
	{name: "libnotarm", version: "1.0", arch: "amd64", files: map[string]string{"x": "x"}},
}

// TestSysroot fetches a package and its closure through a signed archive,
// unpacks them into a tree, and does it again from the cache without
// downloading a package a second time.
func TestSysroot(t *testing.T) {
	key := newKey(t, "archive")
	ta := newTestArchive(t, key, "Debian", libPkgs)
	a := ta.archive(t, keyringFile(t, key))
	dir, pkgs, err := a.Sysroot(context.Background(), "arm64", "libstdc++6", "tzdata-bookworm")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pkgs {
		names = append(names, p.Name+"="+p.Version)
	}
	if got, want := strings.Join(names, " "), "gcc-12-base=12.2.0-14 libc6=2.36-9+deb12u1 libgcc-s1=12.2.0-14 libstdc++6=12.2.0-14 tzdata=2024a-0+deb12u1"; got != want {
		t.Errorf("closure %s, want %s", got, want)
	}
	for p, want := range map[string]string{
		"usr/lib/aarch64-linux-gnu/libstdc++.so.6":    "stdc++", // through the symlink
		"usr/lib/aarch64-linux-gnu/libstdc++-copy.so": "stdc++", // the hard link
		"usr/lib/ld-linux-aarch64.so.1":               "ld",
		"usr/lib/aarch64-linux-gnu/libgcc_s.so.1":     "gcc_s",
		"usr/share/zoneinfo/UTC":                      "TZif",
	} {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", p, b, err, want)
		}
	}
	if l, err := os.Readlink(filepath.Join(dir, "usr/lib/aarch64-linux-gnu/libstdc++.so.6")); err != nil || l != "libstdc++.so.6.0.30" {
		t.Errorf("symlink kept as %q, %v", l, err)
	}
	fetched := ta.debHits()
	if fetched != 5 {
		t.Errorf("%d package downloads, want 5", fetched)
	}
	// A new tree from the cached packages: no .deb downloaded again.
	os.RemoveAll(dir)
	if _, _, err := a.Sysroot(context.Background(), "arm64", "libstdc++6"); err != nil {
		t.Fatal(err)
	}
	if ta.debHits() != fetched {
		t.Errorf("cached packages were downloaded again (%d → %d)", fetched, ta.debHits())
	}
	// Offline: the mirror gone, the cached Release and index serve.
	ta.srv.Close()
	ix, err := a.Index(context.Background(), "arm64")
	if err != nil {
		t.Fatalf("offline: %v", err)
	}
	if p, ok := ix.Get("libc6"); !ok || p.Version != "2.36-9+deb12u1" {
		t.Errorf("offline index: libc6 %+v", p)
	}
	if _, ok := ix.Get("libnotarm"); ok {
		t.Error("an amd64 package is in the arm64 index")
	}
}

// TestRefusals: everything that must not be trusted is refused with a
// message that says what and what to do, and nothing is cached.
func TestRefusals(t *testing.T) {
	key := newKey(t, "archive")
	ctx := context.Background()
	t.Run("signed by another key", func(t *testing.T) {
		ta := newTestArchive(t, newKey(t, "stranger"), "Debian", libPkgs)
		_, err := ta.archive(t, keyringFile(t, key)).Index(ctx, "arm64")
		if !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "cannot be trusted") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("InRelease edited after signing", func(t *testing.T) {
		ta := newTestArchive(t, key, "Debian", libPkgs)
		ta.tamper["dists/testsuite/InRelease"] = bytes.Replace(ta.files["dists/testsuite/InRelease"], []byte("Codename: testsuite"), []byte("Codename: testsuitf"), 1)
		_, err := ta.archive(t, keyringFile(t, key)).Index(ctx, "arm64")
		if !errors.Is(err, ErrSignature) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("unsigned InRelease with a keyring", func(t *testing.T) {
		ta := newTestArchive(t, key, "Debian", libPkgs)
		ta.tamper["dists/testsuite/InRelease"] = []byte("Origin: Debian\nSHA256:\n " + strings.Repeat("0", 64) + " 1 x\n")
		_, err := ta.archive(t, keyringFile(t, key)).Index(ctx, "arm64")
		if !errors.Is(err, ErrSignature) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("not Debian", func(t *testing.T) {
		ta := newTestArchive(t, key, "NodeSource", libPkgs)
		_, err := ta.archive(t, keyringFile(t, key)).Index(ctx, "arm64")
		if err == nil || !strings.Contains(err.Error(), `Origin "NodeSource"`) || !strings.Contains(err.Error(), EnvMirror) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("no such architecture", func(t *testing.T) {
		ta := newTestArchive(t, key, "Debian", libPkgs)
		_, err := ta.archive(t, keyringFile(t, key)).Index(ctx, "mips")
		if err == nil || !strings.Contains(err.Error(), "has no mips packages") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("Packages not as the Release says", func(t *testing.T) {
		ta := newTestArchive(t, key, "Debian", libPkgs)
		b := append([]byte{}, ta.files["dists/testsuite/main/binary-arm64/Packages.xz"]...)
		b[len(b)/2] ^= 1
		ta.tamper["dists/testsuite/main/binary-arm64/Packages.xz"] = b
		a := ta.archive(t, keyringFile(t, key))
		_, err := a.Index(ctx, "arm64")
		if err == nil || !strings.Contains(err.Error(), "does not vouch for") {
			t.Errorf("err = %v", err)
		}
		if ents, _ := os.ReadDir(filepath.Join(a.CacheDir, "index")); len(ents) != 0 {
			t.Errorf("a bad index was cached: %v", ents)
		}
	})
	t.Run("package not as the index says", func(t *testing.T) {
		ta := newTestArchive(t, key, "Debian", libPkgs)
		fn := "pool/main/l/libc6/libc6_2.36-9+deb12u1_arm64.deb"
		b := append([]byte{}, ta.files[fn]...)
		b[len(b)-3] ^= 1
		ta.tamper[fn] = b
		a := ta.archive(t, keyringFile(t, key))
		_, _, err := a.Sysroot(ctx, "arm64", "libc6")
		if err == nil || !strings.Contains(err.Error(), "does not vouch for") || !strings.Contains(err.Error(), fn) {
			t.Errorf("err = %v", err)
		}
		if m, _ := filepath.Glob(filepath.Join(a.CacheDir, "pool", "libc6*")); len(m) != 0 {
			t.Errorf("a bad package was cached: %v", m)
		}
		if ents, _ := os.ReadDir(filepath.Join(a.CacheDir, "sysroot")); len(ents) != 0 {
			t.Errorf("a sysroot was left: %v", ents)
		}
	})
	t.Run("missing dependency", func(t *testing.T) {
		ta := newTestArchive(t, key, "Debian", libPkgs[1:])
		_, _, err := ta.archive(t, keyringFile(t, key)).Sysroot(ctx, "arm64", "libgcc-s1")
		if err == nil || !strings.Contains(err.Error(), "package libc6 (needed by libgcc-s1) is not in the arm64 index of testsuite") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("no keyring: checked by hash only, said", func(t *testing.T) {
		ta := newTestArchive(t, key, "Debian", libPkgs)
		a := ta.archive(t, "")
		var log strings.Builder
		a.Log = &log
		if _, err := a.Index(ctx, "arm64"); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log.String(), "not signature-checked") {
			t.Errorf("log %q does not say the Release was not checked", log.String())
		}
	})
}

// TestExtractUnsafe: a data.tar entry that leaves the tree is refused.
func TestExtractUnsafe(t *testing.T) {
	for _, name := range []string{"../evil", "./../../evil", "/abs/evil"} {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		tw.Close()
		dir := t.TempDir()
		err := extractTar(tar.NewReader(&buf), filepath.Join(dir))
		if name == "/abs/evil" {
			// path.Clean keeps it absolute: refused too.
		}
		if err == nil || !strings.Contains(err.Error(), "unsafe path") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
