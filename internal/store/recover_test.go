package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRecoverStates crafts store states by hand (links spelt otherwise than
// the store writes them, damaged records, missing dirs) and checks what
// Recover leaves: which version runs, and that nothing a link named was
// deleted (issue 12, item 3).
func TestRecoverStates(t *testing.T) {
	type env struct {
		dir        string
		h1, h2, h3 string // v1, v2 and v3 (never linked)
	}
	link := func(e env, name, target string) {
		os.Remove(filepath.Join(e.dir, name))
		if err := os.Symlink(target, filepath.Join(e.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	rec := func(e env, h, data string) {
		if err := os.WriteFile(filepath.Join(e.dir, h+".json"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		setup func(e env)
		want  string   // state after Recover
		kept  []string // versions (by content) still on disk
		gone  []string // versions removed
	}{
		{"as written", func(e env) { link(e, "current", e.h2); link(e, "previous", e.h1) }, "v2/v1", []string{"v1", "v2"}, []string{"v3"}},
		{"current ./hex", func(e env) { link(e, "current", "./"+e.h2); link(e, "previous", e.h1) }, "v2/v1", []string{"v1", "v2"}, []string{"v3"}},
		{"current hex/", func(e env) { link(e, "current", e.h2+"/"); link(e, "previous", e.h1) }, "v2/v1", []string{"v1", "v2"}, []string{"v3"}},
		{"current absolute", func(e env) { link(e, "current", filepath.Join(e.dir, e.h2)); link(e, "previous", e.h1) }, "v2/v1", []string{"v1", "v2"}, []string{"v3"}},
		{"current through another link", func(e env) {
			link(e, "alias", e.h2)
			link(e, "current", "alias")
			link(e, "previous", e.h1)
		}, "v2/v1", []string{"v1", "v2"}, []string{"v3"}},
		{"previous ../app/hex", func(e env) { link(e, "current", e.h2); link(e, "previous", "../hello/"+e.h1) }, "v2/v1", []string{"v1", "v2"}, []string{"v3"}},
		{"current record damaged", func(e env) {
			link(e, "current", e.h2)
			link(e, "previous", e.h1)
			rec(e, e.h2, `{"digest":`)
		}, "v1/-", []string{"v1", "v2dir"}, []string{"v3"}},
		{"current record of another version", func(e env) {
			link(e, "current", e.h2)
			link(e, "previous", e.h1)
			b, _ := os.ReadFile(filepath.Join(e.dir, e.h1+".json"))
			rec(e, e.h2, string(b))
		}, "v1/-", []string{"v1", "v2dir"}, []string{"v3"}},
		{"current record missing", func(e env) {
			link(e, "current", e.h2)
			link(e, "previous", e.h1)
			os.Remove(filepath.Join(e.dir, e.h2+".json"))
		}, "v1/-", []string{"v1", "v2dir"}, []string{"v3"}},
		{"current dir missing", func(e env) {
			link(e, "current", e.h2)
			link(e, "previous", e.h1)
			os.RemoveAll(filepath.Join(e.dir, e.h2))
		}, "v1/-", []string{"v1"}, []string{"v3"}},
		{"current into a version", func(e env) { link(e, "current", e.h2+"/server.js"); link(e, "previous", e.h1) }, "v1/v2", []string{"v1", "v2"}, []string{"v3"}},
		{"current names no version", func(e env) { link(e, "current", "/etc"); link(e, "previous", e.h1) }, "v1/-", []string{"v1"}, []string{"v2", "v3"}},
		{"current damaged, no previous", func(e env) { link(e, "current", e.h2); rec(e, e.h2, "") }, "-/-", []string{"v2dir"}, []string{"v1", "v3"}},
		{"both damaged", func(e env) {
			link(e, "current", e.h2)
			link(e, "previous", e.h1)
			rec(e, e.h2, "{}")
			rec(e, e.h1, "null")
		}, "-/-", []string{"v1dir", "v2dir"}, []string{"v3"}},
		{"no current on purpose (reset)", func(e env) { link(e, "previous", e.h1) }, "-/v1", []string{"v1"}, []string{"v2", "v3"}},
		{"current is a file", func(e env) {
			os.WriteFile(filepath.Join(e.dir, "current"), []byte(e.h2), 0o644)
			link(e, "previous", e.h1)
		}, "-/v1", []string{"v1"}, []string{"v2", "v3"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			s, _ := Open(root)
			vs := map[string]*Version{}
			for _, b := range []string{"v1", "v2", "v3"} {
				vs[b] = receive(t, s, "hello", b)
			}
			hexOf := func(b string) string { return strings.TrimPrefix(vs[b].Digest, "sha256:") }
			e := env{dir: filepath.Join(root, "hello"), h1: hexOf("v1"), h2: hexOf("v2"), h3: hexOf("v3")}
			c.setup(e)
			var logs []string
			s2, _ := Open(root)
			s2.Recover(func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) })
			if got := state(t, s2, "hello"); got != c.want {
				t.Errorf("after Recover: %s, want %s; log:\n%s", got, c.want, strings.Join(logs, "\n"))
			}
			for _, k := range c.kept {
				b, dirOnly := strings.CutSuffix(k, "dir")
				if _, err := os.Stat(filepath.Join(vs[b].Dir, "server.js")); err != nil {
					t.Errorf("%s was deleted: %v", b, err)
				}
				if !dirOnly {
					if _, err := s2.load("hello", hexOf(b)); err != nil {
						t.Errorf("%s is no longer complete: %v", b, err)
					}
				}
			}
			for _, g := range c.gone {
				if _, err := os.Lstat(vs[g].Dir); !os.IsNotExist(err) {
					t.Errorf("%s, named by no link, survived: %v", g, err)
				}
			}
			// Recover is idempotent: a second boot changes nothing.
			before := strings.Join(listing(t, root, "hello"), " ")
			s2.Recover(func(string, ...any) {})
			if after := strings.Join(listing(t, root, "hello"), " "); after != before {
				t.Errorf("a second Recover changed the store:\n%s\n%s", before, after)
			}
		})
	}
}
