package noderuntime

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha512"
	"debug/elf"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeELF returns a minimal, valid 64-bit little-endian ELF executable header
// for machine, followed by filler: enough for debug/elf and our checks, not
// something that runs.
func fakeELF(machine elf.Machine, filler string) []byte {
	var b bytes.Buffer
	b.Write([]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)})
	b.Write(make([]byte, 9)) // OSABI, ABI version, padding
	le := binary.LittleEndian
	hdr := struct {
		Type      uint16
		Machine   uint16
		Version   uint32
		Entry     uint64
		Phoff     uint64
		Shoff     uint64
		Flags     uint32
		Ehsize    uint16
		Phentsize uint16
		Phnum     uint16
		Shentsize uint16
		Shnum     uint16
		Shstrndx  uint16
	}{Type: uint16(elf.ET_EXEC), Machine: uint16(machine), Version: 1, Ehsize: 64, Phentsize: 56, Shentsize: 64}
	if err := binary.Write(&b, le, hdr); err != nil {
		panic(err)
	}
	b.WriteString(filler)
	return b.Bytes()
}

func hostMachine(arch string) elf.Machine { return elfMachine[arch] }

type tarEntry struct {
	Name string
	Body []byte
	Mode int64
	Type byte
}

func makeTgz(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed) // a 100 MB node packs in seconds
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		typ := e.Type
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.Mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.Name, Mode: mode, Size: int64(len(e.Body)), Typeflag: typ}
		if typ == tar.TypeSymlink {
			hdr.Size, hdr.Linkname = 0, string(e.Body)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(e.Body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// nodePackage builds a node-linux-* style tarball around a fake binary.
func nodePackage(t testing.TB, pkg, version string, bin []byte) []byte {
	t.Helper()
	pj, _ := json.Marshal(map[string]any{"name": pkg, "version": version, "bin": map[string]string{"node": "bin/node"}})
	return makeTgz(t,
		tarEntry{Name: "package/include/node/node.h", Body: []byte("/* header */")},
		tarEntry{Name: "package/LICENSE", Body: []byte("Node.js is licensed for use as follows: MIT " + version)},
		tarEntry{Name: "package/bin/node", Body: bin, Mode: 0o755},
		tarEntry{Name: "package/package.json", Body: pj},
	)
}

func sri512(b []byte) string {
	s := sha512.Sum512(b)
	return "sha512-" + base64.StdEncoding.EncodeToString(s[:])
}

func sha1hex(b []byte) string {
	s := sha1.Sum(b)
	return hex.EncodeToString(s[:])
}

// fakeRelease is one version served by fakeRegistry.
type fakeRelease struct {
	Tarball   []byte
	Integrity *string // nil = correct sha512; pointer to override (e.g. "")
	Shasum    *string // nil = correct sha1
	Serve     []byte  // bytes actually served, nil = Tarball
}

// fakeRegistry is a minimal npm registry: GET /<pkg> and GET /<pkg>/-/<file>.
type fakeRegistry struct {
	*httptest.Server
	Requests atomic.Int64
}

func newFakeRegistry(t *testing.T, pkg string, releases map[string]fakeRelease) *fakeRegistry {
	t.Helper()
	fr := &fakeRegistry{}
	mux := http.NewServeMux()
	fr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fr.Requests.Add(1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(fr.Close)
	mux.HandleFunc("/"+pkg, func(w http.ResponseWriter, r *http.Request) {
		versions := map[string]any{}
		for v, rel := range releases {
			integ, shasum := sri512(rel.Tarball), sha1hex(rel.Tarball)
			if rel.Integrity != nil {
				integ = *rel.Integrity
			}
			if rel.Shasum != nil {
				shasum = *rel.Shasum
			}
			dist := map[string]string{"tarball": fr.URL + "/" + pkg + "/-/" + pkg + "-" + v + ".tgz"}
			if integ != "" {
				dist["integrity"] = integ
			}
			if shasum != "" {
				dist["shasum"] = shasum
			}
			versions[v] = map[string]any{"name": pkg, "version": v, "dist": dist}
		}
		w.Header().Set("Content-Type", "application/vnd.npm.install-v1+json")
		_ = json.NewEncoder(w).Encode(map[string]any{"name": pkg, "versions": versions})
	})
	mux.HandleFunc("/"+pkg+"/-/", func(w http.ResponseWriter, r *http.Request) {
		file := strings.TrimPrefix(r.URL.Path, "/"+pkg+"/-/")
		v := strings.TrimSuffix(strings.TrimPrefix(file, pkg+"-"), ".tgz")
		rel, ok := releases[v]
		if !ok {
			http.NotFound(w, r)
			return
		}
		body := rel.Serve
		if body == nil {
			body = rel.Tarball
		}
		_, _ = w.Write(body)
	})
	return fr
}

func strp(s string) *string { return &s }

func writeExec(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("cache should be empty, has %s", e.Name())
	}
}
