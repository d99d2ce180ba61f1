package e2e

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// npmRegistry serves the packages `make npm` packed, as an npm registry
// does (packument and tarball), so `npm install -D nodeboot` runs for real:
// npm reads each platform package's os/cpu from its packument and installs
// only the one that fits this host.
func npmRegistry(t *testing.T, tarballs []string) *httptest.Server {
	t.Helper()
	type version map[string]any
	docs := map[string]version{}
	files := map[string]string{}
	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	t.Cleanup(srv.Close)
	for _, tgz := range tarballs {
		b, err := os.ReadFile(tgz)
		if err != nil {
			t.Fatal(err)
		}
		pj := packageJSON(t, tgz)
		var v version
		if err := json.Unmarshal(pj, &v); err != nil {
			t.Fatalf("%s: package.json: %v", tgz, err)
		}
		s512 := sha512.Sum512(b)
		s1 := sha1.Sum(b)
		base := filepath.Base(tgz)
		v["dist"] = map[string]string{
			"tarball":   srv.URL + "/-/" + base,
			"integrity": "sha512-" + base64.StdEncoding.EncodeToString(s512[:]),
			"shasum":    hex.EncodeToString(s1[:]),
		}
		docs[v["name"].(string)] = v
		files[base] = tgz
	}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		if f, ok := strings.CutPrefix(p, "-/"); ok && files[f] != "" {
			http.ServeFile(w, r, files[f])
			return
		}
		v, ok := docs[p]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("content-type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"name":      p,
			"dist-tags": map[string]string{"latest": v["version"].(string)},
			"versions":  map[string]any{v["version"].(string): v},
		})
	})
	return srv
}

func packageJSON(t *testing.T, tgz string) []byte {
	t.Helper()
	f, err := os.Open(tgz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no package/package.json: %v", tgz, err)
		}
		if h.Name == "package/package.json" {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// pathWithoutGo is $PATH less every directory holding a go command, so the
// CLI under test cannot fall back to compiling anything.
func pathWithoutGo(t *testing.T) string {
	t.Helper()
	var keep []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(d, "go")); err == nil {
			continue
		}
		keep = append(keep, d)
	}
	p := strings.Join(keep, string(os.PathListSeparator))
	for _, need := range []string{"node", "npm", "npx", "qemu-system-x86_64"} {
		if !onPath(p, need) {
			t.Fatalf("%s shares a directory with go on PATH; this test needs them apart", need)
		}
	}
	if onPath(p, "go") {
		t.Fatal("go is still on the PATH")
	}
	return p
}

func onPath(path, name string) bool {
	for _, d := range filepath.SplitList(path) {
		if fi, err := os.Stat(filepath.Join(d, name)); err == nil && !fi.IsDir() {
			return true
		}
	}
	return false
}

// TestNPMInstall is what a Node developer does: `npm install -D nodeboot`
// into a fresh project, then `npx nodeboot build` and `npx nodeboot run`,
// with no go command on the PATH and an empty HOME (so node and the kernel
// are downloaded again, from the npm registry npm is configured for and the
// module proxy), and gets the app's answer over HTTP. The packages are the
// ones `make npm` packs, with every platform's CLI cross-compiled (darwin
// included) and PID 1 embedded.
func TestNPMInstall(t *testing.T) {
	requireQEMU(t)
	for _, tool := range []string{"node", "npm", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the npm test needs %s: %v", tool, err)
		}
	}
	root := repoRoot(t)
	dist := t.TempDir()
	mk := exec.Command("make", "-s", "npm", "NPM_VERSION=0.0.0-test", "NPM_OUT="+dist)
	mk.Dir = root
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make npm: %v\n%s", err, out)
	}
	tarballs, _ := filepath.Glob(filepath.Join(dist, "*.tgz"))
	if len(tarballs) != 5 {
		t.Fatalf("make npm wrote %v, want the launcher and 4 platform packages", tarballs)
	}
	reg := npmRegistry(t, tarballs)

	// The registry npm is configured for (node comes from there); an empty
	// HOME would lose a registry set in ~/.npmrc, so it is passed on.
	regOut, err := exec.Command("npm", "config", "get", "registry").Output()
	if err != nil {
		t.Fatalf("npm config get registry: %v", err)
	}
	home := t.TempDir()
	env := []string{
		"PATH=" + pathWithoutGo(t),
		"HOME=" + home,
		"npm_config_registry=" + strings.TrimSpace(string(regOut)),
		"npm_config_update_notifier=false",
		"TMPDIR=" + os.TempDir(),
	}
	for _, kv := range os.Environ() {
		// The proxy settings of this machine, if any (not GO*: a Node
		// developer has none, and the CLI carries its builder's GOPROXY).
		if k, _, _ := strings.Cut(kv, "="); strings.HasSuffix(strings.ToLower(k), "_proxy") {
			env = append(env, kv)
		}
	}

	proj := t.TempDir()
	copyDir(t, filepath.Join(root, "examples", "hello"), proj)
	os.RemoveAll(filepath.Join(proj, ".nodeboot"))
	// A node the host's does not satisfy, so it is fetched from the registry.
	pj := `{"name":"hello","version":"1.0.0","main":"server.js","engines":{"node":"22"},"scripts":{"image":"nodeboot build . -o out"}}`
	if err := os.WriteFile(filepath.Join(proj, "package.json"), []byte(pj), 0o644); err != nil {
		t.Fatal(err)
	}
	npm := func(args ...string) string {
		t.Helper()
		c := exec.Command(args[0], args[1:]...)
		c.Dir = proj
		c.Env = env
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	// Only the install itself uses the test's registry.
	npm("npm", "install", "-D", "nodeboot", "--registry="+reg.URL, "--no-audit", "--no-fund", "--fetch-retries=0")
	if _, err := os.Stat(filepath.Join(proj, "node_modules", "@nodeboot", "linux-x64", "bin", "nodeboot")); err != nil {
		t.Fatalf("the linux-x64 package was not installed: %v", err)
	}
	for _, other := range []string{"linux-arm64", "darwin-arm64", "darwin-x64"} {
		if _, err := os.Stat(filepath.Join(proj, "node_modules", "@nodeboot", other)); err == nil {
			t.Errorf("@nodeboot/%s was installed on linux-x64", other)
		}
	}

	out := npm("npm", "run", "image")
	var m struct {
		Init, Node, Kernel struct{ Source string }
	}
	b, err := os.ReadFile(filepath.Join(proj, "out", "manifest.json"))
	if err != nil {
		t.Fatalf("npm run image: %v\n%s", err, out)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Init.Source != "embedded in the CLI" || !strings.HasPrefix(m.Kernel.Source, "module:") || m.Node.Source == "host" {
		t.Errorf("manifest sources: init %q, kernel %q, node %q", m.Init.Source, m.Kernel.Source, m.Node.Source)
	}
	if _, err := os.Stat(filepath.Join(home, ".cache", "nodeboot", "modules")); err != nil {
		t.Errorf("the kernel was not fetched into the empty HOME's cache: %v", err)
	}

	// npx nodeboot run: Ctrl-C goes to the whole process group, as a
	// terminal sends it, through npx and the launcher to the binary.
	// Node 22 makes an initramfs that needs more than run's default 512M to unpack.
	cmd := exec.Command("npx", "nodeboot", "run", "--memory", "1G", ".")
	cmd.Dir = proj
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var console lockedBuffer
	cmd.Stdout, cmd.Stderr = &console, &console
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill := func() { once.Do(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }) }
	t.Cleanup(kill)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ready := regexp.MustCompile(`ready: (http://127\.0\.0\.1:\d+/)`)
	var url string
	deadline := time.After(10 * time.Minute)
	for url == "" {
		select {
		case err := <-done:
			t.Fatalf("npx nodeboot run ended before the app was ready: %v\n%s", err, tail(console.String(), 60))
		case <-deadline:
			t.Fatalf("not ready after 10 minutes\n%s", tail(console.String(), 60))
		case <-time.After(200 * time.Millisecond):
			if mm := ready.FindStringSubmatch(console.String()); mm != nil {
				url = mm[1]
			}
		}
	}
	if body := get(t, url); !strings.Contains(body, "hello from hello (node v22.") {
		t.Errorf("GET %s = %q, want hello on a downloaded node 22", url, body)
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	select {
	case err := <-done:
		// npx runs the bin through sh, which dies of the Ctrl-C itself, and
		// npm then reports the signal: an interrupted exit is npx's, not
		// nodeboot's (its clean power-off is checked below).
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGINT) {
			t.Errorf("npx nodeboot run after Ctrl-C: %v\n%s", err, tail(console.String(), 40))
		}
	case <-time.After(3 * time.Minute):
		t.Fatalf("npx nodeboot run did not stop after Ctrl-C\n%s", tail(console.String(), 40))
	}
	if !strings.Contains(console.String(), "system halted: power off") {
		t.Errorf("no clean power-off after Ctrl-C\n%s", tail(console.String(), 40))
	}
}
