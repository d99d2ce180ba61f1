package goproxy

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	nodeboot "github.com/nodeboot/nodeboot"
)

var testMod = module.Version{Path: "example.com/Kernel.amd64", Version: "v0.0.0-20260705070735-de680abf072b"}

// moduleZip makes a real module zip of files with x/mod's writer.
func moduleZip(t *testing.T, m module.Version, files map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := modzip.CreateFromDir(&buf, m, dir); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zipHash(t *testing.T, z []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.zip")
	os.WriteFile(p, z, 0o644)
	h, err := dirhash.HashZip(p, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// proxy is a module proxy speaking the protocol's zip route for one module.
type proxy struct {
	srv  *httptest.Server
	zip  atomic.Pointer[[]byte]
	hits atomic.Int32
	code int // answer with this status instead, when set
}

func newProxy(t *testing.T, m module.Version, z []byte) *proxy {
	p := &proxy{}
	p.zip.Store(&z)
	esc, _ := module.EscapePath(m.Path)
	ver, _ := module.EscapeVersion(m.Version)
	want := "/" + esc + "/@v/" + ver + ".zip"
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		if p.code != 0 {
			w.WriteHeader(p.code)
			return
		}
		if r.URL.Path != want {
			http.NotFound(w, r)
			return
		}
		w.Write(*p.zip.Load())
	}))
	t.Cleanup(p.srv.Close)
	return p
}

var files = map[string]string{
	"go.mod":    "module example.com/Kernel.amd64\n",
	"kernel.go": "package kernel\n",
	"vmlinuz":   "a kernel image",
}

func TestGetVerifiesAndCaches(t *testing.T) {
	good := moduleZip(t, testMod, files)
	h1 := zipHash(t, good)
	p := newProxy(t, testMod, good)
	f := &Fetcher{Proxy: p.srv.URL, NoProxy: "none.example", Dir: t.TempDir()}
	dir, err := f.Get(context.Background(), testMod, h1)
	if err != nil {
		t.Fatal(err)
	}
	// The path is escaped as the module cache does (!kernel for Kernel).
	if !strings.Contains(dir, "!kernel.amd64@") {
		t.Errorf("dir %s: path not escaped", dir)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "vmlinuz")); string(b) != "a kernel image" {
		t.Errorf("vmlinuz = %q", b)
	}
	// A second Get uses the cache.
	if _, err := f.Get(context.Background(), testMod, h1); err != nil || p.hits.Load() != 1 {
		t.Errorf("second Get: %v, %d requests (want the cached copy)", err, p.hits.Load())
	}

	// A damaged cached copy is fetched again.
	v := filepath.Join(dir, "vmlinuz")
	os.Chmod(v, 0o644)
	if err := os.WriteFile(v, []byte("a kernel ima"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	f.Log = func(format string, a ...any) { logs.WriteString(format + "\n") }
	if _, err := f.Get(context.Background(), testMod, h1); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(v); string(b) != "a kernel image" || p.hits.Load() != 2 {
		t.Errorf("after damage: vmlinuz %q, %d requests: not fetched again", b, p.hits.Load())
	}
	if !strings.Contains(logs.String(), "fetching it again") {
		t.Errorf("log %q does not say the cache was damaged", logs.String())
	}
	if left, _ := filepath.Glob(filepath.Join(f.Dir, "*", ".tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// A proxy serving other content than nodeboot was built with is refused,
// and nothing of it is kept.
func TestGetRefusesTamperedZip(t *testing.T) {
	good := moduleZip(t, testMod, files)
	h1 := zipHash(t, good)
	bad := map[string]string{}
	for k, v := range files {
		bad[k] = v
	}
	bad["vmlinuz"] = "a kernel image with a backdoor"
	p := newProxy(t, testMod, moduleZip(t, testMod, bad))
	// A second proxy after a pipe would have the good zip: a checksum
	// mismatch must not be retried elsewhere either.
	p2 := newProxy(t, testMod, good)
	f := &Fetcher{Proxy: p.srv.URL + "|" + p2.srv.URL, NoProxy: "none.example", Dir: t.TempDir()}
	_, err := f.Get(context.Background(), testMod, h1)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), h1) {
		t.Fatalf("Get with a tampered zip = %v, want a checksum mismatch naming go.sum's hash", err)
	}
	if p2.hits.Load() != 0 {
		t.Error("a checksum mismatch fell through to the next proxy")
	}
	dir, _ := f.ModuleDir(testMod)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the tampered module was kept in %s", dir)
	}
	entries, _ := os.ReadDir(f.Dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("left %s", e.Name())
		}
	}
}

func TestProxyList(t *testing.T) {
	good := moduleZip(t, testMod, files)
	h1 := zipHash(t, good)
	missing := newProxy(t, module.Version{Path: "other.example/x", Version: "v1.0.0"}, nil)
	broken := newProxy(t, testMod, good)
	broken.code = http.StatusInternalServerError
	ok := newProxy(t, testMod, good)
	for _, c := range []struct {
		name, proxy, noproxy string
		want                 string // "" = success
		direct               bool
	}{
		{"404 falls through after a comma", missing.srv.URL + "," + ok.srv.URL, "", "", false},
		{"500 stops after a comma", broken.srv.URL + "," + ok.srv.URL, "", "500", false},
		{"500 falls through after a pipe", broken.srv.URL + "|" + ok.srv.URL, "", "", false},
		{"off", "off", "", "GOPROXY=off", false},
		{"direct", "direct", "", "", true},
		{"not found then direct", missing.srv.URL + ",direct", "", "404", true},
		{"GONOPROXY", ok.srv.URL, "example.com", "GONOPROXY", true},
		{"not a URL", "proxy.example", "", "not an http(s) URL", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := &Fetcher{Proxy: c.proxy, NoProxy: c.noproxy, Dir: t.TempDir()}
			if c.noproxy == "" {
				f.NoProxy = "none.example"
			}
			_, err := f.Get(context.Background(), testMod, h1)
			switch {
			case c.want == "" && !c.direct && err != nil:
				t.Fatal(err)
			case c.direct && !errors.Is(err, ErrDirect):
				t.Fatalf("err %v, want ErrDirect", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("err %v, want %q", err, c.want)
			}
		})
	}
}

// The environment's GOPROXY and GOPRIVATE are honoured; the stamped default
// applies only when GOPROXY is unset.
func TestEnvironment(t *testing.T) {
	good := moduleZip(t, testMod, files)
	h1 := zipHash(t, good)
	ok := newProxy(t, testMod, good)
	old := DefaultProxy
	t.Cleanup(func() { DefaultProxy = old })
	DefaultProxy = "off"
	t.Setenv("GONOPROXY", "")
	t.Setenv("GOPRIVATE", "")
	t.Setenv("GOPROXY", ok.srv.URL)
	if _, err := (&Fetcher{Dir: t.TempDir()}).Get(context.Background(), testMod, h1); err != nil {
		t.Errorf("GOPROXY from the environment: %v", err)
	}
	t.Setenv("GOPROXY", "")
	if _, err := (&Fetcher{Dir: t.TempDir()}).Get(context.Background(), testMod, h1); err == nil || !strings.Contains(err.Error(), "GOPROXY=off") {
		t.Errorf("unset GOPROXY did not use the stamped default: %v", err)
	}
	DefaultProxy = ok.srv.URL
	t.Setenv("GOPRIVATE", "example.com/*")
	if _, err := (&Fetcher{Dir: t.TempDir()}).Get(context.Background(), testMod, h1); !errors.Is(err, ErrDirect) {
		t.Errorf("GOPRIVATE match: %v, want ErrDirect", err)
	}
}

func TestPinned(t *testing.T) {
	gomod := []byte("module m\n\ngo 1.26\n\nrequire (\n\texample.com/k v1.2.0\n\texample.com/r v1.0.0\n)\n\nreplace example.com/r => example.com/r2 v1.0.1\n")
	gosum := []byte("example.com/k v1.2.0 h1:AAAA=\nexample.com/k v1.2.0/go.mod h1:BBBB=\nexample.com/r2 v1.0.1 h1:CCCC=\n")
	for _, c := range []struct{ mod, ver, h1, err string }{
		{"example.com/k", "v1.2.0", "h1:AAAA=", ""},
		{"example.com/r", "v1.0.1", "h1:CCCC=", ""},
		{"example.com/none", "", "", "does not require"},
	} {
		v, h, err := Pinned(gomod, gosum, c.mod)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want %q", c.mod, err, c.err)
			}
			continue
		}
		if err != nil || v.Version != c.ver || h != c.h1 {
			t.Errorf("%s: %v %s %v", c.mod, v, h, err)
		}
	}
	if _, _, err := Pinned([]byte("module m\nrequire example.com/k v1.3.0\n"), gosum, "example.com/k"); err == nil || !strings.Contains(err.Error(), "no h1: hash") {
		t.Errorf("missing go.sum line: %v", err)
	}
	// nodeboot's own files pin the default kernel.
	v, h, err := Pinned(nodeboot.GoMod, nodeboot.GoSum, "github.com/gokrazy/kernel.amd64")
	if err != nil || !strings.HasPrefix(h, "h1:") || v.Version == "" {
		t.Errorf("nodeboot's kernel pin: %v %s %v", v, h, err)
	}
}
