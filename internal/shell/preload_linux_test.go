package shell

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPreload runs the host's node with the preload in a mount namespace
// where /usr/bin (and so /bin/sh on a merged-/usr host) is an empty tmpfs,
// as an app without "shell": true sees it on the node, and checks each way
// of running a shell: the message comes once, the app's own error is
// unchanged, and a missing program that is not the shell says nothing.
func TestPreload(t *testing.T) {
	host, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed: %v", err)
	}
	dir := t.TempDir()
	node := filepath.Join(dir, "node") // outside /usr/bin, which is covered
	data, err := os.ReadFile(host)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(node, data, 0o755); err != nil {
		t.Fatal(err)
	}
	preload := filepath.Join(dir, "noshell.js")
	if err := os.WriteFile(preload, PreloadJS, 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, script string, withPreload bool) (stdout, stderr string) {
		t.Helper()
		args := []string{"-m", "--propagation", "private", "sh", "-c", `mount -t tmpfs none /usr/bin && exec "$0" "$@"`, node}
		if withPreload {
			args = append(args, "--require="+preload)
		}
		args = append(args, "-e", script)
		cmd := exec.Command("unshare", args...)
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s%s", cmd.Args, err, o.String(), e.String())
		}
		return o.String(), e.String()
	}
	const msg = "nodeboot: this app ran a shell command"
	for name, script := range map[string]string{
		"exec":           `require('child_process').exec('echo hi | tr a-z A-Z', (err) => console.log(err.code))`,
		"execSync twice": `for (let i = 0; i < 2; i++) try { require('child_process').execSync('echo hi') } catch (e) { console.log(e.code) }`,
		"spawn shell":    `require('child_process').spawn('ls', { shell: true }).on('error', (e) => console.log(e.code))`,
		"spawnSync":      `console.log(require('child_process').spawnSync('ls', { shell: true }).error.code)`,
		"esm import":     `import('node:child_process').then((m) => { try { m.execSync('x') } catch (e) { console.log(e.code) } })`,
	} {
		t.Run(name, func(t *testing.T) {
			out, errOut := run(t, script, true)
			if !strings.Contains(out, "ENOENT") {
				t.Errorf("the app's error changed: stdout %q", out)
			}
			if strings.Count(errOut, msg) != 1 || !strings.Contains(errOut, `add "shell": true`) {
				t.Errorf("stderr = %q, want the message once", errOut)
			}
			if _, errOut := run(t, script, false); strings.Contains(errOut, msg) {
				t.Errorf("message without the preload: %q", errOut)
			}
		})
	}
	t.Run("other program", func(t *testing.T) {
		_, errOut := run(t, `require('child_process').execFile('/nonexistent', () => {})`, true)
		if strings.Contains(errOut, msg) {
			t.Errorf("a missing program that is not the shell: %q", errOut)
		}
	})
}
