package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/spec"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// TestDegradedBoot boots an image whose runtime.json is corrupt. It used to
// fail the boot, reboot after 10 s and fail again, for ever, with no API
// to ask why (issue 12 item 12). Now the node stays up: the console
// repeats why, the management API answers status with the reason, and no
// app runs.
func TestDegradedBoot(t *testing.T) {
	requireQEMU(t)
	root := repoRoot(t)
	proj := t.TempDir()
	copyDir(t, filepath.Join(root, "examples", "hello"), proj)
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var log strings.Builder
	if err := cli.Run(ctx, []string{"build", proj, "-o", out}, &log, &log); err != nil {
		t.Fatalf("build: %v\n%s", err, log.String())
	}
	m, err := build.ReadManifest(out)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel unpacks concatenated cpio archives in order, a later
	// file replacing an earlier one: append a truncated runtime.json.
	initrd := filepath.Join(out, m.Initramfs.Name)
	corruptRuntime(t, initrd, `{"hostname":"hello","apps":[{"name":"hel`)

	apiPort, err := vm.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	v, err := vm.Start(ctx, vm.Config{
		Kernel:   filepath.Join(out, "vmlinuz"),
		Initrd:   initrd,
		Cmdline:  m.Cmdline,
		Memory:   "1G",
		Forwards: []vm.Forward{{Host: apiPort, Guest: contract.APIPort}},
		Console:  consoleLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	bootCtx, bootCancel := context.WithTimeout(ctx, 4*time.Minute)
	defer bootCancel()
	first, err := v.WaitFor(bootCtx, contract.Degraded, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The console may hold only part of the line yet: wait for its end.
	end, err := v.WaitFor(bootCtx, "(nodeboot build)", first)
	if err != nil {
		t.Fatal(err)
	}
	line := lineAt(v.Console(), end-1)
	for _, want := range []string{"no app runs", spec.RuntimePath, "unexpected EOF", "rebuild it"} {
		if !strings.Contains(line, want) {
			t.Errorf("the console's reason %q lacks %q", line, want)
		}
	}
	if strings.Contains(v.Console(), "FATAL") {
		t.Errorf("the boot still failed:\n%s", v.Tail(30))
	}
	if !strings.Contains(v.Console(), "file descriptors: up to 65536") {
		t.Errorf("PID 1 did not raise its fd limit:\n%s", v.Tail(30))
	}

	node := fmt.Sprintf("127.0.0.1:%d", apiPort)
	if _, err := v.WaitFor(bootCtx, "management API on", 0); err != nil {
		t.Fatal(err)
	}
	// A loaded TCG guest can take longer than the API's handshake
	// timeout to answer its first connections: ask until it answers.
	var st contract.Status
	js, err := nodeboot(ctx, proj, "status", node, "--json")
	for err != nil && bootCtx.Err() == nil {
		time.Sleep(2 * time.Second)
		js, err = nodeboot(ctx, proj, "status", node, "--json")
	}
	if err != nil {
		t.Fatalf("status: %v\n%s", err, js)
	}
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, js)
	}
	if !strings.Contains(st.Node.Degraded, "unexpected EOF") || len(st.Apps) != 0 {
		t.Errorf("status: degraded %q, apps %+v", st.Node.Degraded, st.Apps)
	}
	human, err := nodeboot(ctx, proj, "status", node)
	if err != nil || !strings.Contains(human, "degraded: no app runs: "+spec.RuntimePath) {
		t.Errorf("status does not say the node is degraded: %v\n%s", err, human)
	}

	// The reason comes back on the console, for whoever looks at it later;
	// the node did not reboot meanwhile.
	if _, err := v.WaitFor(bootCtx, contract.Degraded, first+1); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(v.Console(), contract.InitStarted); n != 1 {
		t.Errorf("PID 1 started %d times", n)
	}
}

// corruptRuntime appends a cpio archive holding runtime.json with body.
func corruptRuntime(t *testing.T, initrd, body string) {
	t.Helper()
	f, err := os.OpenFile(initrd, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := cpio.NewWriter(f)
	name := strings.TrimPrefix(spec.RuntimePath, "/")
	if err := w.WriteHeader(&cpio.Header{Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// lineAt is the console line that holds byte offset i.
func lineAt(console string, i int) string {
	start := strings.LastIndexByte(console[:i], '\n') + 1
	end := strings.IndexByte(console[i:], '\n')
	if end < 0 {
		return console[start:]
	}
	return console[start : i+end]
}
