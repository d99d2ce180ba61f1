package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// counterJS is the counter app (testdata/counter) with a marker in its
// answer, so the test sees which image serves.
func counterJS(t *testing.T, root, marker string, listen bool) string {
	return counterJSExit(t, root, marker, listen, false)
}

// counterJSExit is counterJS whose app, with exit, exits right after
// counting its start: a crash loop.
func counterJSExit(t *testing.T, root, marker string, listen, exit bool) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "e2e", "testdata", "counter", "server.js"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "JSON.stringify({ state,", fmt.Sprintf("JSON.stringify({ image: %q, state,", marker), 1)
	if !listen {
		// Counts its start, then never answers: a trial that must fail.
		s = strings.Replace(s, "}).listen(Number(process.env.PORT));", "});\nsetInterval(() => {}, 1 << 30);", 1)
	}
	if exit {
		s = strings.Replace(s, "http.createServer(", "process.exit(3);\nhttp.createServer(", 1)
	}
	return s
}

// osStatus asks the node's API for its status.
func osStatus(t *testing.T, c *creds.Creds, apiPort int) contract.Status {
	t.Helper()
	req, err := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d%s", apiPort, contract.PathStatus), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := apiClient(c).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", contract.PathStatus, resp.Status)
	}
	var s contract.Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestUpdate flashes a disk image, then sends it OS updates through
// `nodeboot update`: a good one, committed after its trial boot with /data
// kept, and one whose app never becomes healthy, rolled back by itself.
func TestUpdate(t *testing.T) {
	requireQEMU(t)
	if _, err := vm.FindFirmware(); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	root := repoRoot(t)
	proj := t.TempDir()
	copyDir(t, filepath.Join(root, "e2e", "testdata", "counter"), proj)
	setJS := func(marker string, listen bool) {
		if err := os.WriteFile(filepath.Join(proj, "server.js"), []byte(counterJS(t, root, marker, listen)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	setJS("one", true)
	img := filepath.Join(t.TempDir(), "counter.img")
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	var log strings.Builder
	start := time.Now()
	if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "--size", "1G", "-o", img}, &log, &log); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	owner, err := creds.Load(proj)
	if err != nil {
		t.Fatal(err)
	}
	apiPort, err := vm.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	b := bootDisk(t, ctx, img, "512M", false, vm.Forward{Host: apiPort, Guest: contract.APIPort})
	b.waitFor(t, "durable state=1 persist=1")
	b.waitFor(t, "management API on https port")
	node := fmt.Sprintf("127.0.0.1:%d", apiPort)
	s := osStatus(t, owner, apiPort)
	booted := s.OS.Booted()
	if booted == nil || booted.Name != "a" || booted.Image == nil || booted.Image.ID != s.Node.ImageVersion || booted.Image.Version != 0 {
		t.Fatalf("a fresh disk: os status %+v, image %s", s.OS, s.Node.ImageVersion)
	}
	first := s.Node.ImageVersion
	t.Logf("flashed image %s booted in %v", first, time.Since(start).Round(time.Second))

	t.Run("a good update is committed and keeps /data", func(t *testing.T) {
		setJS("two", true)
		t0 := time.Now()
		out, err := nodeboot(ctx, proj, "update", node, proj)
		if err != nil {
			t.Fatalf("update: %v\n%s\n%s", err, out, b.v.Tail(40))
		}
		t.Logf("update took %v", time.Since(t0).Round(time.Second))
		if !strings.Contains(out, "updated "+node+": image ") || !strings.Contains(out, "(was "+first+")") {
			t.Errorf("update said:\n%s", out)
		}
		var c struct {
			Image            string
			State, Persisted int
		}
		if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", b.port))), &c); err != nil {
			t.Fatal(err)
		}
		if c.Image != "two" || c.State != 2 || c.Persisted != 2 {
			t.Errorf("after the update the app answers %+v, want image two with its counts 2/2 (/data kept)", c)
		}
		s := osStatus(t, owner, apiPort)
		bs := s.OS.Booted()
		if bs == nil || bs.Name != "b" || bs.State != "good" || bs.Image == nil || bs.Image.ID != s.Node.ImageVersion || bs.Image.Version == 0 {
			t.Errorf("booted slot %+v, want b, good, image %s", bs, s.Node.ImageVersion)
		}
		if l := s.OS.Last; l == nil || !l.OK || l.From.ID != first {
			t.Errorf("last outcome %+v", l)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("an app that never becomes healthy is rolled back", func(t *testing.T) {
		before := osStatus(t, owner, apiPort)
		setJS("three", false)
		from := len(b.v.Console())
		t0 := time.Now()
		out, err := nodeboot(ctx, proj, "update", node, proj)
		t.Logf("update took %v", time.Since(t0).Round(time.Second))
		if err == nil {
			t.Fatalf("update of an app that never listens succeeded:\n%s", out)
		}
		for _, want := range []string{"did not become healthy", "runs " + before.Node.ImageVersion + " again"} {
			if !strings.Contains(out+err.Error(), want) {
				t.Errorf("update's failure lacks %q:\n%s\n%v", want, out, err)
			}
		}
		// The outcome is in the status before the old image's app listens;
		// the trial's app never did.
		waitListening(t, b, from)
		var c struct {
			Image string
			State int
		}
		if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", b.port))), &c); err != nil {
			t.Fatal(err)
		}
		// Two starts before, one in the trial, one now.
		if c.Image != "two" || c.State != 4 {
			t.Errorf("after the rollback the app answers %+v, want image two with count 4", c)
		}
		s := osStatus(t, owner, apiPort)
		if bs := s.OS.Booted(); bs == nil || bs.Name != "b" || s.Node.ImageVersion != before.Node.ImageVersion {
			t.Errorf("booted %+v image %s, want slot b with %s", bs, s.Node.ImageVersion, before.Node.ImageVersion)
		}
		for _, sl := range s.OS.Slots {
			if sl.Name == "a" && sl.State != "failed" {
				t.Errorf("slot a is %s, want failed", sl.State)
			}
		}
		if l := s.OS.Last; l == nil || l.OK || !strings.Contains(l.Reason, "did not become healthy") {
			t.Errorf("last outcome %+v", l)
		}
	})
	if t.Failed() || os.Getenv("NODEBOOT_LONG") == "" {
		return
	}

	t.Run("an app that crash-loops is rolled back", func(t *testing.T) {
		before := osStatus(t, owner, apiPort)
		if err := os.WriteFile(filepath.Join(proj, "server.js"), []byte(counterJSExit(t, root, "four", true, true)), 0o644); err != nil {
			t.Fatal(err)
		}
		from := len(b.v.Console())
		t0 := time.Now()
		out, err := nodeboot(ctx, proj, "update", node, proj)
		t.Logf("update took %v", time.Since(t0).Round(time.Second))
		if err == nil || !strings.Contains(out+err.Error(), "crash-loops") {
			t.Fatalf("update of a crash-looping app: %v\n%s", err, out)
		}
		waitListening(t, b, from)
		var c struct{ Image string }
		if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", b.port))), &c); err != nil {
			t.Fatal(err)
		}
		s := osStatus(t, owner, apiPort)
		if c.Image != "two" || s.Node.ImageVersion != before.Node.ImageVersion {
			t.Errorf("after the rollback: app %+v, image %s, want two on %s", c, s.Node.ImageVersion, before.Node.ImageVersion)
		}
	})
}

// waitListening waits for the counter app to listen after console offset
// from.
func waitListening(t *testing.T, b *diskBoot, from int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if _, err := b.v.WaitFor(ctx, contract.AppListening("counter", 8080), from); err != nil {
		t.Fatal(err)
	}
}
