package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodRuntime = `{"hostname":"n","network":{"mode":"dhcp"},"nodePath":"/usr/bin/node","apps":[{"name":"hello","dir":"/apps/hello","entry":"index.js","env":{"PORT":"3000"},"port":3000,"uid":1000,"gid":1000,"dataDir":"/data/state/hello","persist":["uploads"]}]}`

// A damaged runtime.json is refused with its path and what to do, never
// half-read: PID 1 then boots degraded on that message.
func TestReadRuntimeRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "runtime.json")
	os.WriteFile(p, []byte(goodRuntime), 0o644)
	if _, err := ReadRuntime(p); err != nil {
		t.Fatalf("a good runtime.json: %v", err)
	}
	for _, c := range []struct{ name, body, want string }{
		{"truncated", goodRuntime[:40], "unexpected EOF"},
		{"garbage", "\x00\x01garbage", "invalid character"},
		{"trailing data", goodRuntime + `{"apps":[]}`, "data after"},
		{"bad name", strings.Replace(goodRuntime, `"name":"hello"`, `"name":"../etc"`, 1), "not a valid app name"},
		{"duplicate", goodRuntime[:len(goodRuntime)-2] + `,{"name":"hello","dir":"/apps/hello","entry":"i.js"}]}`, "twice"},
		{"relative dir", strings.Replace(goodRuntime, `"dir":"/apps/hello"`, `"dir":"apps/hello"`, 1), "absolute"},
		{"data dir", strings.Replace(goodRuntime, `"dataDir":"/data/state/hello"`, `"dataDir":"/data/state/../../etc"`, 1), "dataDir"},
		{"port", strings.Replace(goodRuntime, `"port":3000`, `"port":70000`, 1), "port"},
		{"uid", strings.Replace(goodRuntime, `"uid":1000`, `"uid":-1`, 1), "uid"},
		{"persist", strings.Replace(goodRuntime, `"uploads"`, `"../../etc"`, 1), "persist"},
	} {
		os.WriteFile(p, []byte(c.body), 0o644)
		_, err := ReadRuntime(p)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) || !strings.Contains(msg, p) || !strings.Contains(msg, "rebuild") {
			t.Errorf("%s: %q should name %q, the file and what to do", c.name, msg, c.want)
		}
	}
	if _, err := ReadRuntime(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing file: %v", err)
	}
}
