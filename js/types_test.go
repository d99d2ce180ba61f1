package js

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/nodeboot/nodeboot/internal/usercache"
)

// typescriptVersion is the compiler the types are checked with.
const typescriptVersion = "5.9.3"

// TestTypes type-checks nodeboot/test/types/example.ts, which uses every
// export, against index.d.ts with tsc --strict, and checks that every
// name index.js exports is declared. TypeScript is installed with npm
// into the user cache dir once.
func TestTypes(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node on this host")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// Every export of index.js has a declaration.
	out, err := exec.CommandContext(ctx, node, "-p", "JSON.stringify(Object.keys(require('./nodeboot')))").Output()
	if err != nil {
		t.Fatalf("listing the module's exports: %v", err)
	}
	var names []string
	if err := json.Unmarshal(out, &names); err != nil {
		t.Fatal(err)
	}
	dts, err := os.ReadFile(filepath.Join("nodeboot", "index.d.ts"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !regexp.MustCompile(`export declare (function|const|class) ` + regexp.QuoteMeta(n) + `\b`).Match(dts) {
			t.Errorf("index.js exports %s, which index.d.ts does not declare", n)
		}
	}

	tsc := installTypeScript(ctx, t)
	// The example imports 'nodeboot' as an app would: a node_modules in
	// a temp dir links to the module.
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "node_modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	mod, err := filepath.Abs("nodeboot")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(mod, filepath.Join(dir, "node_modules", "nodeboot")); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join("nodeboot", "test", "types", "example.ts"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "example.ts"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, node, tsc, "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext",
		"--moduleResolution", "nodenext", "--lib", "es2022,dom", "example.ts")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc on an example using every export: %v\n%s", err, out)
	}
}

// installTypeScript returns tsc's script, installing typescript with npm
// into the user cache dir when it is not there yet.
func installTypeScript(ctx context.Context, t *testing.T) string {
	t.Helper()
	root, err := usercache.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "typescript", typescriptVersion)
	tsc := filepath.Join(dir, "node_modules", "typescript", "bin", "tsc")
	if _, err := os.Stat(tsc); err == nil {
		return tsc
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("no npm on this host to install typescript with")
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--prefix", tmp, "typescript@"+typescriptVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("installing typescript %s with npm (the registry npm is configured with must be reachable): %v\n%s", typescriptVersion, err, out)
	}
	// A complete install only: an interrupted one is never taken for it.
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	return tsc
}
