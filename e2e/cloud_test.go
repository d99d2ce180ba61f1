package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/diskformat"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// TestCloudQCOW2 builds the counter app as a raw disk image and as qcow2:
// qemu-img checks the qcow2 and reads it as a qcow2 of the raw image's
// size, converted back it is the raw image byte for byte (the builds are
// reproducible, so the qcow2 is made from the same disk image), and it
// boots under OVMF with its console on the serial port and answers HTTP.
func TestCloudQCOW2(t *testing.T) {
	requireQEMU(t)
	if _, err := vm.FindFirmware(); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if _, err := diskformat.FindQEMUImg(); err != nil {
		if os.Getenv("NODEBOOT_E2E") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	proj := t.TempDir()
	copyDir(t, filepath.Join(repoRoot(t), "e2e", "testdata", "counter"), proj)
	out := t.TempDir()
	raw, qcow := filepath.Join(out, "counter.img"), filepath.Join(out, "counter.qcow2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	for _, b := range []struct{ format, path string }{{"disk", raw}, {"qcow2", qcow}} {
		var log strings.Builder
		if err := cli.Run(ctx, []string{"build", proj, "--format", b.format, "--size", "1G", "-o", b.path}, &log, &log); err != nil {
			t.Fatalf("build --format %s: %v\n%s", b.format, err, log.String())
		}
	}
	m, err := build.ReadManifestFile(build.DiskManifestPath(qcow))
	if err != nil {
		t.Fatal(err)
	}
	if m.Format != "qcow2" || m.Disk.Name != "counter.qcow2" {
		t.Errorf("manifest: format %q, disk %q; want qcow2, counter.qcow2", m.Format, m.Disk.Name)
	}
	mraw, err := build.ReadManifestFile(build.DiskManifestPath(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.ImageVersion != mraw.ImageVersion {
		a, _ := json.MarshalIndent(mraw, "", " ")
		b, _ := json.MarshalIndent(m, "", " ")
		t.Fatalf("the two builds of one app have different image versions:\n%s\n%s", a, b)
	}

	if out, err := exec.Command("qemu-img", "check", qcow).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check: %v\n%s", err, out)
	}
	info, err := exec.Command("qemu-img", "info", "--output=json", qcow).Output()
	if err != nil {
		t.Fatal(err)
	}
	var qi struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	if err := json.Unmarshal(info, &qi); err != nil {
		t.Fatal(err)
	}
	if qi.Format != "qcow2" || qi.VirtualSize != 1<<30 {
		t.Errorf("qemu-img info: %s", info)
	}
	back := filepath.Join(t.TempDir(), "back.img")
	if out, err := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", qcow, back).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	if hashRange(t, back, 0, 1<<30) != hashRange(t, raw, 0, 1<<30) {
		t.Error("the qcow2 converted back to raw differs from the raw image of the same build")
	}
	os.Remove(back)

	port, err := vm.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	v, err := vm.Start(ctx, vm.Config{
		Disk:       qcow,
		DiskFormat: "qcow2",
		Memory:     "512M",
		Forwards:   []vm.Forward{{Host: port, Guest: 8080}},
		Console:    consoleLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer wcancel()
	if _, err := v.WaitFor(wctx, contract.AppListening("counter", 8080), 0); err != nil {
		t.Fatal(err)
	}
	var c counterStatus
	if err := json.Unmarshal([]byte(get(t, fmt.Sprintf("http://127.0.0.1:%d/", port))), &c); err != nil {
		t.Fatal(err)
	}
	if c.State < 1 {
		t.Errorf("counter state %d, want at least 1 (a fresh /data on the qcow2)", c.State)
	}
	if err := v.Shutdown(2 * time.Minute); err != nil {
		t.Error(err)
	}
}
