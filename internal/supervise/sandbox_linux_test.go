package supervise

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/sandbox"
)

// The starter runs the test binary itself as the sandbox helper, as PID 1
// runs /init: init runs before TestMain, and the helper never returns.
func init() {
	if len(os.Args) > 1 && os.Args[1] == sandbox.HelperArg {
		sandbox.HelperMain()
	}
}

// TestSandboxedStart drives the real starter: helper in new namespaces and
// a cgroup, output through the pipes, and node's own exit status (not the
// helper's) back through the status pipe.
func TestSandboxedStart(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the sandbox needs root")
	}
	root := "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
		root = "/sys/fs/cgroup/unified" // hybrid hosts
		if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
			t.Skip("no cgroup2 on this host")
		}
	}
	old := cgroupRoot
	cgroupRoot = root
	t.Cleanup(func() { cgroupRoot = old })
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}

	// Not under /tmp, which the sandbox covers with its own.
	base, err := os.MkdirTemp("/var/tmp", "nodeboot-starter-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(base, 0o755)
	t.Cleanup(func() { os.RemoveAll(base) })
	code, state := filepath.Join(base, "code"), filepath.Join(base, "state")
	os.Mkdir(code, 0o755)
	os.Mkdir(state, 0o700)
	os.Chown(state, 1000, 1000)
	app := "nbtest" + strings.TrimPrefix(filepath.Base(base), "nodeboot-starter-test-")
	t.Cleanup(func() { os.Remove(filepath.Join(root, "apps", app)) })

	tests := []struct {
		name, script string
		state        string
		want         string // ExitStatus.String()
		out          string
	}{
		{"exit code", `id -u; exit 3`, state, "exited with status 3", "1000\n"},
		{"signal", `kill -TERM $$`, state, "killed by signal TERM", ""},
		{"setup fails", `exit 0`, filepath.Join(base, "missing"), "the sandbox could not be set up", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewStarter(nil).Start(StartSpec{
				Path: "/bin/sh", Args: []string{"-c", tc.script}, Dir: code, Env: []string{"PATH=/usr/bin:/bin"},
				UID: 1000, GID: 1000,
				Sandbox: &sandbox.Spec{App: app, StateDir: tc.state},
			})
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan []byte)
			go func() { b, _ := io.ReadAll(p.Stderr()); errc <- b }()
			out, _ := io.ReadAll(p.Stdout())
			stderr := <-errc
			st := <-p.Exited()
			if !strings.HasPrefix(st.String(), tc.want) || string(out) != tc.out {
				t.Errorf("%s, output %q; want %s, %q (stderr %q)", st, out, tc.want, tc.out, stderr)
			}
			if tc.name == "setup fails" && !strings.Contains(string(stderr), "sandbox: ") {
				t.Errorf("stderr %q does not say why", stderr)
			}
		})
	}
}
