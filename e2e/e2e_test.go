// Package e2e boots real images under real QEMU with the real kernel and the
// real node, and checks them from the outside: HTTP through the forwarded
// ports, and the markers PID 1 prints on the serial console.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// requireQEMU skips on a laptop without QEMU, but fails under `make test`
// (NODEBOOT_E2E=1): CI must never pass by skipping the tests that boot.
func requireQEMU(t *testing.T) {
	t.Helper()
	if _, err := vm.FindQEMU("amd64"); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatalf("NODEBOOT_E2E is set but QEMU is missing: %v", err)
		}
		t.Skipf("no QEMU (%v); set NODEBOOT_E2E=1 to make this a failure", err)
	}
	// Say which kernel the images get: NODEBOOT_KERNEL runs the suite on
	// another one, and a pass means little without knowing which.
	if k := os.Getenv("NODEBOOT_KERNEL"); k != "" {
		t.Logf("amd64 images boot --kernel %s (NODEBOOT_KERNEL); arm64 and Pi images keep gokrazy's", k)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// copyDir copies a small source tree (test apps).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// nodeHeaders finds node_api.h for the host's node: next to it (official
// tarballs, distro packages), else from the node-api-headers npm package.
func nodeHeaders(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("the native-addon test needs the host's node: %v", err)
	}
	real, _ := filepath.EvalSymlinks(node)
	for _, d := range []string{filepath.Join(filepath.Dir(real), "..", "include", "node"), "/usr/include/node", "/usr/local/include/node"} {
		if _, err := os.Stat(filepath.Join(d, "node_api.h")); err == nil {
			return d
		}
	}
	dir := t.TempDir()
	run(t, "npm", "install", "--prefix", dir, "--no-audit", "--no-fund", "node-api-headers")
	return filepath.Join(dir, "node_modules", "node-api-headers", "include")
}

// buildAddon compiles a tiny N-API addon into appDir/node_modules/nbaddon,
// linked against libnbextra.so in libDir (outside the app, found via RUNPATH).
func buildAddon(t *testing.T, appDir, libDir string) {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatalf("the native-addon test needs gcc: %v", err)
	}
	src := filepath.Join(repoRoot(t), "e2e", "testdata", "addon")
	mod := filepath.Join(appDir, "node_modules", "nbaddon")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(libDir, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "gcc", "-shared", "-fPIC", "-O2", "-Wl,-soname,libnbextra.so", "-o", filepath.Join(libDir, "libnbextra.so"), filepath.Join(src, "extra.c"))
	run(t, "gcc", "-shared", "-fPIC", "-O2", "-I", nodeHeaders(t), "-o", filepath.Join(mod, "nbaddon.node"),
		filepath.Join(src, "addon.c"), "-L", libDir, "-lnbextra", "-Wl,-rpath,"+libDir)
	if err := os.WriteFile(filepath.Join(mod, "package.json"), []byte(`{"name":"nbaddon","version":"1.0.0","main":"nbaddon.node"}`), 0o644); err != nil {
		t.Fatal(err)
	}
}

// consoleLog keeps the guest console in a file and prints its tail when the
// test fails, so a flake (a guest oops) is told apart from a real failure.
func consoleLog(t *testing.T) io.Writer {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(f.Name())
			lines := strings.Split(string(b), "\n")
			if len(lines) > 80 {
				lines = lines[len(lines)-80:]
			}
			t.Logf("console tail:\n%s", strings.Join(lines, "\n"))
		}
	})
	return f
}

func get(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

// TestBoot builds one image with three apps and checks, in one boot: HTTP
// through the forward, what a Node app expects of its OS (with a native
// addon), restarts with growing delays, and a clean power-off.
func TestBoot(t *testing.T) {
	requireQEMU(t)
	root := repoRoot(t)
	proj := t.TempDir()
	copyDir(t, filepath.Join(root, "examples", "hello"), filepath.Join(proj, "hello"))
	copyDir(t, filepath.Join(root, "e2e", "testdata", "probe"), filepath.Join(proj, "probe"))
	copyDir(t, filepath.Join(root, "e2e", "testdata", "crasher"), filepath.Join(proj, "crasher"))
	buildAddon(t, filepath.Join(proj, "probe"), filepath.Join(t.TempDir(), "lib"))
	cfg := `{
  "hostname": "e2e",
  "env": {"GREETING": "hi"},
  "apps": [
    {"name": "hello", "path": "./hello"},
    {"name": "probe", "path": "./probe", "port": 9000},
    {"name": "crasher", "path": "./crasher", "port": 9100}
  ]
}`
	if err := os.WriteFile(filepath.Join(proj, "nodeboot.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Build through the CLI, as a user would.
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var buildLog strings.Builder
	if err := cli.Run(ctx, []string{"build", proj, "-o", out}, &buildLog, &buildLog); err != nil {
		t.Fatalf("build: %v\n%s", err, buildLog.String())
	}
	m, err := build.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}

	helloPort, _ := vm.FreePort()
	probePort, _ := vm.FreePort()
	v, err := vm.Start(ctx, vm.Config{
		Kernel:   filepath.Join(out, "vmlinuz"),
		Initrd:   filepath.Join(out, m.Initramfs.Name),
		Cmdline:  m.Cmdline,
		Memory:   "1G",
		Forwards: []vm.Forward{{Host: helloPort, Guest: 8080}, {Host: probePort, Guest: 9000}},
		Console:  consoleLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	t.Logf("QEMU accelerator: %s", v.Accel)

	bootCtx, bootCancel := context.WithTimeout(ctx, 3*time.Minute)
	defer bootCancel()
	for _, marker := range []string{contract.AppListening("hello", 8080), contract.AppListening("probe", 9000)} {
		if _, err := v.WaitFor(bootCtx, marker, 0); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("hello answers through the forward", func(t *testing.T) {
		body := get(t, fmt.Sprintf("http://127.0.0.1:%d/", helloPort))
		if !strings.Contains(body, "hello from e2e") {
			t.Errorf("body %q does not greet from hostname e2e", body)
		}
	})

	t.Run("what node apps expect works", func(t *testing.T) {
		var res map[string]struct {
			OK    bool            `json:"ok"`
			Value json.RawMessage `json:"value"`
			Error string          `json:"error"`
		}
		if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/checks", probePort))), &res); err != nil {
			t.Fatal(err)
		}
		for name, r := range res {
			if !r.OK {
				t.Errorf("%s failed in the guest: %s", name, r.Error)
			}
		}
		val := func(name string) string { return strings.Trim(string(res[name].Value), `"`) }
		if a := val("dnsLocalhost"); a != "127.0.0.1" && a != "::1" {
			t.Errorf("dns.lookup(localhost) = %s", a)
		}
		if uid, _ := strconv.Atoi(val("uid")); uid == 0 {
			t.Errorf("the app runs as root")
		}
		if !strings.Contains(val("userInfo"), `"username":"probe"`) {
			t.Errorf("os.userInfo() = %s, want user probe", val("userInfo"))
		}
		if v := val("execNode"); !strings.HasPrefix(v, "v"+m.Node.Version) {
			t.Errorf("child node -v = %q, want v%s", v, m.Node.Version)
		}
		if v := val("addon"); v != "hello from libnbextra" {
			t.Errorf("native addon said %q", v)
		}
		if len(val("randomBytes")) != 32 {
			t.Errorf("crypto.randomBytes = %s", val("randomBytes"))
		}
		env := val("env")
		for _, want := range []string{`"PORT":"9000"`, `"NODE_ENV":"production"`, `"GREETING":"hi"`, `"NODEBOOT_DATA_DIR":"/data/state/probe"`} {
			if !strings.Contains(env, want) {
				t.Errorf("env %s lacks %s", env, want)
			}
		}
		if a := val("args"); a != `["--mode","probe"]` {
			t.Errorf("args from scripts.start = %s", a)
		}
	})

	t.Run("a crashing app is restarted with growing delays", func(t *testing.T) {
		// Wait for the third restart; the system keeps serving meanwhile.
		re := regexp.MustCompile(`crasher.*restarting in ([0-9.]+)(ms|s)`)
		var delays []time.Duration
		deadline := time.Now().Add(2 * time.Minute)
		for len(delays) < 3 && time.Now().Before(deadline) {
			delays = delays[:0]
			for _, mt := range re.FindAllStringSubmatch(v.Console(), -1) {
				d, _ := time.ParseDuration(mt[1] + mt[2])
				delays = append(delays, d)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if len(delays) < 3 {
			t.Fatalf("saw %d restarts of crasher, want ≥3", len(delays))
		}
		for i := 1; i < len(delays); i++ {
			if delays[i] <= delays[i-1] {
				t.Errorf("restart delays do not grow: %v", delays)
			}
		}
		if !strings.Contains(v.Console(), "deliberate failure on start") {
			t.Error("the crasher's error is not on the console")
		}
		get(t, fmt.Sprintf("http://127.0.0.1:%d/", helloPort))
	})

	t.Run("power button shuts down cleanly", func(t *testing.T) {
		if err := v.Powerdown(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-v.Done():
		case <-time.After(2 * time.Minute):
			t.Fatal("guest did not power off")
		}
		con := v.Console()
		// The watchdog was armed (QEMU's i6300esb) and fed through the
		// whole boot: a missed keepalive would have reset the guest.
		for _, want := range []string{"watchdog armed", "power off requested", "all apps stopped", "system halted: power off"} {
			if !strings.Contains(con, want) {
				t.Errorf("console lacks %q", want)
			}
		}
	})
}

// TestRunCommand drives `nodeboot run` as a user does in a terminal: it
// waits for the ready line, fetches the URL, reboots the node through its
// API (run follows the guest into its second boot and says so), then
// presses Ctrl-C and expects a clean power-off and exit status 0.
func TestRunCommand(t *testing.T) {
	requireQEMU(t)
	root := repoRoot(t)
	bin := filepath.Join(t.TempDir(), "nodeboot")
	build := exec.Command("go", "build", "-o", bin, "./cmd/nodeboot")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// Node's libraries from Debian's amd64 packages, as on a Mac
	// (issue 15): every other test boots the host's, so this boot proves
	// the other path, node running on the packages' glibc. run also
	// writes its image as the cached system part plus the app part.
	cmd := exec.Command(bin, "run", filepath.Join(root, "examples", "hello"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "NODEBOOT_LIBRARIES=debian")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuilder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := make(chan string, 1024)
	var console strings.Builder
	go func() {
		defer close(lines)
		buf := make([]byte, 4096)
		var partial string
		for {
			n, err := stdout.Read(buf)
			partial += string(buf[:n])
			for {
				i := strings.IndexByte(partial, '\n')
				if i < 0 {
					break
				}
				lines <- partial[:i]
				partial = partial[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		if t.Failed() {
			t.Logf("stderr:\n%s\nconsole:\n%s", stderr.String(), console.String())
		}
	}()
	ready := regexp.MustCompile(`^ready: (http://127\.0\.0\.1:\d+/)`)
	var url string
	timeout := time.After(4 * time.Minute)
	for url == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("nodeboot run ended before printing ready")
			}
			console.WriteString(l + "\n")
			if m := ready.FindStringSubmatch(l); m != nil {
				url = m[1]
			}
		case <-timeout:
			t.Fatal("no ready line within 4 minutes")
		}
	}
	if body := get(t, url); !strings.Contains(body, "hello from hello") {
		t.Errorf("GET %s = %q", url, body)
	}
	if !strings.Contains(stderr.String(), "amd64 libraries from Debian") {
		t.Errorf("run did not take the libraries from Debian's packages; stderr:\n%s", stderr.String())
	}

	// A reboot the node is asked for: QEMU boots the guest again, run
	// follows it (it stops only a guest that fails boot after boot) and
	// the app answers again. run recorded the VM as node "local" in the
	// app dir's project.
	proj := filepath.Join(root, "examples", "hello")
	for try := 0; ; try++ {
		out, err := exec.Command(bin, "reboot", "local", "--project", proj).CombinedOutput()
		if err == nil {
			break
		}
		if try == 30 {
			t.Fatalf("nodeboot reboot local: %v\n%s", err, out)
		}
		time.Sleep(2 * time.Second) // the API starts after the app listens
	}
	const again = "nodeboot run: the guest boots again (boot 2); it rebooted as asked"
	for deadline := time.Now().Add(5 * time.Minute); ; {
		if strings.Contains(stderr.String(), again) {
			if _, err := (&http.Client{Timeout: 5 * time.Second}).Get(url); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("run did not follow the guest's reboot (%q, then the app answering) within 5 minutes", again)
		}
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("nodeboot run ended at the guest's reboot")
			}
			console.WriteString(l + "\n")
		case <-time.After(time.Second):
		}
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		console.WriteString(l + "\n")
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("nodeboot run after Ctrl-C: %v", err)
	}
	for _, want := range []string{"system halted: reboot", "power button pressed", "hello: exited with status 0", "system halted: power off"} {
		if !strings.Contains(console.String(), want) {
			t.Errorf("console lacks %q", want)
		}
	}
}

// syncBuilder is a strings.Builder a child's output may be copied into
// while the test reads it.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
