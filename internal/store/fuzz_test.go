package store

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeboot/nodeboot/internal/bundle"
)

// FuzzRecover feeds Recover and Current a store whose on-disk records are
// arbitrary bytes: the record of the version current names, and the
// targets of current and previous. Whatever they hold, Recover must not
// fail, must not delete a version a link led to, and what Current returns
// afterwards must be a complete version with a valid Meta; when previous
// was intact and current damaged, previous runs.
func FuzzRecover(f *testing.F) {
	h1, h2 := strings.Repeat("1", 64), strings.Repeat("2", 64)
	good := func(h string) []byte {
		b, _ := json.Marshal(record{Digest: "sha256:" + h, Meta: bundle.Meta{Format: 1, App: "hello", Entry: "server.js"}})
		return b
	}
	f.Add(good(h2), []byte(h2), []byte(h1))
	f.Add([]byte(`{"digest":`), []byte(h2), []byte(h1))
	f.Add(good(h2), []byte("./"+h2), []byte("../hello/"+h1))
	f.Add(good(h1), []byte(h2), []byte(h1))
	f.Add([]byte(`{"digest":"sha256:`+h2+`","meta":{"format":1,"app":"hello","entry":"../../etc/passwd"}}`), []byte(h2), []byte(""))
	f.Fuzz(func(t *testing.T, rec, cur, prev []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "hello")
		for _, h := range []string{h1, h2} {
			if err := os.MkdirAll(filepath.Join(dir, h), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, h, "server.js"), []byte(h[:1]), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, h+".json"), good(h), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, h2+".json"), rec, 0o644); err != nil {
			t.Fatal(err)
		}
		// Links the kernel can hold: no NUL, not empty, not too long.
		for name, tgt := range map[string][]byte{"current": cur, "previous": prev} {
			if len(tgt) == 0 || len(tgt) > 4000 || bytes.IndexByte(tgt, 0) >= 0 {
				continue
			}
			if err := os.Symlink(string(tgt), filepath.Join(dir, name)); err != nil {
				t.Skip(err)
			}
		}
		// What each link leads to before Recover, as the kernel resolves it.
		var led []string
		for _, name := range []string{"current", "previous"} {
			if p, err := filepath.EvalSymlinks(filepath.Join(dir, name)); err == nil {
				led = append(led, p)
			}
		}
		s, err := Open(root)
		if err != nil {
			t.Fatal(err)
		}
		prevIntact := false
		if p, _ := s.Previous("hello"); p != nil {
			prevIntact = true
		}
		_, curLink, _ := s.readLink("hello", "current")
		curBefore, _ := s.Current("hello")

		s.Recover(func(string, ...any) {})

		for _, p := range led {
			if strings.HasPrefix(p, dir+"/") {
				if _, err := os.Lstat(p); err != nil {
					t.Fatalf("Recover deleted %s, which a link led to", p)
				}
			}
		}
		c, err := s.Current("hello")
		if err != nil {
			t.Fatal(err)
		}
		if c != nil {
			if _, err := s.load("hello", filepath.Base(c.Dir)); err != nil {
				t.Fatalf("Current is not complete: %v", err)
			}
			if err := c.Meta.Validate(); err != nil {
				t.Fatalf("Current has a bad Meta %+v: %v", c.Meta, err)
			}
		}
		switch {
		case curBefore != nil && (c == nil || c.Dir != curBefore.Dir):
			t.Fatalf("Recover changed a usable current %s to %+v", curBefore.Dir, c)
		case curBefore == nil && curLink && prevIntact && c == nil:
			t.Fatal("current was damaged and previous intact, but the image's version runs")
		}
	})
}
