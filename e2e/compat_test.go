package e2e

import (
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
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// compatModules installs e2e/testdata/compat's pinned packages: see
// lockedModules.
func compatModules(t *testing.T) string {
	t.Helper()
	return lockedModules(t, "compat")
}

// lockedModules installs the pinned packages of e2e/testdata/<name> with
// npm (npm ci from its lockfile, through the user's npm configuration) once
// per lockfile and host node, in the user cache dir: better-sqlite3
// compiles against the host's node, which takes minutes on a small machine.
// It returns the directory holding node_modules.
func lockedModules(t *testing.T, name string) string {
	t.Helper()
	src := filepath.Join(repoRoot(t), "e2e", "testdata", name)
	lock, err := os.ReadFile(filepath.Join(src, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := os.ReadFile(filepath.Join(src, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	nodeV, err := exec.Command("node", "--version").Output()
	if err != nil {
		t.Fatalf("the compatibility suite needs the host's node and npm: %v", err)
	}
	h := sha256.New()
	h.Write(lock)
	h.Write(pkg)
	h.Write(nodeV)
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "nodeboot", "e2e-"+name, hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", tmp, err, out)
	}
	t.Logf("npm ci took %s", time.Since(start).Round(time.Second))
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

type checkResult struct {
	OK    bool            `json:"ok"`
	Value json.RawMessage `json:"value"`
	Error string          `json:"error"`
}

func getChecks(t *testing.T, port int) map[string]checkResult {
	t.Helper()
	// The checks hash, resize and compile under TCG: minutes on a busy host.
	c := &http.Client{Timeout: 4 * time.Minute}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/checks", port))
	if err != nil {
		t.Fatalf("GET /checks: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /checks: %s %v: %s", resp.Status, err, body)
	}
	var res map[string]checkResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return res
}

// TestCompat is the compatibility suite (issue 17): in one boot, ordinary
// npm packages run unchanged (sharp resizing with its prebuilt libvips,
// argon2, better-sqlite3 on /data, ws, undici and fetch, fork and
// execFile(process.execPath), worker_threads, full ICU, webcrypto), an app
// with "shell": true runs shell commands as on Debian, and one without it
// fails as docs/sandbox.md says: ENOENT, and the console says why, once.
func TestCompat(t *testing.T) {
	requireQEMU(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("the pinned prebuilt packages are installed for the host; the suite boots amd64")
	}
	root := repoRoot(t)
	mods := compatModules(t)
	proj := t.TempDir()
	app := filepath.Join(proj, "compat")
	copyDir(t, filepath.Join(root, "e2e", "testdata", "compat"), app)
	run(t, "cp", "-a", filepath.Join(mods, "node_modules"), app)
	copyDir(t, filepath.Join(root, "e2e", "testdata", "shellapp"), filepath.Join(proj, "shellapp"))
	cfg := `{
  "hostname": "compat",
  "apps": [
    {"name": "compat", "path": "./compat", "port": 9000},
    {"name": "shellapp", "path": "./shellapp", "port": 9100, "shell": true}
  ]
}`
	if err := os.WriteFile(filepath.Join(proj, "nodeboot.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var buildLog strings.Builder
	if err := cli.Run(ctx, []string{"build", proj, "-o", out}, &buildLog, &buildLog); err != nil {
		t.Fatalf("build: %v\n%s", err, buildLog.String())
	}
	m, err := build.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("the manifest lists the shell", func(t *testing.T) {
		if m.Shell == nil || m.Shell.Version == "" || len(m.Shell.SHA256) != 64 {
			t.Errorf("manifest shell = %+v", m.Shell)
		}
		found := false
		for _, l := range m.Licenses {
			found = found || (l.Component == "busybox" && strings.HasPrefix(l.License, "GPL-2.0"))
		}
		if !found {
			t.Errorf("busybox's licence is not listed: %+v", m.Licenses)
		}
	})

	compatPort, _ := vm.FreePort()
	shellPort, _ := vm.FreePort()
	v, err := vm.Start(ctx, vm.Config{
		Kernel:   filepath.Join(out, "vmlinuz"),
		Initrd:   filepath.Join(out, m.Initramfs.Name),
		Cmdline:  m.Cmdline,
		Memory:   "1G",
		Forwards: []vm.Forward{{Host: compatPort, Guest: 9000}, {Host: shellPort, Guest: 9100}},
		Console:  consoleLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	bootCtx, bootCancel := context.WithTimeout(ctx, 5*time.Minute)
	defer bootCancel()
	for _, marker := range []string{contract.AppListening("compat", 9000), contract.AppListening("shellapp", 9100)} {
		if _, err := v.WaitFor(bootCtx, marker, 0); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("npm packages run unchanged", func(t *testing.T) {
		res := getChecks(t, compatPort)
		for name, r := range res {
			if !r.OK {
				t.Errorf("%s failed in the guest: %s", name, r.Error)
			}
		}
		for name, want := range map[string]string{
			"sharp":        `"jpeg 16x12"`,
			"argon2":       `{"prefix":"$argon2id","ok":true,"bad":false}`,
			"sqlite":       `{"file":"/data/state/compat/compat.db","sum":42,"count":1}`,
			"ws":           `"echo:ping"`,
			"fetch":        `["/x","/xy"]`,
			"fork":         `"over ipc"`,
			"execFileNode": `"42"`,
			"worker":       `"2d711642"`,
			"intl":         `{"de":"Januar","ja":"￥1,234","tz":"17","icu":true}`,
			"webcrypto":    `{"verified":true,"digest":"218632ee","uuid":36}`,
			"noShell":      `"ENOENT"`,
		} {
			if got := string(res[name].Value); got != want {
				t.Errorf("%s = %s, want %s", name, got, want)
			}
		}
	})

	t.Run("without the opt-in the console says why exec failed, once", func(t *testing.T) {
		getChecks(t, compatPort) // exec fails a second time
		const msg = "nodeboot: this app ran a shell command"
		waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if _, err := v.WaitFor(waitCtx, msg, 0); err != nil {
			t.Fatal(err)
		}
		con := v.Console()
		if n := strings.Count(con, msg); n != 1 {
			t.Errorf("the message came %d times, want once", n)
		}
		for _, want := range []string{`compat[err]: ` + msg, `add "shell": true to it in nodeboot.json`} {
			if !strings.Contains(con, want) {
				t.Errorf("console lacks %q", want)
			}
		}
	})

	t.Run("with shell: true exec behaves as on Debian", func(t *testing.T) {
		res := getChecks(t, shellPort)
		for name, r := range res {
			if !r.OK {
				t.Errorf("%s failed in the guest: %s", name, r.Error)
			}
		}
		for name, want := range map[string]string{
			"exec":       `"HI\n"`,
			"execSync":   `"1\n1001\n"`,
			"spawnShell": `"3 exit 0"`,
			"sandboxed":  `"1\n"`,
		} {
			if got := string(res[name].Value); got != want {
				t.Errorf("%s = %s, want %s", name, got, want)
			}
		}
		if strings.Contains(v.Console(), "shellapp[err]: nodeboot: this app ran a shell command") {
			t.Error("the app with a shell was told it has none")
		}
	})
}

// TestCompatOldCPU boots the suite's image on QEMU's old default CPU,
// qemu64 (no SSE4.2, no POPCNT): sharp's prebuilt libvips then dies of
// SIGILL, and the console says that the app's code used an instruction this
// CPU does not have, naming the library (issue 17). The suite itself runs
// on the CPU `nodeboot run` gives, where the same image works.
func TestCompatOldCPU(t *testing.T) {
	requireQEMU(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("qemu64 is an x86-64 model")
	}
	root := repoRoot(t)
	mods := compatModules(t)
	app := filepath.Join(t.TempDir(), "compat")
	copyDir(t, filepath.Join(root, "e2e", "testdata", "compat"), app)
	run(t, "cp", "-a", filepath.Join(mods, "node_modules"), app)
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var buildLog strings.Builder
	if err := cli.Run(ctx, []string{"build", app, "-o", out}, &buildLog, &buildLog); err != nil {
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
		Memory:   "1G",
		CPU:      "qemu64",
		Forwards: []vm.Forward{{Host: port, Guest: 8080}},
		Console:  consoleLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	bootCtx, bootCancel := context.WithTimeout(ctx, 5*time.Minute)
	defer bootCancel()
	if _, err := v.WaitFor(bootCtx, contract.AppListening("compat", 8080), 0); err != nil {
		t.Fatal(err)
	}
	// The first check loads sharp: node dies in the middle of the request.
	c := &http.Client{Timeout: 2 * time.Minute}
	if resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/checks", port)); err == nil {
		resp.Body.Close()
	}
	const want = "compat: killed by signal ILL: its code used an instruction this CPU does not have (in libvips"
	if _, err := v.WaitFor(bootCtx, want, 0); err != nil {
		t.Fatal(err)
	}
}
