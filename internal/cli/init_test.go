package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/spec"
)

func TestInitIdempotentNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"app","version":"1.0.0","main":"index.js"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "index.js"), []byte("require('http').createServer().listen(process.env.PORT)\n"), 0o644)
	os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("node_modules/"), 0o644) // no final newline
	var out bytes.Buffer
	if code := Execute(context.Background(), []string{"init", dir}, &out, &out); code != 0 {
		t.Fatalf("init: exit %d\n%s", code, out.String())
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "nodeboot.json"))
	if err != nil {
		t.Fatal(err)
	}
	// What init writes is a valid config: the loader accepts it as it is.
	if _, err := spec.ParseConfig(cfg, "nodeboot.json"); err != nil {
		t.Errorf("the written nodeboot.json does not load: %v\n%s", err, cfg)
	}
	if !strings.Contains(string(cfg), `"$schema": "https://`) || !strings.Contains(string(cfg), `"$comment"`) {
		t.Errorf("nodeboot.json lacks $schema or its comments:\n%s", cfg)
	}
	if _, err := spec.Load(dir, ""); err != nil {
		t.Errorf("the project does not load after init: %v", err)
	}
	gi, _ := os.ReadFile(filepath.Join(dir, ".gitignore"))
	if string(gi) != "node_modules/\n.nodeboot/\n" {
		t.Errorf(".gitignore = %q", gi)
	}
	if _, err := os.Stat(filepath.Join(dir, ".nodebootignore")); err != nil {
		t.Error(err)
	}

	// Again, after the user edited the files: nothing changes.
	os.WriteFile(filepath.Join(dir, "nodeboot.json"), []byte(`{"hostname":"mine"}`), 0o644)
	os.WriteFile(filepath.Join(dir, ".nodebootignore"), []byte("mine\n"), 0o644)
	out.Reset()
	if code := Execute(context.Background(), []string{"init", dir}, &out, &out); code != 0 {
		t.Fatalf("second init: exit %d\n%s", code, out.String())
	}
	for name, want := range map[string]string{"nodeboot.json": `{"hostname":"mine"}`, ".nodebootignore": "mine\n", ".gitignore": "node_modules/\n.nodeboot/\n"} {
		if b, _ := os.ReadFile(filepath.Join(dir, name)); string(b) != want {
			t.Errorf("%s became %q", name, b)
		}
	}
	if strings.Count(out.String(), "kept ") != 3 {
		t.Errorf("second init did not say it kept the 3 files:\n%s", out.String())
	}
}

// With nodeboot installed from npm, $schema points at the package's copy,
// so editors complete offline and in step with the installed version.
func TestInitSchemaFromPackage(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "node_modules", "nodeboot", "nodeboot.schema.json")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte("{}"), 0o644)
	var out bytes.Buffer
	if code := Execute(context.Background(), []string{"init", dir}, &out, &out); code != 0 {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "nodeboot.json"))
	if !strings.Contains(string(b), `"$schema": "./node_modules/nodeboot/nodeboot.schema.json"`) {
		t.Errorf("nodeboot.json:\n%s", b)
	}
	if !strings.Contains(out.String(), "no package.json") {
		t.Errorf("no note about the missing package.json:\n%s", out.String())
	}
	if code := Execute(context.Background(), []string{"init", p}, &out, &out); code != 1 {
		t.Errorf("init on a file: exit %d", code)
	}
}
