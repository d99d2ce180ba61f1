package debian

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The sources of a Debian 12 host with third-party repositories beside
// Debian's, as on the machines nodeboot is developed on.
const hostDeb822 = `Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`

const thirdParty = `Types: deb
URIs: https://vendor.example/node_20.x
Suites: nodistro
Components: main
Architectures: amd64
Signed-By: /usr/share/keyrings/vendor.gpg
`

func TestHostSources(t *testing.T) {
	dir := t.TempDir()
	d := filepath.Join(dir, "sources.list.d")
	os.MkdirAll(d, 0o755)
	// Read in name order: the vendor's files come first here, and must
	// still not be picked.
	os.WriteFile(filepath.Join(d, "a-vendor.sources"), []byte(thirdParty), 0o644)
	os.WriteFile(filepath.Join(d, "b-sdk.list"), []byte("deb https://sdk.example/apt cloud-sdk-bookworm main\n"), 0o644)
	os.WriteFile(filepath.Join(d, "debian.sources"), []byte(hostDeb822), 0o644)
	os.WriteFile(filepath.Join(d, "ignored.save"), []byte("deb http://old/debian buster main\n"), 0o644)
	srcs, err := readSources(filepath.Join(dir, "sources.list"), d)
	if err != nil {
		t.Fatal(err)
	}
	if len(srcs) != 5 {
		t.Fatalf("%d sources, want 5: %+v", len(srcs), srcs)
	}
	a, err := archiveFrom(srcs, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if a.URL != "http://mirror.example/debian" || a.Suite != "bookworm" || a.Component != "main" {
		t.Errorf("picked %s %s %s", a.URL, a.Suite, a.Component)
	}
	if !strings.HasSuffix(a.From, "debian.sources") {
		t.Errorf("from %q", a.From)
	}
	// The environment overrides apt; the suite stays apt's unless set.
	a, err = archiveFrom(srcs, "https://other.example/debian/", "")
	if err != nil || a.URL != "https://other.example/debian" || a.Suite != "bookworm" || a.From != EnvMirror {
		t.Errorf("env mirror: %+v, %v", a, err)
	}
	a, err = archiveFrom(srcs, "", "trixie")
	if err != nil || a.Suite != "trixie" || a.URL != "http://mirror.example/debian" {
		t.Errorf("env suite: %+v, %v", a, err)
	}
}

func TestNoArchive(t *testing.T) {
	_, err := archiveFrom(nil, "", "")
	if err == nil || !strings.Contains(err.Error(), EnvMirror) || !strings.Contains(err.Error(), "no Debian archive configured") {
		t.Errorf("no apt, no env: %v", err)
	}
	a, err := archiveFrom(nil, "http://m.example/debian", "")
	if err != nil || a.Suite != "stable" {
		t.Errorf("env only: %+v, %v", a, err)
	}
	if _, err := archiveFrom(nil, "file:///srv/debian", ""); err == nil || !strings.Contains(err.Error(), "not an http(s) URL") {
		t.Errorf("file URL: %v", err)
	}
}

func TestParseSourcesList(t *testing.T) {
	s := ParseSourcesList("# c\ndeb [arch=arm64 signed-by=/k.gpg] http://m/debian bookworm main contrib # x\ndeb-src http://m/debian bookworm main\ndeb http://m/flat ./\n", "f")
	if len(s) != 2 || s[0].SignedBy != "/k.gpg" || s[0].Suite != "bookworm" || strings.Join(s[0].Components, ",") != "main,contrib" {
		t.Errorf("%+v", s)
	}
	if _, ok := pickDebian(s); !ok {
		t.Error("nothing picked")
	}
}

// A Mac has no apt: the mirror comes from the environment only, and
// without it the error names the variable (never a guessed mirror). Its
// keyring comes from NODEBOOT_DEBIAN_KEYRING.
func TestArchiveForMac(t *testing.T) {
	_, err := archiveFor("darwin", nil, "", "", "")
	if err == nil || !strings.Contains(err.Error(), "set "+EnvMirror) || !strings.Contains(err.Error(), "darwin host has no apt sources") {
		t.Errorf("darwin without %s: %v", EnvMirror, err)
	}
	a, err := archiveFor("darwin", nil, "https://m.example/debian", "bookworm", "")
	if err != nil || a.URL != "https://m.example/debian" || a.Suite != "bookworm" || a.From != EnvMirror {
		t.Errorf("darwin with %s: %+v, %v", EnvMirror, a, err)
	}
	if _, err := archiveFor("darwin", nil, "https://m.example/debian", "", filepath.Join(t.TempDir(), "missing.gpg")); err == nil || !strings.Contains(err.Error(), EnvKeyring) {
		t.Errorf("a missing keyring: %v", err)
	}
	if _, err := os.Stat(DefaultKeyring); err == nil {
		a, err := archiveFor("darwin", nil, "https://m.example/debian", "", DefaultKeyring)
		if err != nil || len(a.Keyring) == 0 || a.KeyringPath != DefaultKeyring {
			t.Errorf("with %s=%s: %+v, %v", EnvKeyring, DefaultKeyring, a, err)
		}
	}
	// Linux keeps apt's sources when the environment names no mirror.
	if _, err := archiveFor("linux", []Source{{URI: "http://deb.example/debian", Suite: "bookworm", Components: []string{"main"}, File: "x"}}, "", "", ""); err != nil {
		t.Errorf("linux with apt sources: %v", err)
	}
}
