package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
	"pault.ag/go/debian/control"
	"pault.ag/go/debian/version"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/debian"
	"github.com/nodeboot/nodeboot/internal/noderuntime"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// nodeTestSource returns a directory holding Node.js's own test/common,
// test/fixtures and test/parallel, and the upstream version they belong to.
// Node's tests are not on npm: they come from the nodejs source package of
// the Debian archive apt is configured for (its orig tarball, whose SHA-256
// the suite's signed Release vouches for through Sources.xz), extracted once
// into the user cache dir.
func nodeTestSource(t *testing.T, ctx context.Context) (dir, upstream string) {
	t.Helper()
	a, err := debian.HostArchive()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := a.Release(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const idx = "main/source/Sources.xz"
	sum, ok := rel.Files[idx]
	if !ok {
		t.Fatalf("the Release of %s at %s lists no %s", a.Suite, a.URL, idx)
	}
	raw := httpGetVerified(t, ctx, a.URL+"/dists/"+a.Suite+"/"+idx, sum.SHA256, sum.Size)
	xr, err := xz.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	pr, err := control.NewParagraphReader(xr, nil)
	if err != nil {
		t.Fatal(err)
	}
	var best *control.Paragraph
	var bestV version.Version
	for {
		p, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", idx, err)
		}
		if p.Values["Package"] != "nodejs" {
			continue
		}
		v, err := version.Parse(p.Values["Version"])
		if err != nil {
			continue
		}
		if best == nil || version.Compare(v, bestV) > 0 {
			best, bestV = p, v
		}
	}
	if best == nil {
		t.Fatalf("%s/dists/%s/%s has no nodejs source package", a.URL, a.Suite, idx)
	}
	upstream = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+`).FindString(bestV.Version)
	var origName, origSum string
	var origSize int64
	for _, line := range strings.Split(best.Values["Checksums-Sha256"], "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && strings.HasSuffix(f[2], ".orig.tar.xz") {
			origSum, origName = f[0], f[2]
			fmt.Sscan(f[1], &origSize)
		}
	}
	if origName == "" || upstream == "" {
		t.Fatalf("nodejs %s: no orig tarball or upstream version in %s", bestV, idx)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir = filepath.Join(cache, "nodeboot", "e2e-nodetests", origSum[:16])
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, upstream
	}
	t.Logf("fetching %s (%d MiB) from the Debian archive", origName, origSize>>20)
	tarball := httpGetVerified(t, ctx, a.URL+"/"+best.Values["Directory"]+"/"+origName, origSum, origSize)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "tar", "-xJ", "-C", tmp, "--strip-components=1", "--wildcards",
		"*/test/common/*", "*/test/fixtures/*", "*/test/parallel/*")
	cmd.Stdin = bytes.NewReader(tarball)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extracting %s: %v\n%s", origName, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return dir, upstream
}

func httpGetVerified(t *testing.T, ctx context.Context, url, sha string, size int64) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, size+1))
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	h := sha256.Sum256(b)
	if int64(len(b)) != size || hex.EncodeToString(h[:]) != sha {
		t.Fatalf("GET %s: %d bytes with SHA-256 %x, the signed index says %d bytes, %s", url, len(b), h, size, sha)
	}
	return b
}

// nodeTestList is what the measurement runs: every test/parallel file about
// child processes, process, fs and pipes (the OS boundary), and every tenth
// of the others, sorted, as a wider sample. NODEBOOT_NODE_TESTS, a regular
// expression, narrows it (to look at a few tests again).
func nodeTestList(t *testing.T, parallel string) (boundary, sample []string) {
	t.Helper()
	ents, err := os.ReadDir(parallel)
	if err != nil {
		t.Fatal(err)
	}
	var only *regexp.Regexp
	if s := os.Getenv("NODEBOOT_NODE_TESTS"); s != "" {
		only = regexp.MustCompile(s)
	}
	boundaryRE := regexp.MustCompile(`^test-(child-process|process|fs|pipe)-`)
	i := 0
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, "test-") || !(strings.HasSuffix(n, ".js") || strings.HasSuffix(n, ".mjs")) {
			continue
		}
		if boundaryRE.MatchString(n) {
			if only == nil || only.MatchString(n) {
				boundary = append(boundary, n)
			}
			continue
		}
		if i%10 == 0 && (only == nil || only.MatchString(n)) {
			sample = append(sample, n)
		}
		i++
	}
	return boundary, sample
}

type nodeTestReport struct {
	Node    string `json:"node"`
	Total   int    `json:"total"`
	Done    int    `json:"done"`
	Seconds int    `json:"seconds"`
	Results map[string]struct {
		Status string `json:"status"`
		Code   *int   `json:"code"`
		Signal string `json:"signal"`
		MS     int    `json:"ms"`
		Tail   string `json:"tail"`
	} `json:"results"`
}

// TestNodeSuite measures nodeboot from outside with Node's own tests: the
// OS-boundary part of test/parallel and a wider sample, run file by file by
// the same node binary on the host and inside a booted image (an app with
// "shell": true, e2e/testdata/nodetests), compared. Target: the OS passes
// at least 99 % of what the host passes. The figures and the tests that
// differ go to docs/node-tests.md by hand; the run writes them to
// $NODEBOOT_NODE_TESTS_OUT (default: the user cache dir). An hour or more
// under TCG, so NODEBOOT_LONG only (make node-tests).
func TestNodeSuite(t *testing.T) {
	if os.Getenv("NODEBOOT_LONG") == "" {
		t.Skip("runs Node's own tests on the host and in a guest (an hour or more): NODEBOOT_LONG=1 (make node-tests)")
	}
	requireQEMU(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("boots amd64")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Hour)
	defer cancel()
	src, upstream := nodeTestSource(t, ctx)
	rt, err := noderuntime.Resolve(ctx, noderuntime.Request{Arch: "amd64", Flag: upstream, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node %s (%s), tests from Debian's nodejs %s", rt.Version, rt.Path, upstream)
	boundary, sample := nodeTestList(t, filepath.Join(src, "test", "parallel"))
	tests := append(append([]string{}, boundary...), sample...)
	t.Logf("%d OS-boundary tests, %d in the wider sample", len(boundary), len(sample))

	proj := t.TempDir()
	app := filepath.Join(proj, "nodetests")
	copyDir(t, filepath.Join(repoRoot(t), "e2e", "testdata", "nodetests"), app)
	run(t, "cp", "-a", filepath.Join(src, "test"), app)
	if err := os.WriteFile(filepath.Join(app, "tests.txt"), []byte(strings.Join(tests, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The host first, alone, so that its figures are not those of a
	// machine also running QEMU.
	hostJSON := filepath.Join(t.TempDir(), "host.json")
	hostRun := exec.CommandContext(ctx, rt.Path, "runner.js", "--out", hostJSON)
	hostRun.Dir = app
	hostRun.Env = append(os.Environ(), "NODE_TESTS_TIMEOUT_MS=120000")
	start := time.Now()
	if out, err := hostRun.CombinedOutput(); err != nil {
		t.Fatalf("the host's run: %v\n%s", err, out)
	}
	t.Logf("host run: %s", time.Since(start).Round(time.Second))
	var host nodeTestReport
	readJSON(t, hostJSON, &host)

	cfg := `{"hostname": "nodetests", "apps": [{"name": "nodetests", "path": "./nodetests", "port": 8080, "shell": true,
  "env": {"NODE_TEST_DIR": "/tmp/node-tests", "NODE_TESTS_TIMEOUT_MS": "600000"}, "limits": {"pids": 4096}}]}`
	if err := os.WriteFile(filepath.Join(proj, "nodeboot.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	var buildLog strings.Builder
	if err := cli.Run(ctx, []string{"build", proj, "--node", rt.Path, "-o", out}, &buildLog, &buildLog); err != nil {
		t.Fatalf("build: %v\n%s", err, buildLog.String())
	}
	m, err := build.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := vm.FreePort()
	v, err := vm.Start(ctx, vm.Config{
		Kernel:   filepath.Join(out, "vmlinuz"),
		Initrd:   filepath.Join(out, m.Initramfs.Name),
		Cmdline:  m.Cmdline,
		Memory:   "3G",
		CPUs:     2,
		Forwards: []vm.Forward{{Host: port, Guest: 8080}},
		Console:  consoleLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	bootCtx, bootCancel := context.WithTimeout(ctx, 10*time.Minute)
	defer bootCancel()
	if _, err := v.WaitFor(bootCtx, contract.AppListening("nodetests", 8080), 0); err != nil {
		t.Fatal(err)
	}
	var guest nodeTestReport
	c := &http.Client{Timeout: time.Minute}
	for guest.Done < len(tests) || guest.Total == 0 {
		select {
		case <-v.Done():
			t.Fatalf("the guest ended during the run (%d of %d done): %v", guest.Done, len(tests), v.Err())
		case <-ctx.Done():
			t.Fatalf("the guest's run did not end (%d of %d done)", guest.Done, len(tests))
		case <-time.After(30 * time.Second):
		}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(b, &guest); err != nil {
			t.Fatalf("the guest's report: %v: %.200s", err, b)
		}
	}
	t.Logf("guest run: %d s", guest.Seconds)

	report := compareNodeTests(boundary, sample, &host, &guest)
	outPath := os.Getenv("NODEBOOT_NODE_TESTS_OUT")
	if outPath == "" {
		cache, _ := os.UserCacheDir()
		outPath = filepath.Join(cache, "nodeboot", "e2e-nodetests", "last-run.md")
	}
	raw, _ := json.Marshal(map[string]any{"host": host, "guest": guest})
	_ = os.WriteFile(strings.TrimSuffix(outPath, ".md")+".json", raw, 0o644)
	if err := os.WriteFile(outPath, []byte(report.text), 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("written to %s:\n%s", outPath, report.text)
	if report.hostPass == 0 || float64(report.bothPass) < 0.99*float64(report.hostPass) {
		t.Errorf("the OS passes %d of the %d tests the host passes (%.3f), below 0.99", report.bothPass, report.hostPass, report.ratio())
	}
}

func readJSON(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

type nodeTestComparison struct {
	hostPass, bothPass int
	text               string
}

func (c nodeTestComparison) ratio() float64 {
	if c.hostPass == 0 {
		return 0
	}
	return float64(c.bothPass) / float64(c.hostPass)
}

// compareNodeTests counts, per set and together, what the host passes
// (exit 0, skips included: a test that skips itself on the host for want
// of something skips alike in the guest) and how many of those the guest
// passes, and lists every test whose outcome differs with the end of its
// output in the guest.
func compareNodeTests(boundary, sample []string, host, guest *nodeTestReport) nodeTestComparison {
	var all nodeTestComparison
	var b strings.Builder
	ok := func(s string) bool { return s == "pass" || s == "skip" }
	fmt.Fprintf(&b, "node %s, host vs guest\n\n| set | tests | host passes | OS passes of those | ratio | OS passes, host fails |\n|---|---|---|---|---|---|\n", host.Node)
	var diffs []string
	for _, set := range []struct {
		name  string
		tests []string
	}{{"child-process, process, fs, pipe", boundary}, {"wider sample (every 10th other)", sample}} {
		var c nodeTestComparison
		extra := 0
		for _, n := range set.tests {
			h, g := host.Results[n], guest.Results[n]
			if ok(h.Status) {
				c.hostPass++
				if ok(g.Status) {
					c.bothPass++
				} else {
					diffs = append(diffs, fmt.Sprintf("### %s: host %s, OS %s (code %v, signal %q)\n\n```\n%s\n```\n", n, h.Status, g.Status, derefInt(g.Code), g.Signal, strings.TrimSpace(g.Tail)))
				}
			} else if ok(g.Status) {
				extra++
				diffs = append(diffs, fmt.Sprintf("### %s: host %s, OS %s\n\n```\n%s\n```\n", n, h.Status, g.Status, strings.TrimSpace(h.Tail)))
			}
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %.3f | %d |\n", set.name, len(set.tests), c.hostPass, c.bothPass, c.ratio(), extra)
		all.hostPass += c.hostPass
		all.bothPass += c.bothPass
	}
	fmt.Fprintf(&b, "| all | %d | %d | %d | %.3f | |\n\n", len(boundary)+len(sample), all.hostPass, all.bothPass, all.ratio())
	sort.Strings(diffs)
	b.WriteString(strings.Join(diffs, "\n"))
	all.text = b.String()
	return all
}

func derefInt(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}
