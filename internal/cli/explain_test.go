package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildExplain(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a/package.json": `{"name":"a","main":"i.js"}`, "a/i.js": "",
		"b/package.json": `{"name":"b","main":"i.js"}`, "b/i.js": "",
		"c/package.json": `{"name":"c","main":"i.js"}`, "c/i.js": "",
		"nodeboot.json": `{"apps":[
			{"path":"./a","persist":["up"],"limits":{"memory":"128M","cpuMax":"50%","pids":64},"sandbox":{"network":"none","allowSyscalls":["ptrace"]}},
			{"path":"./b","sandbox":{"enabled":false}},
			{"path":"./c","shell":true}]}`,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut strings.Builder
	if err := Run(context.Background(), []string{"build", "--explain", dir}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	got := out.String()
	for _, want := range []string{
		"app a: node i.js in /apps/a", "uid 1000 gid 1000", "/data/state/a", "/apps/a/up (persist)",
		"network: none (loopback only)", "memory 128 MiB", "cpuMax 50%", "pids 64",
		"syscalls allowed by config: ptrace", "/etc/nodeboot",
		"app b:", "sandbox off",
		"shell:      none: exec, execSync and spawn with shell: true fail with ENOENT",
		"app c:", "shell:      /bin/sh and busybox's utilities in /usr/bin",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("explain output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(strings.Split(got, "syscalls allowed")[0], " ptrace ") {
		t.Errorf("ptrace is allowed but still listed as denied:\n%s", got)
	}
	if _, err := os.Stat("out"); err == nil { // build's default output dir
		t.Error("--explain built something")
	}
}
