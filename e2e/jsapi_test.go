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
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// TestJSAPI boots one image with two apps that use require('nodeboot')
// from the image: a worker with "network": "none" and "health": "ready",
// and a web app with a watchdog, an onShutdown handler and locks. In that
// boot: the worker is ready and reads its secret set from the CLI, which
// the web app cannot read and which appears in no log or status; the web
// app finds the worker with service(); a lock delays a deploy until its
// release (another app gets the deploy event, the handler's cause is
// "deploy"), and a lock held past maxLockSeconds is overridden while
// onShutdown finishes an in-flight request; the node running short of
// memory is an event; a hung event loop is restarted by the watchdog.
func TestJSAPI(t *testing.T) {
	requireQEMU(t)
	root := repoRoot(t)
	proj := t.TempDir()
	copyDir(t, filepath.Join(root, "e2e", "testdata", "jsapi"), proj)
	cfg := `{
  "hostname": "jsapi",
  "apps": [
    {"name": "web", "path": "./web", "port": 8080, "maxLockSeconds": 5},
    {"name": "worker", "path": "./worker", "health": "ready", "sandbox": {"network": "none"}}
  ]
}`
	if err := os.WriteFile(filepath.Join(proj, "nodeboot.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "out")
	var buildLog strings.Builder
	if err := cli.Run(ctx, []string{"build", proj, "-o", out}, &buildLog, &buildLog); err != nil {
		t.Fatalf("build: %v\n%s", err, buildLog.String())
	}
	man, err := build.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	webPort, _ := vm.FreePort()
	apiPort, _ := vm.FreePort()
	v, err := vm.Start(ctx, vm.Config{
		Kernel:   filepath.Join(out, "vmlinuz"),
		Initrd:   filepath.Join(out, man.Initramfs.Name),
		Cmdline:  man.Cmdline,
		Memory:   "1G",
		Forwards: []vm.Forward{{Host: webPort, Guest: 8080}, {Host: apiPort, Guest: cli.APIPort}},
		Console:  consoleLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	// waitFrom waits for marker after console offset from (a dead guest
	// fails at once).
	waitFrom := func(marker string, from int) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 4*time.Minute)
		defer wcancel()
		if _, err := v.WaitFor(wctx, marker, from); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(marker string) { t.Helper(); waitFrom(marker, 0) }
	mark := func() int { return len(v.Console()) }
	node := fmt.Sprintf("127.0.0.1:%d", apiPort)
	web := fmt.Sprintf("http://127.0.0.1:%d", webPort)
	wait("web: web up web")
	wait("worker: worker ready as worker")
	wait(contract.AppListening("web", 8080))
	wait("management API on https port") // it starts after the apps listen
	status := func() *contract.Status {
		t.Helper()
		o, err := nodeboot(ctx, proj, "status", node, "--json")
		if err != nil {
			t.Fatalf("status: %v\n%s", err, o)
		}
		var st contract.Status
		if err := json.Unmarshal([]byte(o), &st); err != nil {
			t.Fatalf("%v\n%s", err, o)
		}
		return &st
	}
	// The API starts a little after the apps.
	for i := 0; ; i++ {
		if _, err := nodeboot(ctx, proj, "status", node); err == nil {
			break
		} else if i > 60 {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
	}
	if w := status().App("worker"); w == nil || !w.Ready || w.Health != "ready" {
		t.Errorf("worker status: %+v", w)
	}

	const secret = "e2e-secret-7f3a9c"
	t.Run("secret", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "token")
		os.WriteFile(f, []byte(secret), 0o600)
		if o, err := nodeboot(ctx, proj, "secret", "set", node, "worker", "token", "--file", f); err != nil {
			t.Fatalf("secret set: %v\n%s", err, o)
		}
		sum := sha256.Sum256([]byte(secret))
		wait("worker secret sha256 " + hex.EncodeToString(sum[:]))
		if o, err := nodeboot(ctx, proj, "secret", "ls", node, "worker"); err != nil || strings.TrimSpace(o) != "token" {
			t.Errorf("secret ls: %v %q", err, o)
		}
		// The web app asks for the same name: its own namespace has none.
		if got := get(t, web+"/secret?name=token"); !strings.HasPrefix(got, "not_found") {
			t.Errorf("web read the worker's secret: %q", got)
		}
		// And it cannot reach the worker's socket to ask as the worker.
		if got := get(t, web+"/other-socket"); got != "ENOENT" {
			t.Errorf("the worker's socket dir from web: %q", got)
		}
	})

	t.Run("worker deployed through its readiness", func(t *testing.T) {
		from := mark()
		o, err := nodeboot(ctx, proj, "deploy", node, filepath.Join(proj, "worker"), "--app", "worker")
		if err != nil {
			t.Fatalf("deploy of a worker without a port: %v\n%s", err, o)
		}
		// The new process was ready, and reads its secret again.
		waitFrom("worker: worker ready as worker", from)
		sum := sha256.Sum256([]byte(secret))
		waitFrom("worker secret sha256 "+hex.EncodeToString(sum[:]), from)
		if w := status().App("worker"); w == nil || !w.Ready || !strings.HasPrefix(w.Version, "sha256:") {
			t.Errorf("worker after its deploy: %+v", w)
		}
	})

	t.Run("service", func(t *testing.T) {
		got := get(t, web+"/service?name=worker")
		if !strings.Contains(got, `"name":"worker"`) || !strings.Contains(got, `"ready":true`) {
			t.Errorf("service(worker): %s", got)
		}
	})

	t.Run("bad requests on the socket", func(t *testing.T) {
		want := "bad_request bad_request bad_request too_large then info of web"
		if got := get(t, web+"/garbage"); got != want {
			t.Errorf("garbage on the app's socket: %q, want %q", got, want)
		}
	})

	t.Run("info says the network and clock state", func(t *testing.T) {
		// Events are not replayed: info() says what the "network" and
		// "clock" events announced to an app that missed them. The
		// network is up (the API answered through it); this node has
		// no NTP server to reach, so the clock is whatever it is, but
		// said consistently.
		var i struct {
			Clock *struct {
				Synced   *bool   `json:"synced"`
				Source   *string `json:"source"`
				LastSync string  `json:"lastSync"`
			} `json:"clock"`
			Network *struct {
				Up        bool   `json:"up"`
				Interface string `json:"interface"`
			} `json:"network"`
		}
		body := get(t, web+"/info")
		if err := json.Unmarshal([]byte(body), &i); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		if n := i.Network; n == nil || !n.Up || n.Interface != "eth0" {
			t.Errorf("info().network: %s", body)
		}
		if c := i.Clock; c == nil || c.Synced == nil || c.Source == nil || *c.Synced != (c.LastSync != "") {
			t.Errorf("info().clock: %s", body)
		}
	})

	t.Run("memory pressure event", func(t *testing.T) {
		// The web app fills the node's RAM from a child and answers with
		// the first "memory" event it gets (internal/mempressure: the
		// default kernel has neither PSI nor memory cgroups, so it is
		// the node-wide MemAvailable check).
		c := &http.Client{Timeout: 4 * time.Minute}
		resp, err := c.Get(web + "/hog")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var ev struct{ Type, App, Message string }
		if err := json.Unmarshal(b, &ev); err != nil || ev.Type != "memory" || ev.App != "" || !strings.HasPrefix(ev.Message, "node memory low: ") {
			t.Fatalf("/hog answered %q (%v), want the node's memory event", b, err)
		}
		wait("node memory low: ")
	})

	deploy := func(version string) chan error {
		os.WriteFile(filepath.Join(proj, "web", "version.txt"), []byte(version), 0o644)
		done := make(chan error, 1)
		go func() {
			o, err := nodeboot(ctx, proj, "deploy", node, filepath.Join(proj, "web"), "--app", "web")
			if err != nil {
				err = fmt.Errorf("%v\n%s", err, o)
			}
			done <- err
		}()
		return done
	}

	var deployed int
	t.Run("lock delays a deploy until release", func(t *testing.T) {
		if got := get(t, web+"/lock?why=release"); got != "locked 5" {
			t.Fatalf("lock: %q", got)
		}
		// maxLockSeconds is 5: released before it.
		deployed = mark()
		done := deploy("v2")
		waitFrom("deploy of web waits for the lock", deployed)
		if a := status().App("web"); a == nil || len(a.Locks) != 1 || a.Locks[0].Reason != "e2e release" {
			t.Errorf("status while locked: %+v", a)
		}
		select {
		case err := <-done:
			t.Fatalf("the deploy did not wait for the lock: %v", err)
		default:
		}
		if got := get(t, web+"/release"); got != "released" {
			t.Fatalf("release: %q", got)
		}
		if err := <-done; err != nil {
			t.Fatalf("deploy: %v", err)
		}
		if got := get(t, web+"/"); got != "web v2" {
			t.Errorf("after the deploy: %q", got)
		}
		if strings.Contains(v.Console(), `lock "e2e release" overridden`) {
			t.Error("the released lock was overridden")
		}
		// The other app heard of it through events(), and web's
		// onShutdown handler was told why it stopped.
		waitFrom("worker: worker event deploy web: app web now runs version ", deployed)
		waitFrom("web: web draining for deploy", deployed)
	})

	t.Run("an overridden lock and onShutdown", func(t *testing.T) {
		// The new version has registered its onShutdown handler.
		waitFrom("web: web up web", deployed)
		deployed = mark()
		if got := get(t, web+"/lock?why=forever"); got != "locked 5" {
			t.Fatalf("lock: %q", got)
		}
		slow := make(chan string, 1)
		go func() {
			c := &http.Client{Timeout: 2 * time.Minute}
			resp, err := c.Get(web + "/slow?ms=12000")
			if err != nil {
				slow <- err.Error()
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			slow <- string(b)
		}()
		done := deploy("v3")
		if err := <-done; err != nil {
			t.Fatalf("deploy: %v", err)
		}
		// The in-flight request got its whole answer: the stop waited.
		if got := <-slow; got != "slow answer complete" {
			t.Errorf("in-flight request: %q", got)
		}
		waitFrom(`app web: lock "e2e forever" overridden after maxLockSeconds`, deployed)
		waitFrom("web: web drained", deployed)
		if got := get(t, web+"/"); got != "web v3" {
			t.Errorf("after the deploy: %q", got)
		}
		if a := status().App("web"); a == nil || !strings.Contains(a.LastLockOverride, `"e2e forever"`) {
			t.Errorf("status does not say the lock was overridden: %+v", a)
		}
	})

	t.Run("watchdog", func(t *testing.T) {
		waitFrom("web: web up web", deployed)
		before := status().App("web")
		from := mark()
		get(t, web+"/hang")
		waitFrom("app web: watchdog: no keep-alive", from)
		for i := 0; ; i++ {
			a := status().App("web")
			if a != nil && a.WatchdogRestarts == 1 && a.PID != 0 && a.PID != before.PID && a.State == "running" {
				break
			}
			if i > 60 {
				t.Fatalf("web after its watchdog: %+v", a)
			}
			time.Sleep(2 * time.Second)
		}
		human, _ := nodeboot(ctx, proj, "status", node)
		if !strings.Contains(human, "1 watchdog restart(s)") {
			t.Errorf("status:\n%s", human)
		}
	})

	// The secret's value is in no log and no status.
	st, _ := nodeboot(ctx, proj, "status", node, "--json")
	logs, _ := nodeboot(ctx, proj, "logs", node, "worker")
	for what, s := range map[string]string{"console": v.Console(), "status": st, "logs": logs} {
		if strings.Contains(s, secret) {
			t.Errorf("the secret's value is in the %s", what)
		}
	}
}
