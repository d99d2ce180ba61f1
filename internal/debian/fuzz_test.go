package debian

import (
	"bytes"
	"testing"
)

// FuzzParsePackages: a Packages index comes from a mirror; whatever it
// holds, parsing returns an index or an error, and every package it keeps
// has a usable pool path and hash.
func FuzzParsePackages(f *testing.F) {
	f.Add([]byte("Package: a\nVersion: 1\nArchitecture: arm64\nFilename: pool/a.deb\nSize: 3\nSHA256: " + sha([]byte("abc")) + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ix, err := ParsePackages(bytes.NewReader(b), "arm64")
		if err != nil {
			return
		}
		for _, p := range ix.packages {
			if checkPoolPath(p.Filename) != nil || len(p.SHA256) != 64 || p.Size < 0 {
				t.Fatalf("kept an unusable package: %+v", p)
			}
			if _, err := ix.Closure(p.Name); err != nil {
				_ = err // a missing dependency is an answer, not a crash
			}
		}
	})
}

// FuzzParseRelease: an InRelease read without a keyring (the hosts
// without one) must parse or fail, never panic; every file sum kept is
// well formed.
func FuzzParseRelease(f *testing.F) {
	f.Add([]byte("Origin: Debian\nSuite: stable\nSHA256:\n " + sha(nil) + " 0 main/binary-arm64/Packages\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseInRelease(b, nil)
		if err != nil {
			return
		}
		for p, s := range r.Files {
			if len(s.SHA256) != 64 || s.Size < 0 || p == "" {
				t.Fatalf("bad file sum kept: %q %+v", p, s)
			}
		}
	})
}

// FuzzParseSources: apt's sources files are the host's, but parsed by
// nodeboot on every arm64 build: any text gives sources or none.
func FuzzParseSources(f *testing.F) {
	f.Add("deb [arch=arm64 signed-by=/k.gpg] http://m/debian bookworm main\n", true)
	f.Add("Types: deb\nURIs: http://m/debian\nSuites: bookworm bookworm-updates\nComponents: main\n", false)
	f.Fuzz(func(t *testing.T, text string, oneLine bool) {
		var s []Source
		if oneLine {
			s = ParseSourcesList(text, "x.list")
		} else {
			s = ParseDeb822Sources(text, "x.sources")
		}
		pickDebian(s)
	})
}
