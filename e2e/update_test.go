package e2e

import (
	"context"
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
	"github.com/nodeboot/nodeboot/internal/creds"
	"github.com/nodeboot/nodeboot/internal/disk"
	"github.com/nodeboot/nodeboot/internal/spec"
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
	s := strings.Replace(string(b), "JSON.stringify({ state,", fmt.Sprintf("JSON.stringify({ image: %q, node: process.version, state,", marker), 1)
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
// `nodeboot update`: a good one (a new Node major version and app),
// committed after its trial boot with /data kept, then broken ones, each
// rolled back by itself with its reason: a PID 1 that cannot read its
// config, a kernel that panics, an app that crash-loops and (under
// NODEBOOT_LONG) an app that never becomes healthy.
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
	// A shorter health gate than the default 30 s: each good trial and
	// the never-healthy one's deadline (healthySeconds + 300 s) cost less.
	cfg := `{ "hostname": "counter", "apps": [{ "path": ".", "persist": ["./db"] }], "update": { "healthySeconds": 10 } }`
	if err := os.WriteFile(filepath.Join(proj, "nodeboot.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "counter.img")
	// Generous: on a loaded 2-core host the three updates took 45 min.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
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
	var c0 struct{ Node string }
	if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", b.port))), &c0); err != nil {
		t.Fatal(err)
	}
	firstNode := c0.Node
	t.Logf("flashed image %s booted in %v", first, time.Since(start).Round(time.Second))

	t.Run("a Node major version change with the app is committed and keeps /data", func(t *testing.T) {
		// The flashed image runs the host's node 20; engines.node 22
		// makes the build fetch node 22.
		pkg := `{ "name": "counter", "version": "1.0.0", "private": true, "main": "server.js", "engines": { "node": "22" } }`
		if err := os.WriteFile(filepath.Join(proj, "package.json"), []byte(pkg), 0o644); err != nil {
			t.Fatal(err)
		}
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
			Image, Node      string
			State, Persisted int
		}
		if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", b.port))), &c); err != nil {
			t.Fatal(err)
		}
		if c.Image != "two" || !strings.HasPrefix(c.Node, "v22.") || c.State != 2 || c.Persisted != 2 {
			t.Errorf("after the update the app answers %+v, want image two on node 22 with its counts 2/2 (/data kept)", c)
		}
		if !strings.HasPrefix(firstNode, "v20.") {
			t.Errorf("the flashed image ran node %s, want 20", firstNode)
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

	// rolledBack sends the disk image img (nodeboot update --image) and
	// checks that the node rolled it back by itself with a reason that
	// has every one of want, and runs the image it ran before again.
	rolledBack := func(t *testing.T, img string, want ...string) string {
		t.Helper()
		before := osStatus(t, owner, apiPort)
		from := len(b.v.Console())
		t0 := time.Now()
		out, err := nodeboot(ctx, proj, "update", node, "--image", img)
		t.Logf("update took %v", time.Since(t0).Round(time.Second))
		if err == nil {
			t.Fatalf("a broken update succeeded:\n%s", out)
		}
		for _, w := range append(want, "runs "+before.Node.ImageVersion+" again") {
			if !strings.Contains(out+err.Error(), w) {
				t.Errorf("update's failure lacks %q:\n%s\n%v", w, out, err)
			}
		}
		// Not a wait on the console: a trial's kernel panic in it would
		// end the wait at once.
		waitServing(t, b)
		s := osStatus(t, owner, apiPort)
		if bs := s.OS.Booted(); bs == nil || bs.Name != before.OS.Booted().Name || s.Node.ImageVersion != before.Node.ImageVersion {
			t.Errorf("booted %+v image %s, want slot %s with %s", bs, s.Node.ImageVersion, before.OS.Booted().Name, before.Node.ImageVersion)
		}
		for _, sl := range s.OS.Slots {
			if !sl.Booted && sl.State != "failed" {
				t.Errorf("slot %s is %s, want failed", sl.Name, sl.State)
			}
		}
		l := s.OS.Last
		if l == nil || l.OK {
			t.Fatalf("last outcome %+v", l)
		}
		for _, w := range want {
			if !strings.Contains(l.Reason, w) {
				t.Errorf("status' last outcome %q lacks %q", l.Reason, w)
			}
		}
		var c struct{ Image string }
		if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", b.port))), &c); err != nil {
			t.Fatal(err)
		}
		if c.Image != "two" {
			t.Errorf("after the rollback the app answers %+v, want image two", c)
		}
		return b.v.Console()[from:]
	}
	// A disk image of the project as it is now, to be broken.
	broken := func(t *testing.T, marker string) (string, *disk.Layout) {
		t.Helper()
		setJS(marker, true)
		p := filepath.Join(t.TempDir(), marker+".img")
		var log strings.Builder
		if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "--size", "1G", "-o", p}, &log, &log); err != nil {
			t.Fatalf("build: %v\n%s", err, log.String())
		}
		// Without its manifest, the payload's image id is its content's.
		os.Remove(build.DiskManifestPath(p))
		l, err := disk.ReadLayout(p)
		if err != nil {
			t.Fatal(err)
		}
		return p, l
	}

	t.Run("a PID 1 that cannot read its config is rolled back with its reason", func(t *testing.T) {
		img, l := broken(t, "three")
		rewriteRoot(t, img, l.RootA, func(dir string) {
			// What a half-written or hand-edited config looks like.
			if err := os.WriteFile(filepath.Join(dir, spec.RuntimePath), []byte(`{"hostname":"counter","apps":[{"name":"cou`), 0o644); err != nil {
				t.Fatal(err)
			}
		})
		// The trial boot's /data is a tmpfs (a degraded node leaves the
		// data partition alone): the reason reaches the old slot through
		// the ESP.
		con := rolledBack(t, img, "the node runs degraded", "runtime.json")
		if !strings.Contains(con, contract.Degraded) {
			t.Errorf("the trial boot did not run degraded:\n%s", con)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("a kernel that panics is rolled back after its tries", func(t *testing.T) {
		img, l := broken(t, "four")
		// A root file system the kernel cannot mount (an unknown
		// compression in the squashfs superblock, signed all the same):
		// it panics, and panic=10 reboots it, three times.
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt([]byte{0x42, 0}, l.RootA.Offset+20); err != nil {
			t.Fatal(err)
		}
		f.Close()
		con := rolledBack(t, img, "did not come up healthy in 3 tries", "kernel panic")
		if n := strings.Count(con, "Kernel panic"); n != 3 {
			t.Errorf("the kernel panicked %d times, want 3 (one per try)", n)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("an app that crash-loops is rolled back", func(t *testing.T) {
		before := osStatus(t, owner, apiPort)
		if err := os.WriteFile(filepath.Join(proj, "server.js"), []byte(counterJSExit(t, root, "four", true, true)), 0o644); err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		out, err := nodeboot(ctx, proj, "update", node, proj)
		t.Logf("update took %v", time.Since(t0).Round(time.Second))
		if err == nil {
			t.Fatalf("update of a crash-looping app succeeded:\n%s", out)
		}
		for _, want := range []string{"crash-loops", "runs " + before.Node.ImageVersion + " again"} {
			if !strings.Contains(out+err.Error(), want) {
				t.Errorf("update's failure lacks %q:\n%s\n%v", want, out, err)
			}
		}
		// The outcome is in the status before the old image's app
		// listens. Not a wait on the console: the kernel panics of the
		// case before would end it at once.
		waitServing(t, b)
		var c struct{ Image string }
		if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", b.port))), &c); err != nil {
			t.Fatal(err)
		}
		s := osStatus(t, owner, apiPort)
		if c.Image != "two" || s.Node.ImageVersion != before.Node.ImageVersion {
			t.Errorf("after the rollback: app %+v, image %s, want two on %s", c, s.Node.ImageVersion, before.Node.ImageVersion)
		}
		if l := s.OS.Last; l == nil || l.OK || !strings.Contains(l.Reason, "crash-loops") {
			t.Errorf("last outcome %+v", l)
		}
	})

	// The gate waits healthySeconds + 300 s for an app that never
	// answers (a loaded machine needs that long to start node): over 5
	// minutes of waiting alone, so it runs under NODEBOOT_LONG only.
	if t.Failed() || os.Getenv("NODEBOOT_LONG") == "" {
		return
	}

	t.Run("an app that never becomes healthy is rolled back", func(t *testing.T) {
		before := osStatus(t, owner, apiPort)
		var c0 struct{ State int }
		if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", b.port))), &c0); err != nil {
			t.Fatal(err)
		}
		setJS("three", false)
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
		// The outcome is in the status before the old image's app listens
		// (the trial's app never did). Not a wait on the console: the
		// kernel panics of a case before would end it at once.
		waitServing(t, b)
		var c struct {
			Image string
			State int
		}
		if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", b.port))), &c); err != nil {
			t.Fatal(err)
		}
		// One start in this trial, one now.
		if c.Image != "two" || c.State != c0.State+2 {
			t.Errorf("after the rollback the app answers %+v, want image two with count %d", c, c0.State+2)
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
}

// rewriteRoot replaces the root file system in partition p of the disk
// image img with edit's changes to it (unsquashfs, edit, mksquashfs).
func rewriteRoot(t *testing.T, img string, p disk.Partition, edit func(dir string)) {
	t.Helper()
	tmp := t.TempDir()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := filepath.Join(tmp, "old.sqfs")
	o, err := os.Create(old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(o, io.NewSectionReader(f, p.Offset, p.Size)); err != nil {
		t.Fatal(err)
	}
	o.Close()
	dir := filepath.Join(tmp, "root")
	run(t, "unsquashfs", "-q", "-no-progress", "-d", dir, old)
	edit(dir)
	fresh := filepath.Join(tmp, "new.sqfs")
	run(t, "mksquashfs", dir, fresh, "-comp", "gzip", "-noappend", "-no-xattrs", "-quiet", "-no-progress")
	b, err := os.ReadFile(fresh)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) > p.Size {
		t.Fatalf("the new root (%d bytes) does not fit its slot (%d)", len(b), p.Size)
	}
	if _, err := f.WriteAt(b, p.Offset); err != nil {
		t.Fatal(err)
	}
}

// waitServing waits until the counter app answers, failing at once if
// QEMU exits.
func waitServing(t *testing.T, b *diskBoot) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", b.port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if strings.Contains(b.v.Console(), "No loader found") {
			t.Fatalf("the node is unbootable: systemd-boot found no entry to boot\n%s", b.v.Tail(40))
		}
		select {
		case <-b.v.Done():
			t.Fatalf("QEMU exited while waiting for the app: %v\n%s", b.v.Err(), b.v.Tail(40))
		case <-time.After(2 * time.Second):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the app did not answer within 10 min\n%s", b.v.Tail(40))
		}
	}
}
