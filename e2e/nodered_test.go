package e2e

import (
	"context"
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

	"github.com/nodeboot/nodeboot/internal/cli"
)

// userRun is `nodeboot run` started in-process as a user starts it, up to
// its "ready:" line.
type userRun struct {
	out    *lockedBuffer
	done   chan error
	cancel context.CancelFunc
	url    string // the first app's, with a trailing slash
}

func startUserRun(t *testing.T, args ...string) *userRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &userRun{out: &lockedBuffer{}, done: make(chan error, 1), cancel: cancel}
	t.Cleanup(cancel)
	go func() { r.done <- cli.Run(ctx, append([]string{"run"}, args...), r.out, r.out) }()
	deadline := time.After(30 * time.Minute)
	for r.url == "" {
		select {
		case err := <-r.done:
			t.Fatalf("run ended before the app was ready: %v\n%s", err, tail(r.out.String(), 80))
		case <-deadline:
			t.Fatalf("the app was not ready after 30 minutes\n%s", tail(r.out.String(), 80))
		case <-time.After(200 * time.Millisecond):
			if m := readyLine.FindStringSubmatch(r.out.String()); m != nil {
				r.url = m[1]
			}
		}
	}
	return r
}

// stop presses Ctrl-C and waits for the guest to power off.
func (r *userRun) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("run did not stop after Ctrl-C\n%s", tail(r.out.String(), 60))
	}
}

// nodeREDFlow is what a user deploys through Node-RED's admin API: an
// http-in node on GET /hello, a template and an http-response node.
const nodeREDFlow = `[
 {"id":"nbtab","type":"tab","label":"nodeboot"},
 {"id":"nbin","type":"http in","z":"nbtab","url":"/hello","method":"get","wires":[["nbtpl"]]},
 {"id":"nbtpl","type":"template","z":"nbtab","field":"payload","fieldType":"msg","format":"text","syntax":"plain","template":"hello from a deployed flow","output":"str","wires":[["nbout"]]},
 {"id":"nbout","type":"http response","z":"nbtab","statusCode":"","headers":{},"wires":[]}
]`

// TestNodeRED runs Node-RED as a new user would (issue 17): `npm install
// node-red` (pinned by e2e/testdata/nodered's lockfile), "start":
// "node-red --userDir data" as Node-RED's docs say, the user dir in
// "persist", and `nodeboot run --format disk --persist`. Node-RED loads
// the Rust addon @node-rs/bcrypt at start; on QEMU's old default CPU it
// crash-looped with SIGILL. The editor answers, a flow deployed through the
// admin API (POST /flows) answers its path, and after a reboot (a second
// run, which rebuilds the image and keeps /data) the flow is still
// deployed and answering. Node-RED starts in about a minute under TCG, so
// the reboot (a second build and boot) runs under NODEBOOT_LONG only: the
// whole took 8 minutes on the 2-core machine at a load of 20.
func TestNodeRED(t *testing.T) {
	requireQEMU(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("the pinned prebuilt addon is installed for the host; the test boots amd64")
	}
	mods := lockedModules(t, "nodered")
	// The run cache (the VM's disk lives there) is this test's own; Go's
	// build cache stays the user's, or PID 1 is compiled from nothing.
	if gocache, err := exec.Command("go", "env", "GOCACHE").Output(); err == nil {
		t.Setenv("GOCACHE", strings.TrimSpace(string(gocache)))
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	proj := t.TempDir()
	copyDir(t, filepath.Join(repoRoot(t), "e2e", "testdata", "nodered"), proj)
	run(t, "cp", "-a", filepath.Join(mods, "node_modules"), proj)
	args := []string{"--format", "disk", "--persist", "--size", "1G", "--memory", "1G", proj}
	c := &http.Client{Timeout: 2 * time.Minute}

	start := time.Now()
	r := startUserRun(t, args...)
	t.Logf("first run ready after %s", time.Since(start).Round(time.Second))
	t.Run("the editor answers", func(t *testing.T) {
		code, body := httpGet(t, c, r.url)
		if code != http.StatusOK || !strings.Contains(body, "Node-RED") {
			t.Errorf("GET / = %d, %.300s", code, body)
		}
		if code, body := httpGet(t, c, r.url+"flows"); code != http.StatusOK || strings.TrimSpace(body) != "[]" {
			t.Errorf("GET /flows on a new node = %d %s, want 200 []", code, body)
		}
	})
	t.Run("a flow deployed through the admin API runs", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, r.url+"flows", strings.NewReader(nodeREDFlow))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Node-RED-Deployment-Type", "full")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST /flows = %s: %s", resp.Status, b)
		}
		waitHello(t, c, r)
	})
	t.Run("the addon loaded: no crash, one start", func(t *testing.T) { checkOneStart(t, r) })
	r.stop(t)
	if t.Failed() {
		t.FailNow()
	}

	t.Run("after a reboot the flow is still deployed and answering", func(t *testing.T) {
		if os.Getenv("NODEBOOT_LONG") == "" {
			t.Skip("the reboot (a second build and boot of Node-RED) runs under NODEBOOT_LONG=1 (make test-long)")
		}
		start := time.Now()
		r := startUserRun(t, args...)
		t.Logf("second run ready after %s", time.Since(start).Round(time.Second))
		if code, body := httpGet(t, c, r.url+"flows"); code != http.StatusOK || !strings.Contains(body, `"nbin"`) {
			t.Errorf("GET /flows after the reboot = %d %.300s", code, body)
		}
		waitHello(t, c, r)
		checkOneStart(t, r)
		r.stop(t)
	})
}

// checkOneStart: Node-RED loads @node-rs/bcrypt at start; on a CPU without
// the instructions it was built for, the app dies of SIGILL and restarts.
func checkOneStart(t *testing.T, r *userRun) {
	t.Helper()
	con := r.out.String()
	if strings.Contains(con, "killed by signal") {
		t.Errorf("the console says an app was killed:\n%s", tail(con, 40))
	}
	if n := strings.Count(con, "nodered: started"); n != 1 {
		t.Errorf("Node-RED started %d times in this boot, want once", n)
	}
}

// waitHello polls the flow's path until it answers: the flow starts a
// moment after the deploy or the app's start.
func waitHello(t *testing.T, c *http.Client, r *userRun) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		code, body := httpGet(t, c, r.url+"hello")
		if code == http.StatusOK && body == "hello from a deployed flow" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /hello = %d %.200s\n%s", code, body, tail(r.out.String(), 40))
		}
		select {
		case err := <-r.done:
			t.Fatalf("run ended: %v\n%s", err, tail(r.out.String(), 60))
		case <-time.After(2 * time.Second):
		}
	}
}

func httpGet(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, fmt.Sprint(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
