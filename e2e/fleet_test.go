package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/cli"
	"github.com/nodeboot/nodeboot/internal/contract"
	"github.com/nodeboot/nodeboot/internal/vm"
)

// TestFleetDeploy rolls a new version over three nodes with `nodeboot
// fleet deploy`, one at a time; the second node's image sets FAIL_NEW,
// which makes the new version exit at start. The rollout stops there:
// the first node runs the new version, the second its old one again, the
// third was never touched.
func TestFleetDeploy(t *testing.T) {
	requireQEMU(t)
	proj := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(proj, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	server := func(version string, failNew bool) string {
		s := ""
		if failNew {
			s = "if (process.env.FAIL_NEW) { console.error('Error: this node refuses " + version + "'); process.exit(3); }\n"
		}
		return s + "require('http').createServer((q, s) => s.end('" + version + "')).listen(Number(process.env.PORT));\n"
	}
	write("package.json", `{"name":"shop","version":"1.0.0","main":"server.js"}`)
	write("server.js", server("v1", false))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	build := func(cfg string) string {
		t.Helper()
		write("nodeboot.json", cfg)
		img := filepath.Join(t.TempDir(), "shop.img")
		var log strings.Builder
		if err := cli.Run(ctx, []string{"build", proj, "--format", "disk", "--size", "1G", "-o", img}, &log, &log); err != nil {
			t.Fatalf("build: %v\n%s", err, log.String())
		}
		return img
	}
	good := build(`{}`)
	bad := build(`{"env": {"FAIL_NEW": "1"}}`)
	os.Remove(filepath.Join(proj, "nodeboot.json"))

	type fnode struct {
		name string
		b    *diskBoot
	}
	var nodes []fnode
	for _, n := range []struct{ name, img string }{{"a", good}, {"b", bad}, {"c", good}} {
		disk := filepath.Join(t.TempDir(), n.name+".img")
		if out, err := exec.Command("cp", "--sparse=always", n.img, disk).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		apiPort, err := vm.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, fnode{n.name, bootDisk(t, ctx, disk, "256M", true, vm.Forward{Host: apiPort, Guest: contract.APIPort})})
		if out, err := nodeboot(ctx, proj, "fleet", "add", n.name, fmt.Sprintf("127.0.0.1:%d", apiPort)); err != nil {
			t.Fatalf("fleet add: %v\n%s", err, out)
		}
	}
	for _, n := range nodes {
		n.b.waitFor(t, "management API on https port")
	}
	out, err := nodeboot(ctx, proj, "fleet", "status")
	if err != nil || strings.Count(out, " yes ") < 3 {
		t.Fatalf("fleet status: %v\n%s", err, out)
	}

	write("server.js", server("v2", true))
	start := time.Now()
	out, err = nodeboot(ctx, proj, "fleet", "deploy", proj, "--nodes", "a,b,c")
	t.Logf("fleet deploy took %v:\n%s", time.Since(start).Round(time.Second), out)
	if err == nil {
		t.Fatal("the rollout went through a node whose new version exits")
	}
	for _, want := range []string{"node b failed", "changed: a", "not touched (they keep what they run): c"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if !strings.Contains(out, "this node refuses v2") {
		t.Errorf("the failing node's last lines are not shown:\n%s", out)
	}
	for _, n := range nodes {
		want := map[string]string{"a": "v2", "b": "v1", "c": "v1"}[n.name]
		if got := answer(n.b.port); got != want {
			t.Errorf("node %s serves %q, want %q", n.name, got, want)
		}
	}
}
